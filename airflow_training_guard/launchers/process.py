"""Run a training program as a supervised subprocess: deadline, stall detection, clean kills.

Pure logic, no Airflow import: :class:`LocalTrainingOperator` is a thin adapter around
:class:`ProcessSupervisor`, and tests drive the supervisor directly with real processes.

Why a process group: a training program often starts workers (data loaders, torchrun ranks).
Killing only the direct child leaves them running and holding the GPU/CPU; the supervisor starts
the program in its own session and always signals the whole group, then reaps the child, so no
orphan or zombie survives a deadline, a stall or a killed Airflow task.

Multi-rank programs run under ``torchrun`` (:func:`torchrun_command`): every rank writes its own
heartbeat file (``heartbeat.rank-00001.json``); the job's progress is its slowest rank's, and the
straggler rule (:mod:`airflow_training_guard.policies.stragglers`) compares the ranks. torchrun
exits 1 whenever a rank fails, so the ranks' own exit codes (75 preempted, 78 bad configuration)
are read from the failure summary torchrun prints.

How a run failed is said in the package's one failure vocabulary,
:class:`~airflow_training_guard.policies.diagnostics.Diagnosis`: an exit code is classified by the
same rule as a pod container's, a stall by the same :class:`~airflow_training_guard.policies.stall.StallWatch`
rule as the pod watchdog's, so a local run and a pod run agree on what is retried.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from airflow_training_guard.policies.diagnostics import (
    DEFAULT_NON_RETRYABLE_EXIT_CODES,
    Diagnosis,
    FailureKind,
    deadline_exceeded,
    diagnose_exit,
    stalled,
    straggler,
)
from airflow_training_guard.policies.durations import format_duration
from airflow_training_guard.policies.stall import StallWatch
from airflow_training_guard.policies.stragglers import StragglerPolicy, StragglerReport, StragglerWatch
from airflow_training_guard.runtime.contract import EXIT_OK, EXIT_PREEMPTED
from airflow_training_guard.runtime.heartbeat import (
    COMPUTE_SECONDS_METRIC,
    HeartbeatRecord,
    read_heartbeat,
    read_rank_heartbeats,
    slowest_rank,
)

log = logging.getLogger(__name__)


_STOPPED = "the launcher stopped its process group"

#: torchrun's failure summary: one ``exitcode : 75 (pid: 123)`` line per failed rank.
_TORCHRUN_EXITCODE_RE = re.compile(r"^\s*exitcode\s*:\s*(-?[0-9]+)\s*\(pid:")
_TORCHRUN_RANK_RE = re.compile(r"^\s*rank\s*:\s*([0-9]+)\s*\(local_rank:")


def torchrun_command(command: Sequence[str], nproc_per_node: int, *, python: str) -> list[str]:
    """``command`` run as ``nproc_per_node`` ranks by ``torchrun`` on this machine.

    ``python train.py --steps 10`` becomes ``python -m torch.distributed.run --standalone
    --nproc-per-node 2 --max-restarts 0 train.py --steps 10`` (the same interpreter runs the
    ranks); any other executable runs with ``--no-python``. ``--max-restarts 0``: restarts are the
    Airflow retry's job, which resumes from the newest valid checkpoint.
    """
    if isinstance(nproc_per_node, bool) or not isinstance(nproc_per_node, int) or nproc_per_node < 1:
        raise ValueError(f"nproc_per_node={nproc_per_node!r} is invalid: use an integer >= 1")
    if not command:
        raise ValueError("command is empty")
    first = os.path.basename(command[0])
    launcher = ["-m", "torch.distributed.run", "--standalone", "--nnodes", "1"]
    launcher += ["--nproc-per-node", str(nproc_per_node), "--max-restarts", "0"]
    if re.fullmatch(r"python[0-9.]*", first) and len(command) > 1 and not command[1].startswith("-"):
        return [command[0], *launcher, *command[1:]]
    return [python, *launcher, "--no-python", *command]


@dataclass(frozen=True)
class SupervisionLimits:
    """Time limits the supervisor enforces; all in seconds.

    :param deadline: hard deadline from start; the group is killed when it passes.
    :param startup_timeout: extra time before the first heartbeat (``StallWatch``'s
        ``startup_grace``, as the pod watchdog's): a program that never beats is stopped after
        ``startup_timeout + stall_after``.
    :param stall_after: no heartbeat progress for this long means the program hangs; None disables
        stall detection, and with it the startup check (as for pods).
    :param poll_interval: how often the supervisor checks the process and the heartbeat.
    :param termination_grace: time between SIGTERM and SIGKILL when the supervisor stops the group.
    :param watch_heartbeat: False for programs that do not write heartbeats (no stall detection).
    :param straggler: the straggler rule for multi-rank programs, or None.
    """

    deadline: float
    startup_timeout: float
    stall_after: float | None
    poll_interval: float = 5.0
    termination_grace: float = 30.0
    watch_heartbeat: bool = True
    straggler: StragglerPolicy | None = None


#: Why a run stopped when the task itself was killed (Airflow's ``on_kill``); not a failure kind.
CANCELLED_DETAIL = "the task was killed; the process group was terminated"


@dataclass(frozen=True)
class Outcome:
    """What happened to one supervised run.

    :param diagnosis: why it failed, in the package's failure vocabulary; None when it succeeded
        or was cancelled.
    :param cancelled: the task was killed (``terminate()``): neither a success nor a failure of the
        program.
    """

    returncode: int | None
    duration: float
    last_lines: tuple[str, ...]
    last_heartbeat: HeartbeatRecord | None
    diagnosis: Diagnosis | None = None
    cancelled: bool = False
    stragglers: tuple[StragglerReport, ...] = ()
    rank_exit_codes: Mapping[int, int] = field(default_factory=dict)

    @property
    def kind(self) -> FailureKind | None:
        return self.diagnosis.kind if self.diagnosis is not None else None

    @property
    def retryable(self) -> bool:
        return self.diagnosis is not None and self.diagnosis.retryable

    @property
    def succeeded(self) -> bool:
        return self.diagnosis is None and not self.cancelled

    @property
    def detail(self) -> str:
        """One line on how it ended: the diagnosis's reason, or why it was cancelled."""
        if self.diagnosis is not None:
            return self.diagnosis.reason
        return CANCELLED_DETAIL if self.cancelled else ""


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
    :param multi_rank: the command is ``torchrun``: read per-rank heartbeats and rank exit codes.
    :param non_retryable_exit_codes: exit codes a retry cannot fix (default 78 and 2); exit 75 is
        always retryable (:func:`~airflow_training_guard.policies.diagnostics.diagnose_exit`).
    """

    command: Sequence[str]
    env: Mapping[str, str]
    limits: SupervisionLimits
    heartbeat_file: Path | None = None
    cwd: str | None = None
    on_line: Callable[[str], None] = log.info
    tail_lines: int = 40
    multi_rank: bool = False
    non_retryable_exit_codes: Collection[int] = DEFAULT_NON_RETRYABLE_EXIT_CODES
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _cancelled: threading.Event = field(default_factory=threading.Event, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _rank_exit_codes: dict[int, int] = field(default_factory=dict, init=False, repr=False)
    _stragglers: list[StragglerReport] = field(default_factory=list, init=False, repr=False)

    def run(self) -> Outcome:
        """Run to the end and return the :class:`Outcome`; never leaves a process behind."""
        tail: deque[str] = deque(maxlen=self.tail_lines)
        started = time.monotonic()
        with self._lock:
            if self._cancelled.is_set():
                return Outcome(None, 0.0, (), None, cancelled=True)
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
            stopped, heartbeat = self._watch(proc, started)
        finally:
            # Whatever happened (including an exception in this thread), the group goes away
            # and the child is reaped: no orphans, no zombies.
            if proc.poll() is None:
                self._stop_group(proc)
            proc.wait()
            self._kill_group_leftovers(proc)
            reader.join(timeout=10)
        returncode = proc.returncode
        # terminate() may kill the group before the loop sees the flag: the flag decides.
        cancelled = stopped is None and self._cancelled.is_set()
        diagnosis = stopped
        if diagnosis is None and not cancelled and returncode != EXIT_OK:
            if self.multi_rank:
                diagnosis = self._diagnose_ranks(dict(self._rank_exit_codes))
            if diagnosis is None:
                diagnosis = diagnose_exit(
                    returncode,
                    subject=f"process {proc.pid}",
                    non_retryable_exit_codes=self.non_retryable_exit_codes,
                )
        if self.heartbeat_file is not None:
            # The last poll can be up to poll_interval old: the file has the final word.
            heartbeat = self._read_progress() or heartbeat
        return Outcome(
            returncode=returncode,
            duration=time.monotonic() - started,
            last_lines=tuple(tail),
            last_heartbeat=heartbeat,
            diagnosis=diagnosis,
            cancelled=cancelled,
            stragglers=tuple(self._stragglers),
            rank_exit_codes=dict(self._rank_exit_codes),
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
    ) -> tuple[Diagnosis | None, HeartbeatRecord | None]:
        """Poll until the program exits (None) or the launcher stops it (why, as a Diagnosis)."""
        limits = self.limits
        watch = limits.watch_heartbeat and self.heartbeat_file is not None
        subject = f"process {proc.pid}"
        heartbeat: HeartbeatRecord | None = None
        # Short sleeps keep the reaction to an exit fast even with a long poll interval.
        tick = min(limits.poll_interval, 0.2)
        next_poll = started
        stragglers = StragglerWatch(limits.straggler, started) if watch and limits.straggler else None
        # The pod watchdog's rule, with the same meaning of startup_timeout (its startup_grace).
        stall = (
            StallWatch(stall_after=limits.stall_after, startup_grace=limits.startup_timeout, started=started)
            if watch and limits.stall_after is not None
            else None
        )
        while True:
            if proc.poll() is not None:
                return None, heartbeat
            now = time.monotonic()
            if self._cancelled.is_set():
                self._stop_group(proc)
                return None, heartbeat
            if now - started >= limits.deadline:
                self._stop_group(proc)
                window = format_duration(timedelta(seconds=limits.deadline))
                detail = f"still running at the hard deadline ({window}); {_STOPPED}"
                return deadline_exceeded(detail, subject=subject), heartbeat
            if watch and now >= next_poll:
                next_poll = now + limits.poll_interval
                record = self._read_progress()
                if stragglers is not None:
                    reason = self._check_stragglers(stragglers, now)
                    if reason is not None:
                        self._stop_group(proc)
                        return straggler(reason, subject=subject), record or heartbeat
                if record is not None:
                    heartbeat = record
                found = stall.observe(record.step if record else None, now) if stall else None
                if found is not None:
                    assert stall is not None
                    self._stop_group(proc)
                    seen = stall.last_step is not None
                    return stalled(f"{found}; {_STOPPED}", subject=subject, heartbeat_seen=seen), heartbeat
            time.sleep(tick)

    def _read_progress(self) -> HeartbeatRecord | None:
        """The job's progress: the heartbeat file, or the slowest rank's per-rank file."""
        assert self.heartbeat_file is not None
        record = read_heartbeat(self.heartbeat_file)
        if record is None and self.multi_rank:
            record = slowest_rank(read_rank_heartbeats(self.heartbeat_file))
        return record

    def _check_stragglers(self, watch: StragglerWatch, now: float) -> str | None:
        """Feed the straggler rule; the reason to restart, or None (warnings are logged)."""
        assert self.heartbeat_file is not None and self.limits.straggler is not None
        for rank, record in read_rank_heartbeats(self.heartbeat_file).items():
            watch.observe(
                rank,
                record.step,
                now,
                node=record.node,
                compute_seconds=record.metrics.get(COMPUTE_SECONDS_METRIC),
            )
        reports = watch.check(now)
        self._stragglers.extend(reports)
        for report in reports:
            message = f"training-guard: {report.describe()}"
            log.warning("%s", message)
            try:
                self.on_line(message)
            except Exception:  # pragma: no cover - a logging problem must not stop the watch
                log.exception("could not forward a straggler report")
        if reports and self.limits.straggler.action == "restart":
            return "; ".join(report.describe() for report in reports) + (
                "; policy 'restart': the attempt was stopped, the retry resumes from the newest valid checkpoint"
            )
        return None

    def _diagnose_ranks(self, codes: dict[int, int]) -> Diagnosis | None:
        """torchrun exits 1 for any failed rank; the rank whose code says most is classified.

        A rank's non-retryable code (78: bad configuration) wins, then a preemption of every rank
        (all 75), then a rank killed by a signal, then the first failed rank.
        """
        described = ", ".join(
            f"rank {rank}: {describe_returncode(code)}" for rank, code in sorted(codes.items())
        )
        failed = sorted((rank, code) for rank, code in codes.items() if code != EXIT_OK)
        if not failed:  # torchrun failed without a rank failing (rendezvous): its own exit says more
            return None
        chosen = (
            next(((r, c) for r, c in failed if c in self.non_retryable_exit_codes), None)
            or (failed[0] if all(c == EXIT_PREEMPTED for _, c in failed) else None)
            or next(((r, c) for r, c in failed if c < 0), None)
            or next(((r, c) for r, c in failed if c != EXIT_PREEMPTED), failed[0])
        )
        rank, code = chosen
        return diagnose_exit(
            code,
            subject=f"rank {rank}",
            message=f"torchrun reported {described}",
            non_retryable_exit_codes=self.non_retryable_exit_codes,
        )

    def _pump(self, proc: subprocess.Popen[bytes], tail: deque[str]) -> None:
        assert proc.stdout is not None
        pending_rank: int | None = None
        for raw in iter(proc.stdout.readline, b""):
            line = raw.decode("utf-8", errors="replace").rstrip("\n")
            tail.append(line)
            if self.multi_rank:
                rank_match = _TORCHRUN_RANK_RE.match(line)
                if rank_match is not None:
                    pending_rank = int(rank_match.group(1))
                code_match = _TORCHRUN_EXITCODE_RE.match(line)
                if code_match is not None and pending_rank is not None:
                    self._rank_exit_codes[pending_rank] = int(code_match.group(1))
                    pending_rank = None
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
