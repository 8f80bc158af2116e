"""PyTorch Lightning: the same three behaviours as the Hugging Face callback, for ``pl.Trainer``.

- a heartbeat every optimizer step (the launcher's stall watchdog reads it);
- SIGTERM: save a checkpoint at the next step boundary, then exit with code 75;
- resume from the newest *valid* checkpoint: :class:`TrainingGuardLightningCallback` saves
  Lightning's full checkpoint (``trainer.save_checkpoint``: weights, optimizers, schedulers, loop
  state) through the :class:`~airflow_training_guard.runtime.Checkpointer`, so it is atomic and
  checksummed (``step-<N>/model.ckpt``); :func:`newest_valid_checkpoint` returns the ``model.ckpt``
  of the newest one that verifies, for ``trainer.fit(..., ckpt_path=...)``, and logs why each newer
  one was skipped (torn, damaged, or written by another program).

One process per job (``devices=1``): ``trainer.save_checkpoint`` is collective under a multi-rank
strategy, which this callback does not coordinate yet; it refuses such a trainer with a clear
error. For multi-rank Lightning jobs use the PyTorch integration from the module's hooks.

Needs the ``lightning`` extra. Usage: ``docs/trainers.md``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytorch_lightning as pl

from airflow_training_guard.runtime.checkpoint import Checkpointer, LoggerLike
from airflow_training_guard.runtime.contract import TrainingEnvironment
from airflow_training_guard.runtime.preemption import PreemptionGuard, exit_preempted

if TYPE_CHECKING:
    from airflow_training_guard.runtime.heartbeat import Heartbeat

__all__ = ["INTEGRATION_NAME", "TrainingGuardLightningCallback", "newest_valid_checkpoint"]

#: ``metadata["integration"]`` of the checkpoints this callback writes.
INTEGRATION_NAME = "lightning"
CHECKPOINT_FILE = "model.ckpt"
_log = logging.getLogger(__name__)


def newest_valid_checkpoint(
    checkpoint_dir: str | os.PathLike[str], *, logger: LoggerLike | None = None
) -> str | None:
    """``.../step-<N>/model.ckpt`` of the newest valid Lightning checkpoint, or ``None`` (fresh start)."""
    log = logger if logger is not None else _log
    scan = Checkpointer(checkpoint_dir, logger=log).scan()
    for path, reason in scan.corrupt:
        log.warning("skipping checkpoint %s: %s", path, reason)
    for checkpoint in scan.valid:
        if (
            checkpoint.metadata.get("integration") != INTEGRATION_NAME
            or CHECKPOINT_FILE not in checkpoint.files
        ):
            log.warning(
                "skipping checkpoint %s: it was written by %r, not by the Lightning callback (a foreign "
                "checkpoint); give each writer its own checkpoint_dir",
                checkpoint.path,
                checkpoint.metadata.get("integration"),
            )
            continue
        return str(checkpoint.file(CHECKPOINT_FILE))
    return None


class TrainingGuardLightningCallback(pl.Callback):
    """Heartbeat every step, a checkpoint every ``checkpoint_every`` steps, SIGTERM -> save and exit 75.

    :param environment: the launcher's contract (default: read from the environment at fit start):
        checkpoint directory, save interval, how many to keep, heartbeat file.
    :param heartbeat: a heartbeat writer to use instead (tests, custom launchers).
    :param exit_on_preemption: after the preemption checkpoint, exit with code 75 (False: only stop
        training; check :attr:`preempted`).
    """

    def __init__(
        self,
        environment: TrainingEnvironment | None = None,
        *,
        heartbeat: Heartbeat | None = None,
        exit_on_preemption: bool = True,
    ) -> None:
        super().__init__()
        self.environment = environment
        self.heartbeat = heartbeat
        self.exit_on_preemption = exit_on_preemption
        self.preempted = False
        self._guard: PreemptionGuard | None = None
        self._checkpointer: Checkpointer | None = None
        self._every = 100

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.world_size > 1:
            raise RuntimeError(
                f"TrainingGuardLightningCallback runs one process per job, but this trainer has world size "
                f"{trainer.world_size}; use devices=1, or the PyTorch integration "
                "(airflow_training_guard.runtime.integrations.torch) for multi-rank jobs"
            )
        environment = self.environment or TrainingEnvironment.from_env()
        self._checkpointer = Checkpointer(environment.checkpoint_dir, keep_last=environment.checkpoint_keep)
        self._every = environment.checkpoint_every
        if self.heartbeat is None:
            self.heartbeat = environment.heartbeat()
        self._guard = PreemptionGuard().__enter__()
        self.heartbeat.beat(trainer.global_step, force=True)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        step = trainer.global_step
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        metrics = (
            {"loss": float(loss)} if loss is not None and getattr(loss, "numel", lambda: 1)() == 1 else None
        )
        if self.heartbeat is not None:
            self.heartbeat.beat(step, metrics)
        stop = self._guard is not None and self._guard.requested
        if step > 0 and (step % self._every == 0 or stop):
            self.save(trainer, step)
        if stop:
            self.preempted = True
            trainer.should_stop = True
            if self.exit_on_preemption:
                self._restore()
                exit_preempted(f"preempted at step {step}: checkpoint saved, exiting for a resume")

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.heartbeat is not None:
            self.heartbeat.beat(trainer.global_step, force=True)
        self._restore()

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        self._restore()

    def save(self, trainer: pl.Trainer, step: int) -> None:
        """Save Lightning's full checkpoint of ``step`` atomically (``step-<N>/model.ckpt``)."""
        assert self._checkpointer is not None

        def write(directory: Path) -> None:
            trainer.save_checkpoint(directory / CHECKPOINT_FILE)

        self._checkpointer.save(step, write, metadata={"integration": INTEGRATION_NAME})

    def _restore(self) -> None:
        if self._guard is not None:
            self._guard.__exit__(None, None, None)
            self._guard = None
