"""TorchCheckpointer: the whole loop state round-trips; torn, foreign or incomplete checkpoints are skipped."""

from __future__ import annotations

import logging
import random
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from airflow_training_guard.exceptions import CheckpointError  # noqa: E402
from airflow_training_guard.runtime import Checkpointer  # noqa: E402
from airflow_training_guard.runtime.integrations.torch import (  # noqa: E402
    ComputeClock,
    TorchCheckpointer,
    any_rank,
    seed_everything,
)

pytestmark = pytest.mark.unit


def _loop() -> tuple:
    model = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=3, gamma=0.5)
    scaler = torch.amp.GradScaler("cpu", enabled=True)
    return model, optimizer, scheduler, scaler


def _train(model, optimizer, scheduler, steps: range) -> None:
    for _ in steps:
        # Draws from every random stream the loop uses, so a resume must restore each of them.
        x = torch.randn(8, 6) + float(np.random.rand()) + random.random()
        loss = model(torch.nn.functional.dropout(x, 0.2)).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()


def test_resume_continues_exactly_like_an_uninterrupted_run(tmp_path: Path) -> None:
    """Resumes that reset Adam's moments, the LR schedule or the RNG streams train a different model."""
    seed_everything(3, deterministic=False)
    straight = _loop()
    _train(*straight[:3], range(10))

    seed_everything(3, deterministic=False)
    first = _loop()
    _train(*first[:3], range(5))
    checkpoints = TorchCheckpointer(tmp_path)
    model, optimizer, scheduler, scaler = first
    checkpoints.save(
        5,
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        scaler=scaler,
        data_position={"next_step": 6},
    )

    seed_everything(999, deterministic=False)  # a new process would start with other random streams
    resumed = _loop()
    model2, optimizer2, scheduler2, scaler2 = resumed
    state = checkpoints.load(model=model2, optimizer=optimizer2, scheduler=scheduler2, scaler=scaler2)
    assert state is not None and state.step == 5 and state.data_position == {"next_step": 6}
    assert state.components == ("model", "optimizer", "scaler", "scheduler")
    _train(model2, optimizer2, scheduler2, range(5, 10))

    for a, b in zip(straight[0].parameters(), model2.parameters(), strict=True):
        assert torch.equal(a, b)
    assert scheduler2.last_epoch == straight[2].last_epoch == 10


def test_fresh_start_loads_nothing(tmp_path: Path) -> None:
    model, optimizer, *_ = _loop()
    assert TorchCheckpointer(tmp_path / "empty").load(model=model, optimizer=optimizer) is None


def test_a_torn_checkpoint_is_skipped_with_the_reason_and_the_previous_one_loads(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    model, optimizer, *_ = _loop()
    checkpoints = TorchCheckpointer(tmp_path)
    checkpoints.save(1, model=model, optimizer=optimizer)
    newest = checkpoints.save(2, model=model, optimizer=optimizer)
    assert newest is not None
    path = newest.file("optimizer.pt")
    path.write_bytes(path.read_bytes()[:100])  # killed mid-copy: truncated

    with caplog.at_level(logging.WARNING):
        state = checkpoints.load(model=model, optimizer=optimizer)
    assert state is not None and state.step == 1
    assert "skipping checkpoint" in caplog.text and "'optimizer.pt' has sha256" in caplog.text


def test_a_foreign_checkpoint_in_the_directory_is_skipped_never_loaded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    model, optimizer, *_ = _loop()
    checkpoints = TorchCheckpointer(tmp_path)
    checkpoints.save(1, model=model, optimizer=optimizer)
    # Another program (the NumPy example) saved into the same directory.
    Checkpointer(tmp_path).save(7, {"weights.npy": b"\x93NUMPY"}, metadata={"loss": 0.1})
    with caplog.at_level(logging.WARNING):
        state = checkpoints.load(model=model, optimizer=optimizer)
    assert state is not None and state.step == 1
    assert "not by the torch integration (a foreign checkpoint)" in caplog.text


def test_a_checkpoint_missing_a_claimed_shard_is_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    model, optimizer, *_ = _loop()
    checkpoints = TorchCheckpointer(tmp_path)
    checkpoints.save(1, model=model, optimizer=optimizer)

    def write_one_shard(directory: Path) -> None:
        torch.save(model.state_dict(), directory / "model.pt")
        (directory / "rng").mkdir()
        torch.save(
            {"python": random.getstate(), "torch": torch.get_rng_state()}, directory / "rng/rank-00000.pt"
        )

    Checkpointer(tmp_path).save(
        2,
        write_one_shard,
        metadata={
            "integration": "torch",
            "world_size": 2,
            "shards": ["rng/rank-00000.pt", "rng/rank-00001.pt"],
            "components": ["model"],
        },
    )
    with caplog.at_level(logging.WARNING):
        latest = checkpoints.latest()
    assert latest is not None and latest.step == 1
    assert "it claims 2 shards but rng/rank-00001.pt is not in its manifest" in caplog.text


def test_a_checkpoint_of_another_world_size_is_a_clear_error_before_anything_loads(tmp_path: Path) -> None:
    model, optimizer, *_ = _loop()

    def write_two_shards(directory: Path) -> None:
        torch.save(model.state_dict(), directory / "model.pt")
        torch.save(optimizer.state_dict(), directory / "optimizer.pt")
        (directory / "rng").mkdir()
        for rank in (0, 1):
            torch.save(
                {"python": random.getstate(), "torch": torch.get_rng_state()},
                directory / f"rng/rank-{rank:05d}.pt",
            )

    Checkpointer(tmp_path).save(
        4,
        write_two_shards,
        metadata={
            "integration": "torch",
            "world_size": 2,
            "shards": ["rng/rank-00000.pt", "rng/rank-00001.pt"],
            "components": ["model", "optimizer"],
        },
    )
    before = [p.clone() for p in model.parameters()]
    with pytest.raises(
        CheckpointError,
        match=r"saved by a job of world size 2 .* but this job has world size 1; run it with 2 ranks",
    ):
        TorchCheckpointer(tmp_path).load(
            model=torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
        )
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_loading_an_optimizer_the_checkpoint_does_not_hold_is_an_error(tmp_path: Path) -> None:
    """A resume that silently starts Adam from zero moments is not a resume."""
    model, optimizer, *_ = _loop()
    TorchCheckpointer(tmp_path).save(3, model=model)
    with pytest.raises(CheckpointError, match=r"holds no state for optimizer \(it has model\)"):
        TorchCheckpointer(tmp_path).load(model=model, optimizer=optimizer)


def test_checkpoints_never_unpickle_code(tmp_path: Path) -> None:
    """torch.load(weights_only=True): a planted pickle that runs code is refused, not executed."""
    model, *_ = _loop()
    checkpoints = TorchCheckpointer(tmp_path)
    saved = checkpoints.save(1, model=model)
    assert saved is not None

    class Boom:
        def __reduce__(self):
            return (Path(tmp_path / "pwned").touch, ())

    def write_evil(directory: Path) -> None:
        torch.save({"x": Boom()}, directory / "model.pt")
        (directory / "rng").mkdir()
        torch.save(
            {"python": random.getstate(), "torch": torch.get_rng_state()}, directory / "rng/rank-00000.pt"
        )

    Checkpointer(tmp_path).save(
        2, write_evil, metadata={"integration": "torch", "world_size": 1, "shards": ["rng/rank-00000.pt"]}
    )
    with pytest.raises(CheckpointError, match=r"cannot load 'model.pt' of checkpoint step 2"):
        checkpoints.load(model=model)
    assert not (tmp_path / "pwned").exists()


def test_any_rank_without_a_process_group_is_the_local_flag() -> None:
    assert any_rank(True) is True
    assert any_rank(False) is False


def test_compute_clock_adds_compute_seconds_to_the_metrics() -> None:
    clock = ComputeClock()
    with clock:
        sum(range(10000))
    metrics = clock.metrics(loss=0.5)
    assert metrics["loss"] == 0.5 and metrics["compute_seconds"] > 0
