"""Hugging Face Trainer integration, against folders the real Trainer wrote and then tore.

The contract we did not write: a kill during a save leaves a `checkpoint-N` folder without
trainer_state.json or with truncated files; transformers' own get_last_checkpoint() picks it anyway.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from transformers import (  # noqa: E402
    BertConfig,
    BertForSequenceClassification,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)
from transformers.trainer_utils import get_last_checkpoint  # noqa: E402

from airflow_training_guard.runtime import EXIT_PREEMPTED, Heartbeat, read_heartbeat  # noqa: E402
from airflow_training_guard.runtime.integrations.hf import (  # noqa: E402
    TrainingGuardCallback,
    checkpoint_problem,
    newest_valid_checkpoint,
)

pytestmark = pytest.mark.unit


class _Rows(torch.utils.data.Dataset):
    def __init__(self) -> None:
        generator = torch.Generator().manual_seed(0)
        self.ids = torch.randint(0, 32, (64, 8), generator=generator)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict:
        ids = self.ids[index]
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": (ids[0] % 2).long()}


def _trainer(output_dir: Path, *, max_steps: int, save_steps: int, callbacks: list) -> Trainer:
    config = BertConfig(
        vocab_size=32,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=8,
        num_labels=2,
    )
    torch.manual_seed(0)
    args = TrainingArguments(
        output_dir=str(output_dir),
        max_steps=max_steps,
        per_device_train_batch_size=8,
        save_strategy="steps",
        save_steps=save_steps,
        logging_steps=1,
        use_cpu=True,
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    return Trainer(
        model=BertForSequenceClassification(config), args=args, train_dataset=_Rows(), callbacks=callbacks
    )


@pytest.fixture(scope="module")
def trainer_folders(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """checkpoint-2, -4 and -6 written by the real Trainer (6 steps, save every 2)."""
    root = tmp_path_factory.mktemp("hf") / "run"
    heartbeat = Heartbeat(root.parent / "heartbeat.json")
    _trainer(root, max_steps=6, save_steps=2, callbacks=[TrainingGuardCallback(heartbeat=heartbeat)]).train()
    assert sorted(p.name for p in root.glob("checkpoint-*")) == [
        "checkpoint-2",
        "checkpoint-4",
        "checkpoint-6",
    ]
    return root


@pytest.fixture
def folders(trainer_folders: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(trainer_folders, copy)
    return copy


def test_the_callback_wrote_a_heartbeat_every_step(trainer_folders: Path) -> None:
    record = read_heartbeat(trainer_folders.parent / "heartbeat.json")
    assert record is not None and record.step == 6


def test_complete_folders_of_the_real_trainer_are_valid_and_the_newest_wins(folders: Path) -> None:
    assert newest_valid_checkpoint(folders) == str(folders / "checkpoint-6")
    for name in ("checkpoint-2", "checkpoint-4", "checkpoint-6"):
        assert checkpoint_problem(folders / name) is None


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize(
    ("tear", "reason"),
    [
        (lambda d: (d / "trainer_state.json").unlink(), "trainer_state.json is missing"),
        (lambda d: _truncate(d / "model.safetensors"), "model.safetensors is truncated"),
        (lambda d: (d / "model.safetensors").unlink(), "no model weights"),
        (lambda d: (d / "optimizer.pt").unlink(), "optimizer.pt is missing"),
        (lambda d: _truncate(d / "optimizer.pt"), "optimizer.pt is truncated or not a torch archive"),
        (lambda d: _truncate(d / "rng_state.pth"), "rng_state.pth is truncated or not a torch archive"),
        (lambda d: (d / "scheduler.pt").write_bytes(b""), "scheduler.pt is truncated or not a torch archive"),
        (
            lambda d: (d / "trainer_state.json").write_text('{"global_step": 99}'),
            "says global_step 99, but the folder is step 6",
        ),
    ],
    ids=[
        "no-trainer-state",
        "truncated-weights",
        "no-weights",
        "no-optimizer",
        "truncated-optimizer",
        "truncated-rng",
        "empty-scheduler",
        "foreign-step",
    ],
)
def test_a_torn_newest_folder_is_skipped_with_the_reason(
    folders: Path, caplog: pytest.LogCaptureFixture, tear, reason: str
) -> None:
    tear(folders / "checkpoint-6")
    assert get_last_checkpoint(str(folders)) == str(folders / "checkpoint-6")  # what transformers would pick
    with caplog.at_level(logging.WARNING):
        assert newest_valid_checkpoint(folders) == str(folders / "checkpoint-4")
    assert f"skipping checkpoint {folders / 'checkpoint-6'}: " in caplog.text
    assert reason in caplog.text


def test_no_valid_folder_means_a_fresh_start(tmp_path: Path) -> None:
    (tmp_path / "checkpoint-3").mkdir()
    (tmp_path / "other").mkdir()
    assert newest_valid_checkpoint(tmp_path) is None
    assert newest_valid_checkpoint(tmp_path / "missing") is None


def test_save_only_model_folders_are_valid_when_the_optimizer_is_not_required(folders: Path) -> None:
    for name in ("optimizer.pt", "scheduler.pt"):
        (folders / "checkpoint-6" / name).unlink()
    assert newest_valid_checkpoint(folders, require_optimizer=False) == str(folders / "checkpoint-6")


def test_the_trainer_resumes_from_the_picked_folder_when_the_newest_is_torn(folders: Path) -> None:
    _truncate(folders / "checkpoint-6" / "model.safetensors")
    picked = newest_valid_checkpoint(folders)
    assert picked == str(folders / "checkpoint-4")
    trainer = _trainer(folders, max_steps=6, save_steps=100, callbacks=[])
    trainer.train(resume_from_checkpoint=picked)
    assert trainer.state.global_step == 6


class _SigtermAt(TrainerCallback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            os.kill(os.getpid(), signal.SIGTERM)  # arrives mid-step, like a preemption


def test_sigterm_saves_at_the_next_step_boundary_and_exits_75(tmp_path: Path) -> None:
    heartbeat_file = tmp_path / "heartbeat.json"
    callback = TrainingGuardCallback(heartbeat=Heartbeat(heartbeat_file))
    trainer = _trainer(tmp_path / "run", max_steps=50, save_steps=1000, callbacks=[callback, _SigtermAt(2)])
    previous = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as exited:
        trainer.train()
    assert exited.value.code == EXIT_PREEMPTED
    assert callback.preempted
    assert sorted(p.name for p in (tmp_path / "run").glob("checkpoint-*")) == ["checkpoint-3"]
    assert newest_valid_checkpoint(tmp_path / "run") == str(tmp_path / "run" / "checkpoint-3")
    assert read_heartbeat(heartbeat_file).step == 3  # type: ignore[union-attr]
    assert signal.getsignal(signal.SIGTERM) == previous  # the guard restored the handler
