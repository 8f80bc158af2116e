"""Hugging Face ``Trainer`` (and TRL's trainers, which subclass it): heartbeat, SIGTERM, valid resume.

Three failures this prevents:

- a hung Trainer (a dead data loader worker, a stuck collective) holds its GPUs for hours:
  :class:`TrainingGuardCallback` writes a heartbeat every optimizer step, which the launcher's
  stall watchdog reads;
- a preemption kills the Trainer mid-step and everything since the last ``save_steps`` is lost:
  on SIGTERM the callback makes the Trainer save a ``checkpoint-N`` folder at the next step
  boundary, then exits with code 75 (the launcher retries and the retry resumes);
- a kill *during* a save leaves a torn ``checkpoint-N`` folder (missing ``trainer_state.json``, a
  truncated ``model.safetensors`` or ``optimizer.pt``). ``transformers``' own
  ``get_last_checkpoint`` picks the highest number regardless, and the Trainer then crashes on it
  or, worse, resumes with a fresh optimizer when ``optimizer.pt`` is missing.
  :func:`newest_valid_checkpoint` picks the newest folder that is complete, and logs why each newer
  one was skipped.

A ``checkpoint-N`` folder is valid when (checks that read headers and sizes, not whole files):

- ``trainer_state.json`` parses and its ``global_step`` is N (the Trainer writes it last);
- the weights are complete: ``model.safetensors`` (or every shard of
  ``model.safetensors.index.json``, or ``adapter_model.safetensors``) has a parseable header and
  exactly the size the header promises; a ``pytorch_model.bin`` is a complete zip archive;
- ``optimizer.pt`` and ``scheduler.pt`` exist (unless ``require_optimizer=False``, for
  ``save_only_model=True`` runs) and, like every other ``.pt``/``.pth``/``.bin`` file in the folder,
  are complete zip archives (``torch.save``'s format: a truncated file loses its central directory).

Needs the ``hf`` extra. Usage: ``docs/trainers.md``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import struct
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from airflow_training_guard.runtime.contract import TrainingEnvironment
from airflow_training_guard.runtime.preemption import PreemptionGuard, exit_preempted

if TYPE_CHECKING:
    from airflow_training_guard.runtime.checkpoint import LoggerLike
    from airflow_training_guard.runtime.heartbeat import Heartbeat

__all__ = ["TrainingGuardCallback", "checkpoint_problem", "newest_valid_checkpoint"]

_log = logging.getLogger(__name__)
_CHECKPOINT_RE = re.compile(r"^checkpoint-([0-9]+)$")
_TORCH_ARCHIVE_SUFFIXES = (".pt", ".pth", ".bin")


def newest_valid_checkpoint(
    output_dir: str | os.PathLike[str],
    *,
    require_optimizer: bool = True,
    logger: LoggerLike | None = None,
) -> str | None:
    """The newest complete ``checkpoint-N`` folder in ``output_dir``, for ``resume_from_checkpoint``.

    Newer folders that are torn or foreign are skipped, each with a warning saying why. Returns
    ``None`` when there is none (a fresh start): ``trainer.train(resume_from_checkpoint=None)``.
    """
    log = logger if logger is not None else _log
    root = Path(os.fspath(output_dir))
    try:
        names = os.listdir(root)
    except FileNotFoundError:
        return None
    candidates = sorted(
        ((int(match.group(1)), root / name) for name in names if (match := _CHECKPOINT_RE.match(name))),
        reverse=True,
    )
    for _, path in candidates:
        problem = checkpoint_problem(path, require_optimizer=require_optimizer)
        if problem is None:
            return str(path)
        log.warning("skipping checkpoint %s: %s", path, problem)
    return None


def checkpoint_problem(path: str | os.PathLike[str], *, require_optimizer: bool = True) -> str | None:
    """Why the ``checkpoint-N`` folder at ``path`` must not be resumed from, or ``None`` if it is valid."""
    folder = Path(os.fspath(path))
    match = _CHECKPOINT_RE.match(folder.name)
    if match is None:
        return f"{folder.name!r} is not a 'checkpoint-<step>' folder"
    if not folder.is_dir():
        return "is not a directory"
    step = int(match.group(1))
    state_path = folder / "trainer_state.json"
    try:
        state = json.loads(state_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return "trainer_state.json is missing (the Trainer writes it last: the save was interrupted)"
    except (OSError, ValueError) as err:
        return f"trainer_state.json cannot be read ({err})"
    if not isinstance(state, dict) or state.get("global_step") != step:
        found = state.get("global_step") if isinstance(state, dict) else None
        return f"trainer_state.json says global_step {found!r}, but the folder is step {step} (foreign or renamed)"
    problem = _weights_problem(folder)
    if problem is not None:
        return problem
    if require_optimizer:
        missing = [name for name in ("optimizer.pt", "scheduler.pt") if not (folder / name).is_file()]
        if missing:
            return (
                f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} missing (resuming would restart "
                "the optimizer or LR schedule from scratch; pass require_optimizer=False for save_only_model runs)"
            )
    for file in sorted(folder.iterdir()):
        if file.is_file() and file.suffix in _TORCH_ARCHIVE_SUFFIXES:
            problem = _archive_problem(file)
            if problem is not None:
                return problem
    return None


def _weights_problem(folder: Path) -> str | None:
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            shards = sorted(set(weight_map.values()))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
            return f"model.safetensors.index.json cannot be read ({err})"
        for shard in shards:
            problem = _safetensors_problem(folder / str(shard))
            if problem is not None:
                return problem
        return None
    for name in ("model.safetensors", "adapter_model.safetensors"):
        if (folder / name).exists():
            return _safetensors_problem(folder / name)
    for name in ("pytorch_model.bin", "adapter_model.bin"):
        if (folder / name).exists():
            return _archive_problem(folder / name)
    return "no model weights (model.safetensors, its index, or pytorch_model.bin)"


def _safetensors_problem(path: Path) -> str | None:
    """A safetensors file is an 8-byte header length, a JSON header, then exactly the data it lists."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            raw = handle.read(8)
            if len(raw) < 8:
                return f"{path.name} is truncated ({size} bytes, no header)"
            (header_len,) = struct.unpack("<Q", raw)
            if header_len > size - 8:
                return f"{path.name} is truncated: its header needs {header_len} bytes, the file has {size - 8} after the length"
            header = json.loads(handle.read(header_len))
    except FileNotFoundError:
        return f"{path.name} is missing"
    except (OSError, ValueError) as err:
        return f"{path.name} has an unreadable header ({err})"
    if not isinstance(header, dict):
        return f"{path.name} has a header that is not a JSON object"
    end = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            end = max(end, int(info["data_offsets"][1]))
        except (KeyError, TypeError, ValueError, IndexError):
            return f"{path.name} has a malformed entry for tensor {name!r}"
    expected = 8 + header_len + end
    if size != expected:
        return f"{path.name} is truncated or damaged: {size} bytes, its header promises {expected}"
    return None


def _archive_problem(path: Path) -> str | None:
    """``torch.save`` writes a zip archive; truncation removes its central directory."""
    try:
        size = path.stat().st_size
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if info.header_offset + info.compress_size > size:
                    return f"{path.name} is truncated: member {info.filename!r} ends past the end of the file"
    except FileNotFoundError:
        return f"{path.name} is missing"
    except (OSError, zipfile.BadZipFile, ValueError) as err:
        return f"{path.name} is truncated or not a torch archive ({err})"
    return None


class TrainingGuardCallback(TrainerCallback):
    """Heartbeat every step; on SIGTERM save at the next step boundary and exit 75.

    ``Trainer(..., callbacks=[TrainingGuardCallback()])``. Use the launcher's checkpoint
    directory as ``TrainingArguments(output_dir=...)`` and resume with
    ``trainer.train(resume_from_checkpoint=newest_valid_checkpoint(output_dir))``.

    :param environment: the launcher's contract (default: read from the environment when training
        starts); its heartbeat file (per rank under ``torchrun``) receives the beats.
    :param heartbeat: a heartbeat writer to use instead (tests, custom launchers).
    :param exit_on_preemption: after the preemption checkpoint is saved, exit with code 75. False
        only stops training (``trainer.train()`` returns; check :attr:`preempted`).
    """

    def __init__(
        self,
        environment: TrainingEnvironment | None = None,
        *,
        heartbeat: Heartbeat | None = None,
        exit_on_preemption: bool = True,
    ) -> None:
        self.environment = environment
        self.heartbeat = heartbeat
        self.exit_on_preemption = exit_on_preemption
        self.preempted = False
        self._guard: PreemptionGuard | None = None
        self._loss: float | None = None

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if self.heartbeat is None:
            environment = self.environment or TrainingEnvironment.from_env()
            self.heartbeat = environment.heartbeat()
        self._guard = PreemptionGuard().__enter__()
        self.heartbeat.beat(state.global_step, force=True)

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        loss = (logs or {}).get("loss")
        if isinstance(loss, int | float):
            self._loss = float(loss)

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> TrainerControl:
        if self.heartbeat is not None:
            self.heartbeat.beat(state.global_step, {"loss": self._loss} if self._loss is not None else None)
        if self._guard is not None and _any_rank(self._guard.requested):
            # The Trainer checks should_save right after this callback: it saves checkpoint-N now.
            self.preempted = True
            control.should_save = True
            control.should_training_stop = True
        return control

    def on_save(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if self.preempted and self.exit_on_preemption:
            self._restore()
            exit_preempted(
                f"preempted at step {state.global_step}: checkpoint-{state.global_step} saved, exiting for a resume"
            )

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if self.heartbeat is not None:
            self.heartbeat.beat(state.global_step, force=True)
        self._restore()

    def _restore(self) -> None:
        if self._guard is not None:
            self._guard.__exit__(None, None, None)
            self._guard = None


def _any_rank(flag: bool) -> bool:
    from airflow_training_guard.runtime.integrations.torch import any_rank

    return any_rank(flag)
