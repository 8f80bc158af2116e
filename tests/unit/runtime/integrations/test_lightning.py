"""Lightning callback with the real pl.Trainer: heartbeat, atomic checkpoints, valid resume, SIGTERM -> 75."""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pl = pytest.importorskip("pytorch_lightning")

from airflow_training_guard.runtime import (  # noqa: E402
    EXIT_PREEMPTED,
    Checkpointer,
    Heartbeat,
    TrainingEnvironment,
    read_heartbeat,
)
from airflow_training_guard.runtime.integrations.lightning import (  # noqa: E402
    TrainingGuardLightningCallback,
    newest_valid_checkpoint,
)

pytestmark = pytest.mark.unit


class _Tiny(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)

    def training_step(self, batch, batch_idx):
        (x,) = batch
        return self.layer(x).pow(2).mean()

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=0.01)

    def train_dataloader(self):
        data = torch.utils.data.TensorDataset(torch.randn(64, 4, generator=torch.Generator().manual_seed(0)))
        return torch.utils.data.DataLoader(data, batch_size=4)


def _fit(tmp_path: Path, max_steps: int, callbacks: list, ckpt_path: str | None = None) -> pl.Trainer:
    trainer = pl.Trainer(
        max_steps=max_steps,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(tmp_path),
        callbacks=callbacks,
    )
    trainer.fit(_Tiny(), ckpt_path=ckpt_path)
    return trainer


def _callback(tmp_path: Path, every: int = 2) -> TrainingGuardLightningCallback:
    environment = TrainingEnvironment(
        partition_key="2026-11-01",
        checkpoint_dir=tmp_path / "ckpt",
        checkpoint_every=every,
        checkpoint_keep=5,
    )
    return TrainingGuardLightningCallback(environment, heartbeat=Heartbeat(tmp_path / "heartbeat.json"))


def test_checkpoints_heartbeats_and_resume_from_the_newest_valid_after_a_torn_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _fit(tmp_path, 6, [_callback(tmp_path)])
    assert sorted(p.name for p in (tmp_path / "ckpt").glob("step-*")) == [
        "step-000000000002",
        "step-000000000004",
        "step-000000000006",
    ]
    assert read_heartbeat(tmp_path / "heartbeat.json").step == 6  # type: ignore[union-attr]
    newest = Path(newest_valid_checkpoint(tmp_path / "ckpt"))  # type: ignore[arg-type]
    assert newest.parent.name == "step-000000000006" and newest.name == "model.ckpt"

    newest.write_bytes(newest.read_bytes()[:200])  # torn by a kill during a copy
    with caplog.at_level(logging.WARNING):
        picked = newest_valid_checkpoint(tmp_path / "ckpt")
    assert picked is not None and Path(picked).parent.name == "step-000000000004"
    assert "skipping checkpoint" in caplog.text and "'model.ckpt' has sha256" in caplog.text

    trainer = _fit(tmp_path, 8, [_callback(tmp_path)], ckpt_path=picked)
    assert trainer.global_step == 8  # resumed at 4, not 0


def test_a_foreign_checkpoint_is_skipped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    Checkpointer(tmp_path / "ckpt").save(9, {"weights.npy": b"x"})
    with caplog.at_level(logging.WARNING):
        assert newest_valid_checkpoint(tmp_path / "ckpt") is None
    assert "not by the Lightning callback (a foreign checkpoint)" in caplog.text


class _SigtermAt(pl.Callback):
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == 2:
            os.kill(os.getpid(), signal.SIGTERM)


def test_sigterm_saves_at_the_next_step_boundary_and_exits_75(tmp_path: Path) -> None:
    callback = _callback(tmp_path, every=1000)
    with pytest.raises(SystemExit) as exited:
        _fit(tmp_path, 50, [callback, _SigtermAt()])
    assert exited.value.code == EXIT_PREEMPTED and callback.preempted
    picked = newest_valid_checkpoint(tmp_path / "ckpt")
    assert picked is not None and Path(picked).parent.name == "step-000000000003"
