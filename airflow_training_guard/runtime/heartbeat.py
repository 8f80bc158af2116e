"""Progress heartbeat: the training program rewrites one small JSON file, the launcher reads it.

The failure this prevents: a job that hangs (a dead NCCL peer, a stuck data loader) holds its GPUs
for hours because nothing notices that the step counter stopped moving. The program calls
:meth:`Heartbeat.beat` every step; the launcher polls :func:`read_heartbeat` and kills an attempt
whose step has not changed for too long.

The file is replaced atomically (write a temporary file, then ``os.replace``), so a reader sees
either the previous record or the new one, never half of one. It is not fsynced: a heartbeat only
matters while the program runs, and an fsync per training step would cost real time.

File format (``format_version`` 1)::

    {"format_version": 1, "step": 120, "metrics": {"loss": 0.31}, "time": 1764590000.5, "pid": 4242}

This module is imported inside training containers: standard library only, no Airflow.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

__all__ = ["HEARTBEAT_FORMAT_VERSION", "Heartbeat", "HeartbeatRecord", "read_heartbeat"]

HEARTBEAT_FORMAT_VERSION = 1

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HeartbeatRecord:
    """One heartbeat as the program wrote it.

    :param step: the training step the program had completed.
    :param metrics: numeric metrics of that step (loss, throughput, ...).
    :param time: unix time the program wrote the record.
    :param pid: process id of the writer.
    """

    step: int
    metrics: Mapping[str, float]
    time: float
    pid: int


class Heartbeat:
    """Writes the heartbeat file given by the launcher (``TRAINING_GUARD_HEARTBEAT_FILE``).

    :param path: the heartbeat file, or ``None`` to make every :meth:`beat` a no-op (a program run
        by hand, without a launcher, needs no code change).
    :param min_interval: seconds; beats closer together than this are skipped, so a loop of very
        fast steps does not spend its time rewriting a file nobody reads that often.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None,
        *,
        min_interval: float = 0.0,
        log_interval: float | None = None,
        log_stream: TextIO | None = None,
    ) -> None:
        if (
            isinstance(min_interval, bool)
            or not isinstance(min_interval, int | float)
            or not (math.isfinite(min_interval) and min_interval >= 0)
        ):
            raise ValueError(
                f"min_interval={min_interval!r} is invalid: use a number of seconds >= 0 (0 writes every beat)"
            )
        if log_interval is not None and not (
            isinstance(log_interval, int | float) and not isinstance(log_interval, bool) and log_interval >= 0
        ):
            raise ValueError(
                f"log_interval={log_interval!r} is invalid: use a number of seconds >= 0 or None"
            )
        self.path = Path(os.fspath(path)) if path is not None else None
        self.min_interval = float(min_interval)
        # Pod launchers cannot read a file inside the container: they read heartbeat marker lines
        # from the log stream instead (docs/checkpoint-contract.md). None: no marker lines.
        self.log_interval = None if log_interval is None else float(log_interval)
        self.log_stream = log_stream
        self._last_log: float | None = None
        # monotonic, not wall-clock: a clock adjustment must not stop or flood the heartbeats.
        self._last_write: float | None = None
        self._failing = False

    def __repr__(self) -> str:
        return f"Heartbeat({str(self.path) if self.path else None!r}, min_interval={self.min_interval})"

    def beat(self, step: int, metrics: Mapping[str, float] | None = None, *, force: bool = False) -> None:
        """Record that ``step`` is done, with optional numeric ``metrics``.

        Skipped when the previous write was less than ``min_interval`` seconds ago, unless
        ``force`` (use it for the first beat after start or resume, and the last one).

        A failed write (full disk, flaky network mount) is logged once and does not raise: losing
        a heartbeat is recoverable, crashing hours of training over it is not. If writes keep
        failing, the launcher's stall detection reports it.
        """
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ValueError(f"heartbeat step {step!r} is invalid: steps are integers >= 0")
        values: dict[str, float] = {}
        for key, value in (metrics or {}).items():
            if not isinstance(key, str):
                raise ValueError(f"heartbeat metric name {key!r} is not a string")
            try:
                values[key] = float(value)
            except (TypeError, ValueError):
                raise ValueError(
                    f"heartbeat metric {key!r}={value!r} is not a number; pass floats (e.g. loss.item())"
                ) from None
        now = time.monotonic()
        if self.log_interval is not None and (
            force or self._last_log is None or now - self._last_log >= self.log_interval
        ):
            stream = self.log_stream if self.log_stream is not None else sys.stdout
            stream.write(format_heartbeat_line(step, values) + "\n")
            stream.flush()
            self._last_log = now
        if self.path is None:
            return
        if not force and self._last_write is not None and now - self._last_write < self.min_interval:
            return
        record = {
            "format_version": HEARTBEAT_FORMAT_VERSION,
            "step": step,
            "metrics": values,
            "time": time.time(),
            "pid": os.getpid(),
        }
        # Same directory as the target so os.replace is a rename on one filesystem. The name does
        # not start with ".tmp-", so Checkpointer.prune() never mistakes it for a checkpoint's.
        temp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            temp.write_text(json.dumps(record) + "\n")
            os.replace(temp, self.path)
        except OSError as err:
            if not self._failing:
                _log.warning("cannot write heartbeat file %s: %s (training continues)", self.path, err)
            self._failing = True
            return
        if self._failing:
            _log.warning("heartbeat file %s is writable again", self.path)
        self._failing = False
        self._last_write = now


def read_heartbeat(path: str | os.PathLike[str]) -> HeartbeatRecord | None:
    """The record in the heartbeat file, or ``None`` when it is missing, unreadable or malformed.

    Never raises for bad content: the launcher polls this while the program runs, and a garbled
    file must look like "no news", not crash the supervisor.
    """
    try:
        raw = Path(os.fspath(path)).read_bytes()
        data = json.loads(raw)
    except (OSError, ValueError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        return None
    if not isinstance(data, dict):
        return None
    step, metrics, written, pid = data.get("step"), data.get("metrics", {}), data.get("time"), data.get("pid")
    if type(step) is not int or step < 0 or type(pid) is not int:
        return None
    if isinstance(written, bool) or not isinstance(written, int | float) or not math.isfinite(written):
        return None
    if not isinstance(metrics, dict):
        return None
    values: dict[str, float] = {}
    for key, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        values[str(key)] = float(value)
    return HeartbeatRecord(step=step, metrics=values, time=float(written), pid=pid)


#: Prefix of heartbeat marker lines in the program's output (read by pod launchers).
HEARTBEAT_LINE_PREFIX = "TRAINING_GUARD_HEARTBEAT "


def format_heartbeat_line(step: int, metrics: Mapping[str, float] | None = None) -> str:
    """``TRAINING_GUARD_HEARTBEAT {"step": 12, "metrics": {...}, "time": ...}`` (one line)."""
    payload = {"step": step, "metrics": dict(metrics or {}), "time": time.time(), "pid": os.getpid()}
    return HEARTBEAT_LINE_PREFIX + json.dumps(payload, separators=(",", ":"))


def parse_heartbeat_line(line: str) -> HeartbeatRecord | None:
    """The record in one marker line, or None for any other line (never raises)."""
    index = line.find(HEARTBEAT_LINE_PREFIX)
    if index < 0:
        return None
    try:
        payload = json.loads(line[index + len(HEARTBEAT_LINE_PREFIX) :])
        step = payload["step"]
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            return None
        metrics = {str(k): float(v) for k, v in dict(payload.get("metrics") or {}).items()}
        return HeartbeatRecord(
            step=step, metrics=metrics, time=float(payload.get("time", 0.0)), pid=int(payload.get("pid", 0))
        )
    except (ValueError, TypeError, KeyError, AttributeError):
        return None


def last_heartbeat_in(lines: Iterable[str]) -> HeartbeatRecord | None:
    """The newest heartbeat marker in ``lines`` (e.g. the tail of a pod's log)."""
    found: HeartbeatRecord | None = None
    for line in lines:
        record = parse_heartbeat_line(line)
        if record is not None:
            found = record
    return found
