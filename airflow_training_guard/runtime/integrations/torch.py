"""PyTorch: checkpoint and resume everything a training loop needs, through the :class:`Checkpointer`.

The failure this prevents: a preempted PyTorch job resumes with the weights but a fresh optimizer
(Adam's moments reset), the LR schedule back at warm-up, new random streams and the data loader
at batch 0, so the "resumed" run quietly trains a different model; or, in a multi-rank job, rank 1
loads a checkpoint that rank 0 was still writing. Here one call saves the model, optimizer, LR
scheduler, grad scaler, every rank's RNG states and the data position, atomically and with
checksums; one call restores all of it, from the newest checkpoint that is valid.

Multi-rank jobs (``torch.distributed`` initialised, e.g. under ``torchrun``):

- :meth:`TorchCheckpointer.save` is collective: every rank calls it; rank 0 gathers each rank's
  RNG states and writes the checkpoint (model and optimizer are replicated under DDP); the others
  wait at a barrier, so no rank runs ahead of a checkpoint that is not there yet.
- :meth:`TorchCheckpointer.load` is collective too: rank 0 picks the newest valid checkpoint and
  tells the others which step, every rank loads it and takes its own RNG shard.
- A checkpoint records its world size and the shard files it claims (``rng/rank-00000.pt`` ...);
  it is valid only when every claimed shard is listed in its manifest (and, like every file, its
  checksum verifies). A job whose world size differs from the checkpoint's gets a clear
  :class:`~airflow_training_guard.exceptions.CheckpointError` before it trains a step.

Files of one checkpoint (``step-000000000120/``)::

    MANIFEST.json            checksums, step, metadata (written last by the Checkpointer)
    model.pt                 model.state_dict()  (DDP's .module unwrapped)
    optimizer.pt             optimizer.state_dict()        (when given)
    scheduler.pt             lr_scheduler.state_dict()     (when given)
    scaler.pt                grad_scaler.state_dict()      (when given)
    rng/rank-00000.pt        python, numpy, torch (and CUDA) RNG states of rank 0, one per rank

and the manifest's metadata: ``{"integration": "torch", "world_size": 2, "shards": [...],
"components": [...], "data_position": {...}, ...}``. Everything is loaded with
``torch.load(weights_only=True)``: a checkpoint never runs code.

Needs the ``torch`` extra (``pip install 'airflow-training-guard[torch]'``). Usage:
``docs/trainers.md``.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist

from airflow_training_guard.exceptions import CheckpointError
from airflow_training_guard.runtime.checkpoint import Checkpoint, Checkpointer, LoggerLike
from airflow_training_guard.runtime.heartbeat import COMPUTE_SECONDS_METRIC

if TYPE_CHECKING:
    from airflow_training_guard.runtime.preemption import PreemptionGuard

__all__ = [
    "INTEGRATION_NAME",
    "ComputeClock",
    "ResumeState",
    "TorchCheckpointer",
    "any_rank",
    "distributed_rank",
    "preemption_agreed",
    "seed_everything",
]

#: ``metadata["integration"]`` of checkpoints written here; a checkpoint of another writer is foreign.
INTEGRATION_NAME = "torch"

_COMPONENTS = ("model", "optimizer", "scheduler", "scaler")


def distributed_rank() -> tuple[int, int]:
    """``(rank, world_size)`` of this process: ``(0, 1)`` when ``torch.distributed`` is not initialised."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def any_rank(flag: bool) -> bool:
    """True on every rank when ``flag`` is true on at least one (an all-reduce of one number).

    Use it for decisions all ranks must take at the same step, such as "save and exit".
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return bool(flag)
    value = torch.tensor([1 if flag else 0], dtype=torch.int32)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def preemption_agreed(guard: PreemptionGuard) -> bool:
    """Whether any rank received SIGTERM: every rank then saves and exits at the same step.

    The signal reaches the ranks at slightly different moments; a rank that exits alone leaves
    the others blocked in the next all-reduce until the launcher's grace period kills them.
    """
    return any_rank(guard.requested)


def seed_everything(seed: int, *, deterministic: bool = True) -> None:
    """Seed Python, NumPy (when installed) and torch; with ``deterministic``, make torch's kernels so.

    Needed for a byte-identical re-run (``airflow training-guard runs reproduce``): same seed,
    same data, same environment -> same weights.
    """
    random.seed(seed)
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy comes with the torch extra
        pass
    else:
        np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


class ComputeClock:
    """Cumulative seconds a rank spent computing, for the straggler rule.

    Wrap the part of a step that does not wait for other ranks (forward and loss; the backward of
    a DDP model waits in its all-reduce)::

        with clock:
            loss = model(x).loss
        heartbeat.beat(step, clock.metrics(loss=loss.item()))
    """

    def __init__(self) -> None:
        self.seconds = 0.0
        self._started: float | None = None

    def __enter__(self) -> ComputeClock:
        self._started = time.perf_counter()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._started is not None:
            self.seconds += time.perf_counter() - self._started
            self._started = None

    def metrics(self, **values: float) -> dict[str, float]:
        """``values`` plus ``compute_seconds``, ready for ``Heartbeat.beat``."""
        return {**{k: float(v) for k, v in values.items()}, COMPUTE_SECONDS_METRIC: self.seconds}


@dataclass(frozen=True)
class ResumeState:
    """What :meth:`TorchCheckpointer.load` restored.

    :param step: the step the checkpoint was saved at; continue with ``step + 1``.
    :param data_position: the ``data_position`` given to :meth:`TorchCheckpointer.save`.
    :param metadata: the checkpoint's whole metadata.
    :param path: the checkpoint directory.
    """

    step: int
    data_position: Mapping[str, Any]
    metadata: Mapping[str, Any]
    path: Path
    components: tuple[str, ...] = field(default=())


class TorchCheckpointer:
    """Saves and restores a PyTorch training loop's full state in a checkpoint directory.

    :param checkpoint_dir: the job's checkpoint directory (``TrainingEnvironment.checkpoint_dir``),
        shared by all ranks (one machine, or a volume every node mounts).
    :param keep_last: newest valid checkpoints kept (``TrainingEnvironment.checkpoint_keep``).
    :param logger: where skipped checkpoints are reported (default: this module's logger).
    """

    def __init__(
        self,
        checkpoint_dir: str | os.PathLike[str],
        *,
        keep_last: int = 3,
        logger: LoggerLike | None = None,
    ) -> None:
        self.log: LoggerLike = logger if logger is not None else logging.getLogger(__name__)
        self.checkpointer = Checkpointer(checkpoint_dir, keep_last=keep_last, logger=self.log)

    @property
    def checkpoint_dir(self) -> Path:
        return self.checkpointer.checkpoint_dir

    def __repr__(self) -> str:
        return f"TorchCheckpointer({str(self.checkpoint_dir)!r}, keep_last={self.checkpointer.keep_last})"

    # --- saving ----------------------------------------------------------------------------------

    def save(
        self,
        step: int,
        *,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
        scheduler: Any | None = None,
        scaler: Any | None = None,
        data_position: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Checkpoint | None:
        """Save a checkpoint of ``step``; collective in a multi-rank job (every rank calls it).

        :param data_position: JSON data saying where the data stream is (``{"epoch": 2,
            "batch": 37}``); handed back by :meth:`load` so the loop skips what it already saw.
        :param metadata: more JSON data for the manifest (loss, ...).
        :returns: the checkpoint on rank 0, ``None`` on the other ranks.
        """
        rank, world_size = distributed_rank()
        rng = _rng_state()
        if world_size > 1:
            gathered: list[Any] = [None] * world_size
            dist.all_gather_object(gathered, rng)
        else:
            gathered = [rng]
        saved: Checkpoint | None = None
        error: BaseException | None = None
        if rank == 0:
            try:
                saved = self._write(
                    step,
                    model=model,
                    optimizer=optimizer,
                    scheduler=scheduler,
                    scaler=scaler,
                    rng_states=gathered,
                    data_position=data_position,
                    metadata=metadata,
                )
            except BaseException as err:  # tell the other ranks instead of leaving them at the barrier
                error = err
        if world_size > 1:
            failed = any_rank(error is not None)
            if failed and error is None:
                raise CheckpointError(f"rank 0 failed to save checkpoint step {step}; see rank 0's log")
        if error is not None:
            raise error
        return saved

    def _write(
        self,
        step: int,
        *,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer | None,
        scheduler: Any | None,
        scaler: Any | None,
        rng_states: list[Any],
        data_position: Mapping[str, Any] | None,
        metadata: Mapping[str, Any] | None,
    ) -> Checkpoint:
        states: dict[str, Any] = {"model": _unwrap(model).state_dict()}
        if optimizer is not None:
            states["optimizer"] = optimizer.state_dict()
        if scheduler is not None:
            states["scheduler"] = scheduler.state_dict()
        if scaler is not None:
            states["scaler"] = scaler.state_dict()
        shards = [_shard_name(rank) for rank in range(len(rng_states))]
        meta = dict(metadata or {})
        meta.update(
            {
                "integration": INTEGRATION_NAME,
                "world_size": len(rng_states),
                "shards": shards,
                "components": sorted(states),
                "data_position": dict(data_position or {}),
                "torch_version": torch.__version__,
            }
        )

        def write(directory: Path) -> None:
            for name, state in states.items():
                torch.save(state, directory / f"{name}.pt")
            (directory / "rng").mkdir()
            for shard, state in zip(shards, rng_states, strict=True):
                torch.save(state, directory / shard)

        return self.checkpointer.save(step, write, metadata=meta)

    # --- loading ---------------------------------------------------------------------------------

    def latest(self) -> Checkpoint | None:
        """The newest checkpoint that verifies and is complete, or ``None``.

        Checkpoints that do not verify, that another tool wrote (a foreign ``integration``) or whose
        claimed shards are not all there are skipped, each with a log line saying why.
        """
        scan = self.checkpointer.scan()
        for path, reason in scan.corrupt:
            self.log.warning("skipping checkpoint %s: %s", path, reason)
        for checkpoint in scan.valid:
            problem = shard_problem(checkpoint)
            if problem is None:
                return checkpoint
            self.log.warning("skipping checkpoint %s: %s", checkpoint.path, problem)
        return None

    def load(
        self,
        *,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
        scheduler: Any | None = None,
        scaler: Any | None = None,
        checkpoint: Checkpoint | None = None,
        map_location: str | torch.device = "cpu",
    ) -> ResumeState | None:
        """Restore the newest valid checkpoint into the given objects; ``None`` for a fresh start.

        Collective in a multi-rank job: every rank calls it and loads the step rank 0 picked.

        :raises CheckpointError: when the checkpoint was saved by a different world size, or it
            holds no state for a component that was passed (e.g. an optimizer), before anything is
            restored, so the job fails before training a step on a wrong resume.
        """
        rank, world_size = distributed_rank()
        if checkpoint is None:
            chosen = self.latest() if rank == 0 else None
            if world_size > 1:
                message: list[Any] = [chosen.step if chosen is not None else None]
                dist.broadcast_object_list(message, src=0)
                step = message[0]
                if rank != 0 and step is not None:
                    chosen = self._verified(step)
            checkpoint = chosen
        if checkpoint is None:
            return None
        claimed = int(checkpoint.metadata.get("world_size", 1))
        if claimed != world_size:
            raise CheckpointError(
                f"checkpoint step {checkpoint.step} ({checkpoint.path}) was saved by a job of world size "
                f"{claimed} (shards {', '.join(checkpoint.metadata.get('shards', []))}) but this job has "
                f"world size {world_size}; run it with {claimed} ranks (e.g. nproc_per_node={claimed}), or "
                "start from a new checkpoint_dir"
            )
        wanted = {"model": model, "optimizer": optimizer, "scheduler": scheduler, "scaler": scaler}
        missing = [
            name for name, obj in wanted.items() if obj is not None and f"{name}.pt" not in checkpoint.files
        ]
        if missing:
            raise CheckpointError(
                f"checkpoint step {checkpoint.step} ({checkpoint.path}) holds no state for "
                f"{', '.join(missing)} (it has {', '.join(checkpoint.metadata.get('components', []))}); "
                "resuming would restart them from scratch. Save them with TorchCheckpointer.save(), or "
                "do not pass them to load()"
            )
        for name, obj in wanted.items():
            if obj is None:
                continue
            state = _load(checkpoint, f"{name}.pt", map_location)
            (_unwrap(obj) if name == "model" else obj).load_state_dict(state)
        _set_rng_state(_load(checkpoint, _shard_name(rank), "cpu"))
        self.log.info("resumed from checkpoint step %s (%s)", checkpoint.step, checkpoint.path)
        position = checkpoint.metadata.get("data_position") or {}
        return ResumeState(
            step=checkpoint.step,
            data_position=dict(position),
            metadata=dict(checkpoint.metadata),
            path=checkpoint.path,
            components=tuple(checkpoint.metadata.get("components", ())),
        )

    def _verified(self, step: int) -> Checkpoint:
        scan = self.checkpointer.scan()
        for checkpoint in scan.valid:
            if checkpoint.step == step and shard_problem(checkpoint) is None:
                return checkpoint
        raise CheckpointError(
            f"rank 0 chose checkpoint step {step} in {self.checkpoint_dir}, but it does not verify on this "
            "rank: is the checkpoint directory on a volume every rank sees, and the same one?"
        )


def shard_problem(checkpoint: Checkpoint) -> str | None:
    """Why a verified checkpoint must still not be loaded by this integration, or ``None``."""
    integration = checkpoint.metadata.get("integration")
    if integration != INTEGRATION_NAME:
        return (
            f"it was written by {integration!r}, not by the torch integration (a foreign checkpoint); "
            "give each writer its own checkpoint_dir"
        )
    world_size = checkpoint.metadata.get("world_size")
    shards = checkpoint.metadata.get("shards")
    if type(world_size) is not int or world_size < 1 or not isinstance(shards, list):
        return f"its metadata has no valid world_size/shards ({world_size!r}, {shards!r})"
    expected = [_shard_name(rank) for rank in range(world_size)]
    if shards != expected:
        return f"it claims shards {shards} for world size {world_size}; expected {expected}"
    absent = [shard for shard in shards if shard not in checkpoint.files]
    if absent:
        return (
            f"it is incomplete: it claims {len(shards)} shards but {', '.join(absent)} "
            f"{'is' if len(absent) == 1 else 'are'} not in its manifest"
        )
    if "model.pt" not in checkpoint.files:
        return "it has no model.pt"
    return None


def _shard_name(rank: int) -> str:
    return f"rng/rank-{rank:05d}.pt"


def _unwrap(model: Any) -> Any:
    # DistributedDataParallel / DataParallel keep the real model in .module; saving the wrapper
    # would prefix every key with "module." and tie the checkpoint to the wrapper.
    return (
        model.module
        if isinstance(model, torch.nn.parallel.DistributedDataParallel | torch.nn.DataParallel)
        else model
    )


def _load(checkpoint: Checkpoint, name: str, map_location: str | torch.device) -> Any:
    path = checkpoint.file(name)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        raise CheckpointError(
            f"cannot load {name!r} of checkpoint step {checkpoint.step} ({path}): {err}"
        ) from err


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"python": random.getstate(), "torch": torch.get_rng_state()}
    try:
        import numpy as np
    except ImportError:  # pragma: no cover
        pass
    else:
        numpy_state: Any = np.random.get_state(legacy=True)
        kind, keys, pos, has_gauss, cached = numpy_state
        state["numpy"] = (
            str(kind),
            torch.from_numpy(keys.astype("int64")),
            int(pos),
            int(has_gauss),
            float(cached),
        )
    if torch.cuda.is_available():  # pragma: no cover - no GPU on CI
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Mapping[str, Any]) -> None:
    python = state["python"]
    random.setstate((python[0], tuple(python[1]), python[2]))
    torch.set_rng_state(state["torch"])
    if "numpy" in state:
        import numpy as np

        kind, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((kind, keys.numpy().astype("uint32"), pos, has_gauss, cached))
    if "cuda" in state and torch.cuda.is_available():  # pragma: no cover
        torch.cuda.set_rng_state_all(state["cuda"])
