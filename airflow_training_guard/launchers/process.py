"""Run a training program as a supervised subprocess: deadline, stall detection, clean kills.

Pure logic, no Airflow import: :class:`LocalTrainingOperator` is a thin adapter around
:class:`ProcessSupervisor`, and tests drive the supervisor directly with real processes.

Why a process group: a training program often starts workers (data loaders, torchrun ranks).
Killing only the direct child leaves them running and holding the GPU/CPU; the supervisor starts
the program in its own session and always signals the whole group, then reaps the child, so no
orphan or zombie survives a deadline, a stall or a killed Airflow task.
"""

from __future__ import annotations

import enum
import logging
import os
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from airflow_training_guard.runtime.contract import EXIT_CONFIG_ERROR, EXIT_OK, EXIT_PREEMPTED
from airflow_training_guard.runtime.heartbeat import HeartbeatRecord, read_heartbeat

log = logging.getLogger(__name__)


class Ending(enum.Enum):
    """How a supervised run ended."""

    SUCCEEDED = "succeeded"
    PREEMPTED = "preempted"  # the program saved a checkpoint and exited with EXIT_PREEMPTED
    CONFIG_ERROR = "config_error"  # the program said its configuration/input is bad
    FAILED = "failed"  # any other non-zero exit
    KILLED_BY_SIGNAL = "killed_by_signal"  # killed from outside (OOM killer, kill -9, node loss)
    DEADLINE_EXCEEDED = "deadline_exceeded"  # the supervisor killed it at the hard deadline
    STALLED = "stalled"  # no heartbeat progress for stall_after
    NO_STARTUP = "no_startup"  # no first heartbeat within startup_timeout
    CANCELLED = "cancelled"  # terminate() was called (Airflow's on_kill)


#: Endings a retry can fix: it resumes from the newest valid checkpoint.
RETRYABLE = frozenset(
    {
        Ending.PREEMPTED,
        Ending.FAILED,
        Ending.KILLED_BY_SIGNAL,
        Ending.DEADLINE_EXCEEDED,
        Ending.STALLED,
        Ending.NO_STARTUP,
    }
)


@dataclass(frozen=True)
class SupervisionLimits:
    """Time limits the supervisor enforces; all in seconds.

    :param deadline: hard deadline from start; the group is killed when it passes.
    :param startup_timeout: time allowed until the first heartbeat (when heartbeats are watched).
    :param stall_after: no heartbeat progress for this long means the program hangs; None disables.
    :param poll_interval: how often the supervisor checks the process and the heartbeat.
    :param termination_grace: time between SIGTERM and SIGKILL when the supervisor stops the group.
    :param watch_heartbeat: False for programs that do not write heartbeats (no stall detection).
    """

    deadline: float
    startup_timeout: float
    stall_after: float | None
    poll_interval: float = 5.0
    termination_grace: float = 30.0
    watch_heartbeat: bool = True


@dataclass(frozen=True)
class Outcome:
    """What happened to one supervised run."""

    ending: Ending
    returncode: int | None
    duration: float
    last_lines: tuple[str, ...]
    last_heartbeat: HeartbeatRecord | None
    detail: str = ""

    @property
    def retryable(self) -> bool:
        return self.ending in RETRYABLE

    @property
    def succeeded(self) -> bool:
        return self.ending is Ending.SUCCEEDED


def describe_returncode(returncode: int) -> str:
    """``-9`` -> ``killed by signal SIGKILL``; ``75`` -> ``exit code 75``."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"killed by signal {name}"
    return f"exit code {returncode}"


@dataclass
class ProcessSupervisor:
    """Start ``command`` in its own process group and watch it until it ends.

    :param command: argv of the training program.
    :param env: complete environment of the child.
    :param limits: deadline, startup, stall and polling settings.
    :param heartbeat_file: file the program's :class:`~airflow_training_guard.runtime.Heartbeat`
        writes; read on every poll.
    :param cwd: working directory of the child.
    :param on_line: called with every output line (stdout and stderr merged), e.g. a task logger.
    :param tail_lines: how many last output lines to keep for failure messages.
    """

    command: Sequence[str]
    env: Mapping[str, str]
    limits: SupervisionLimits
    heartbeat_file: Path | None = None
    cwd: str | None = None
    on_line: Callable[[str], None] = log.info
    tail_lines: int = 40
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _cancelled: threading.Event = field(default_factory=threading.Event, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def run(self) -> Outcome:
        """Run to the end and return the :class:`Outcome`; never leaves a process behind."""
        tail: deque[str] = deque(maxlen=self.tail_lines)
        started = time.monotonic()
        with self._lock:
            if self._cancelled.is_set():
                return Outcome(Ending.CANCELLED, None, 0.0, (), None, "cancelled before start")
            self._proc = subprocess.Popen(
                list(self.command),
                env=dict(self.env),
                cwd=self.cwd,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # own process group: see the module docstring
            )
        proc = self._proc
        reader = threading.Thread(target=self._pump, args=(proc, tail), daemon=True)
        reader.start()
        try:
            ending, detail, heartbeat = self._watch(proc, started)
        finally:
            # Whatever happened (including an exception in this thread), the group goes away
            # and the child is reaped: no orphans, no zombies.
            if proc.poll() is None:
                self._stop_group(proc)
            proc.wait()
            self._kill_group_leftovers(proc)
            reader.join(timeout=10)
        returncode = proc.returncode
        if ending is None and self._cancelled.is_set():
            # terminate() killed the group and the loop saw the exit before the flag.
            ending, detail = Ending.CANCELLED, "the task was killed; the process group was terminated"
        if ending is None:
            ending, detail = self._classify(returncode)
        if self.heartbeat_file is not None:
            # The last poll can be up to poll_interval old: the file has the final word.
            heartbeat = read_heartbeat(self.heartbeat_file) or heartbeat
        return Outcome(
            ending=ending,
            returncode=returncode,
            duration=time.monotonic() - started,
            last_lines=tuple(tail),
            last_heartbeat=heartbeat,
            detail=detail,
        )

    def terminate(self) -> None:
        """Stop the program's whole process group (SIGTERM, then SIGKILL after the grace).

        Safe to call from another thread (Airflow calls ``on_kill`` from its signal handler).
        """
        with self._lock:
            self._cancelled.set()
            proc = self._proc
        if proc is not None and proc.poll() is None:
            self._stop_group(proc)

    # -- internals ----------------------------------------------------------------------------

    def _watch(
        self, proc: subprocess.Popen[bytes], started: float
    ) -> tuple[Ending | None, str, HeartbeatRecord | None]:
        limits = self.limits
        watch = limits.watch_heartbeat and self.heartbeat_file is not None
        last_step: int | None = None
        last_progress = started
        heartbeat: HeartbeatRecord | None = None
        # Short sleeps keep the reaction to an exit fast even with a long poll interval.
        tick = min(limits.poll_interval, 0.2)
        next_poll = started
        while True:
            if proc.poll() is not None:
                return None, "", heartbeat
            now = time.monotonic()
            if self._cancelled.is_set():
                self._stop_group(proc)
                return Ending.CANCELLED, "the task was killed; the process group was terminated", heartbeat
            if now - started >= limits.deadline:
                self._stop_group(proc)
                return (
                    Ending.DEADLINE_EXCEEDED,
                    f"still running at the hard deadline ({limits.deadline:.0f}s)",
                    heartbeat,
                )
            if watch and now >= next_poll:
                next_poll = now + limits.poll_interval
                assert self.heartbeat_file is not None
                record = read_heartbeat(self.heartbeat_file)
                if record is not None:
                    heartbeat = record
                    if record.step != last_step:
                        last_step = record.step
                        last_progress = now
                if last_step is None and now - started >= limits.startup_timeout:
                    self._stop_group(proc)
                    return (
                        Ending.NO_STARTUP,
                        f"no heartbeat within the startup timeout ({limits.startup_timeout:.0f}s)",
                        heartbeat,
                    )
                if (
                    last_step is not None
                    and limits.stall_after is not None
                    and now - last_progress >= limits.stall_after
                ):
                    self._stop_group(proc)
                    return (
                        Ending.STALLED,
                        f"no progress for {now - last_progress:.0f}s (stall_after "
                        f"{limits.stall_after:.0f}s); last step {last_step}",
                        heartbeat,
                    )
            time.sleep(tick)

    @staticmethod
    def _classify(returncode: int) -> tuple[Ending, str]:
        if returncode == EXIT_OK:
            return Ending.SUCCEEDED, ""
        if returncode == EXIT_PREEMPTED:
            return Ending.PREEMPTED, "the program saved a checkpoint and exited as preempted"
        if returncode == EXIT_CONFIG_ERROR:
            return Ending.CONFIG_ERROR, "the program reported a configuration or input error"
        if returncode < 0:
            return Ending.KILLED_BY_SIGNAL, describe_returncode(returncode)
        return Ending.FAILED, describe_returncode(returncode)

    def _pump(self, proc: subprocess.Popen[bytes], tail: deque[str]) -> None:
        assert proc.stdout is not None
        for raw in iter(proc.stdout.readline, b""):
            line = raw.decode("utf-8", errors="replace").rstrip("\n")
            tail.append(line)
            try:
                self.on_line(line)
            except Exception:  # a logging problem must never stop draining the pipe
                log.exception("could not forward a line of training output")
        proc.stdout.close()

    def _stop_group(self, proc: subprocess.Popen[bytes]) -> None:
        """SIGTERM the group (the program may checkpoint), SIGKILL it after the grace."""
        self._signal_group(proc, signal.SIGTERM)
        try:
            proc.wait(timeout=self.limits.termination_grace)
        except subprocess.TimeoutExpired:
            self._signal_group(proc, signal.SIGKILL)
            proc.wait()

    def _kill_group_leftovers(self, proc: subprocess.Popen[bytes]) -> None:
        """Children the program started and left behind still carry its group id: kill them."""
        self._signal_group(proc, signal.SIGKILL)

    @staticmethod
    def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
        try:
            os.killpg(proc.pid, sig)  # the child is the group leader: pgid == pid
        except ProcessLookupError:
            pass
        except PermissionError:  # pragma: no cover - only if the pid was recycled by another user
            log.warning("not allowed to signal process group %s", proc.pid)
