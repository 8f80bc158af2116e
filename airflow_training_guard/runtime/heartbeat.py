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

Multi-rank jobs (``torchrun``, a multi-node Job) write one file per rank, next to the launcher's
file: ``heartbeat.json`` -> ``heartbeat.rank-00001.json`` (:func:`rank_heartbeat_path`), with two
more keys, ``"rank": 1`` and ``"node": "<node name>"``. A rank that reports how long it spent
computing (not waiting in collectives) adds the metric :data:`COMPUTE_SECONDS_METRIC`, the
cumulative seconds; the straggler rule (:mod:`airflow_training_guard.policies.stragglers`) compares
ranks by it, because in synchronous data-parallel training every rank finishes each step at the same
wall-clock moment. The marker lines pod launchers read carry the same ``rank`` and ``node`` keys.

This module is imported inside training containers: standard library only, no Airflow.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import socket
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

__all__ = [
    "COMPUTE_SECONDS_METRIC",
    "ENV_NODE_NAME",
    "HEARTBEAT_FORMAT_VERSION",
    "Heartbeat",
    "HeartbeatRecord",
    "rank_heartbeat_path",
    "read_heartbeat",
    "read_rank_heartbeats",
    "slowest_rank",
]

HEARTBEAT_FORMAT_VERSION = 1

#: Metric name of a rank's cumulative compute seconds (time not spent waiting for other ranks).
COMPUTE_SECONDS_METRIC = "compute_seconds"
#: Name of the node a rank runs on, written into per-rank heartbeats (default: the host name).
#: On Kubernetes set it from the downward API (``spec.nodeName``) so a report names the node.
ENV_NODE_NAME = "TRAINING_GUARD_NODE_NAME"

_RANK_FILE_RE = re.compile(r"^(?P<stem>.+)\.rank-(?P<rank>[0-9]+)(?P<suffix>\.[^.]*)?$")

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HeartbeatRecord:
    """One heartbeat as the program wrote it.

    :param step: the training step the program had completed.
    :param metrics: numeric metrics of that step (loss, throughput, ...).
    :param time: unix time the program wrote the record.
    :param pid: process id of the writer.
    :param rank: global rank of the writer in a multi-rank job, else ``None``.
    :param node: node (host) the rank runs on, for multi-rank jobs.
    """

    step: int
    metrics: Mapping[str, float]
    time: float
    pid: int
    rank: int | None = None
    node: str | None = None


class Heartbeat:
    """Writes the heartbeat file given by the launcher (``TRAINING_GUARD_HEARTBEAT_FILE``).

    :param path: the heartbeat file, or ``None`` to make every :meth:`beat` a no-op (a program run
        by hand, without a launcher, needs no code change).
    :param min_interval: seconds; beats closer together than this are skipped, so a loop of very
        fast steps does not spend its time rewriting a file nobody reads that often.
    :param log_interval: seconds between heartbeat marker lines on stdout (pod launchers), or None.
    :param rank: global rank in a multi-rank job; written into the record. Pass the per-rank path
        (:func:`rank_heartbeat_path`) as ``path``, or use :meth:`for_rank`.
    :param node: node name written with ``rank`` (default ``$TRAINING_GUARD_NODE_NAME`` or the host).
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None,
        *,
        min_interval: float = 0.0,
        log_interval: float | None = None,
        log_stream: TextIO | None = None,
        rank: int | None = None,
        node: str | None = None,
    ) -> None:
        if rank is not None and (isinstance(rank, bool) or not isinstance(rank, int) or rank < 0):
            raise ValueError(f"rank={rank!r} is invalid: use the global rank, an integer >= 0, or None")
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
        self.rank = rank
        self.node = (
            (node or os.environ.get(ENV_NODE_NAME) or socket.gethostname()) if rank is not None else None
        )
        self._last_log: float | None = None
        # monotonic, not wall-clock: a clock adjustment must not stop or flood the heartbeats.
        self._last_write: float | None = None
        self._failing = False

    def __repr__(self) -> str:
        rank = f", rank={self.rank}" if self.rank is not None else ""
        return f"Heartbeat({str(self.path) if self.path else None!r}, min_interval={self.min_interval}{rank})"

    @classmethod
    def for_rank(
        cls,
        path: str | os.PathLike[str] | None,
        rank: int,
        world_size: int,
        *,
        min_interval: float = 0.0,
        log_interval: float | None = None,
        node: str | None = None,
    ) -> Heartbeat:
        """The heartbeat of one rank: ``path`` itself in a one-rank job, else its per-rank file."""
        if world_size <= 1:
            return cls(path, min_interval=min_interval, log_interval=log_interval)
        target = rank_heartbeat_path(path, rank) if path is not None else None
        return cls(target, min_interval=min_interval, log_interval=log_interval, rank=rank, node=node)

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
            stream.write(format_heartbeat_line(step, values, rank=self.rank, node=self.node) + "\n")
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
        if self.rank is not None:
            record["rank"] = self.rank
            record["node"] = self.node
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
    rank, node = data.get("rank"), data.get("node")
    if rank is not None and (type(rank) is not int or rank < 0):
        return None
    return HeartbeatRecord(
        step=step,
        metrics=values,
        time=float(written),
        pid=pid,
        rank=rank,
        node=str(node) if node is not None else None,
    )


def rank_heartbeat_path(path: str | os.PathLike[str], rank: int) -> Path:
    """Per-rank heartbeat file next to ``path``: ``heartbeat.json`` -> ``heartbeat.rank-00001.json``."""
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 0:
        raise ValueError(f"rank={rank!r} is invalid: use the global rank, an integer >= 0")
    base = Path(os.fspath(path))
    return base.with_name(f"{base.stem}.rank-{rank:05d}{base.suffix}")


def read_rank_heartbeats(path: str | os.PathLike[str]) -> dict[int, HeartbeatRecord]:
    """Every rank's newest record, by rank, from the per-rank files next to ``path``.

    Never raises for bad content (like :func:`read_heartbeat`): a missing directory or a garbled
    file reads as "no record for that rank".
    """
    base = Path(os.fspath(path))
    try:
        names = os.listdir(base.parent)
    except OSError:
        return {}
    found: dict[int, HeartbeatRecord] = {}
    for name in names:
        match = _RANK_FILE_RE.match(name)
        if match is None or match.group("stem") != base.stem or (match.group("suffix") or "") != base.suffix:
            continue
        record = read_heartbeat(base.parent / name)
        if record is not None:
            rank = int(match.group("rank"))
            found[rank] = record if record.rank is not None else _with_rank(record, rank)
    return dict(sorted(found.items()))


def slowest_rank(records: Mapping[int, HeartbeatRecord]) -> HeartbeatRecord | None:
    """The record with the lowest step (the job's progress is its slowest rank's), or ``None``."""
    if not records:
        return None
    return min(records.values(), key=lambda record: (record.step, record.rank or 0))


def _with_rank(record: HeartbeatRecord, rank: int) -> HeartbeatRecord:
    return HeartbeatRecord(
        step=record.step,
        metrics=record.metrics,
        time=record.time,
        pid=record.pid,
        rank=rank,
        node=record.node,
    )


#: Prefix of heartbeat marker lines in the program's output (read by pod launchers).
HEARTBEAT_LINE_PREFIX = "TRAINING_GUARD_HEARTBEAT "


def format_heartbeat_line(
    step: int, metrics: Mapping[str, float] | None = None, *, rank: int | None = None, node: str | None = None
) -> str:
    """``TRAINING_GUARD_HEARTBEAT {"step": 12, "metrics": {...}, "time": ...}`` (one line).

    A rank of a multi-rank job adds ``"rank"`` and ``"node"``.
    """
    payload: dict[str, object] = {
        "step": step,
        "metrics": dict(metrics or {}),
        "time": time.time(),
        "pid": os.getpid(),
    }
    if rank is not None:
        payload["rank"] = rank
        payload["node"] = node
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
        rank = payload.get("rank")
        if rank is not None and (isinstance(rank, bool) or not isinstance(rank, int) or rank < 0):
            return None
        node = payload.get("node")
        return HeartbeatRecord(
            step=step,
            metrics=metrics,
            time=float(payload.get("time", 0.0)),
            pid=int(payload.get("pid", 0)),
            rank=rank,
            node=str(node) if node is not None else None,
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
