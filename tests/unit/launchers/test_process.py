"""ProcessSupervisor with real child processes: deadlines, stalls, exit codes, no orphans."""

from __future__ import annotations

import os
import sys
import textwrap
import threading
import time
from pathlib import Path

import psutil
import pytest

from airflow_training_guard.launchers.process import (
    ProcessSupervisor,
    SupervisionLimits,
    describe_returncode,
)
from airflow_training_guard.policies.diagnostics import FailureKind

REPO = Path(__file__).resolve().parents[3]


def program(tmp_path: Path, body: str) -> list[str]:
    """A Python program whose heartbeat file comes from the contract's environment variable."""
    script = tmp_path / "prog.py"
    script.write_text(
        "import os, sys, time, signal, subprocess\n"
        "from airflow_training_guard.runtime import Heartbeat\n"
        "hb = Heartbeat(os.environ.get('TRAINING_GUARD_HEARTBEAT_FILE'))\n" + textwrap.dedent(body)
    )
    return [sys.executable, str(script)]


def supervise(
    tmp_path: Path,
    body: str,
    lines: list[str] | None = None,
    non_retryable_exit_codes: frozenset[int] = frozenset({78, 2}),
    **limits: float | bool | None,
) -> ProcessSupervisor:
    heartbeat = tmp_path / "heartbeat.json"
    env = dict(os.environ, TRAINING_GUARD_HEARTBEAT_FILE=str(heartbeat), PYTHONUNBUFFERED="1")
    settings: dict = {
        "deadline": 30,
        "startup_timeout": 10,
        "stall_after": 5,
        "poll_interval": 0.1,
        "termination_grace": 2,
    }
    settings.update(limits)
    return ProcessSupervisor(
        command=program(tmp_path, body),
        env=env,
        limits=SupervisionLimits(**settings),
        heartbeat_file=heartbeat,
        on_line=(lines.append if lines is not None else lambda _line: None),
        non_retryable_exit_codes=non_retryable_exit_codes,
    )


def test_clean_exit_succeeds_and_streams_every_output_line(tmp_path: Path) -> None:
    lines: list[str] = []
    outcome = supervise(tmp_path, "for i in range(3):\n    hb.beat(i)\n    print('line', i)\n", lines).run()
    assert outcome.succeeded and outcome.diagnosis is None
    assert outcome.returncode == 0
    assert lines == ["line 0", "line 1", "line 2"]
    assert outcome.last_heartbeat is not None and outcome.last_heartbeat.step == 2


@pytest.mark.parametrize(
    ("code", "retryable", "hint"),
    [
        (75, True, "exit 75 means preempted by contract"),
        (78, False, "exit 78 means the program rejected its configuration or input"),
        (2, False, "exit 2 is usually a command-line usage error"),
        (1, True, "the program failed; read the last log lines below"),
    ],
)
def test_exit_codes_are_classified_like_a_pod_containers_exit(
    tmp_path: Path, code: int, retryable: bool, hint: str
) -> None:
    """Same rule as diagnose() for a pod: a local run and a pod run agree on what is retried."""
    outcome = supervise(tmp_path, f"hb.beat(0)\nprint('bye')\nsys.exit({code})\n").run()
    assert outcome.diagnosis is not None and outcome.kind is FailureKind.NONZERO_EXIT
    assert outcome.diagnosis.exit_code == code
    assert outcome.detail.endswith(f"exited with code {code}")
    assert outcome.diagnosis.hint.startswith(hint)
    assert outcome.retryable is retryable
    assert not outcome.succeeded
    assert outcome.last_lines == ("bye",)


def test_non_retryable_exit_codes_are_configurable(tmp_path: Path) -> None:
    outcome = supervise(tmp_path, "sys.exit(3)\n", non_retryable_exit_codes=frozenset({3})).run()
    assert outcome.kind is FailureKind.NONZERO_EXIT and not outcome.retryable
    assert supervise(tmp_path, "sys.exit(2)\n", non_retryable_exit_codes=frozenset()).run().retryable


def test_program_killed_from_outside_is_reported_with_the_signal(tmp_path: Path) -> None:
    outcome = supervise(tmp_path, "hb.beat(0)\nos.kill(os.getpid(), signal.SIGKILL)\n").run()
    assert outcome.diagnosis is not None and outcome.kind is FailureKind.NONZERO_EXIT
    assert outcome.detail.endswith("was killed by signal SIGKILL")
    assert outcome.diagnosis.exit_code == 137  # 128 + 9, as a container reports it
    assert "OOM killer" in outcome.diagnosis.hint  # locally nobody tells an OOM kill apart
    assert outcome.retryable


def test_hung_program_is_killed_within_stall_after_plus_one_poll(tmp_path: Path) -> None:
    """A job stuck in a collective hung for 9 hours: stall detection must end it promptly."""
    stall_after, poll = 1.5, 0.25
    body = "for i in range(3):\n    hb.beat(i)\n    time.sleep(0.1)\ntime.sleep(600)\n"
    sup = supervise(tmp_path, body, stall_after=stall_after, poll_interval=poll, termination_grace=1)
    outcome = sup.run()
    assert outcome.diagnosis is not None and outcome.kind is FailureKind.STALLED
    assert outcome.retryable
    assert "last step 2" in outcome.detail
    assert "Raise stall_after only if single steps really take that long" in outcome.diagnosis.hint
    # started + ~0.3 s of progress + stall_after + one poll + SIGTERM reaction; generous for a busy box
    assert outcome.duration < 0.3 + stall_after + poll + 2.5, outcome.duration


def test_deadline_kills_a_program_that_keeps_making_progress(tmp_path: Path) -> None:
    body = "i = 0\nwhile True:\n    hb.beat(i)\n    i += 1\n    time.sleep(0.05)\n"
    outcome = supervise(tmp_path, body, deadline=1.5, stall_after=None, termination_grace=1).run()
    assert outcome.kind is FailureKind.DEADLINE_EXCEEDED and outcome.retryable
    assert "still running at the hard deadline (1.5s)" in outcome.detail
    assert 1.5 <= outcome.duration < 5


def test_program_that_never_beats_is_stopped_after_startup_timeout_plus_stall_after(tmp_path: Path) -> None:
    # StallWatch's rule, the one the pod watchdog and the triggerer apply: before the first
    # heartbeat the program gets startup_timeout (the watch's startup_grace) plus stall_after.
    # The local launcher used to stop it at startup_timeout alone, so the same DAG gave a local
    # run less time to start than a pod run (issue 15).
    outcome = supervise(
        tmp_path, "time.sleep(600)\n", startup_timeout=1, stall_after=1, termination_grace=1
    ).run()
    assert outcome.diagnosis is not None and outcome.kind is FailureKind.STALLED
    assert outcome.retryable
    assert "last step none" in outcome.detail
    assert outcome.diagnosis.hint.startswith(
        "the program never wrote a heartbeat: make it call Heartbeat.beat()"
    )
    assert 2 <= outcome.duration < 5


def test_without_stall_after_a_program_that_never_beats_runs_to_the_deadline(tmp_path: Path) -> None:
    """As for pods: stall_after=None disables the heartbeat watch, the startup check included."""
    outcome = supervise(
        tmp_path,
        "time.sleep(600)\n",
        deadline=1.5,
        startup_timeout=0.5,
        stall_after=None,
        termination_grace=1,
    ).run()
    assert outcome.kind is FailureKind.DEADLINE_EXCEEDED


def test_heartbeat_watching_can_be_disabled_for_programs_without_the_runtime(tmp_path: Path) -> None:
    outcome = supervise(tmp_path, "time.sleep(1.2)\n", startup_timeout=0.5, watch_heartbeat=False).run()
    assert outcome.succeeded


def test_sigterm_is_sent_first_so_the_program_can_checkpoint_before_sigkill(tmp_path: Path) -> None:
    marker = tmp_path / "got-sigterm"
    body = f"""
    def on_term(signum, frame):
        open({str(marker)!r}, 'w').write('saved')
        sys.exit(75)
    signal.signal(signal.SIGTERM, on_term)
    hb.beat(0)
    time.sleep(600)
    """
    outcome = supervise(tmp_path, body, deadline=1).run()
    assert marker.read_text() == "saved"
    assert outcome.kind is FailureKind.DEADLINE_EXCEEDED
    assert outcome.returncode == 75


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_children_of_a_killed_program_do_not_survive_as_orphans(tmp_path: Path) -> None:
    """A data-loader worker kept a GPU busy after its trainer was killed: the group must die."""
    pid_file = tmp_path / "child.pid"
    body = f"""
    child = subprocess.Popen([sys.executable, '-c', 'import signal,time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)'])
    open({str(pid_file)!r}, 'w').write(str(child.pid))
    hb.beat(0)
    time.sleep(600)
    """
    outcome = supervise(tmp_path, body, deadline=1.5, termination_grace=0.5).run()
    assert outcome.kind is FailureKind.DEADLINE_EXCEEDED
    child_pid = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while _alive(child_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child_pid), "the program's child outlived the supervisor"


def test_children_left_behind_after_a_clean_exit_are_killed(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    body = f"""
    child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])
    open({str(pid_file)!r}, 'w').write(str(child.pid))
    hb.beat(0)
    """
    assert supervise(tmp_path, body).run().succeeded
    child_pid = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while _alive(child_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child_pid)


def test_terminate_from_another_thread_stops_the_run_and_reaps_the_child(tmp_path: Path) -> None:
    """Airflow calls on_kill from a signal handler while execute() is still supervising."""
    sup = supervise(tmp_path, "hb.beat(0)\ntime.sleep(600)\n", termination_grace=1)
    threading.Timer(0.8, sup.terminate).start()
    outcome = sup.run()
    assert outcome.cancelled and outcome.diagnosis is None
    assert outcome.returncode is not None  # reaped: no zombie
    assert not outcome.retryable and not outcome.succeeded


def test_no_zombie_children_remain_after_many_runs(tmp_path: Path) -> None:
    for code in (0, 1, 75):
        supervise(tmp_path, f"hb.beat(0)\nsys.exit({code})\n").run()
    zombies = [p for p in psutil.Process().children(recursive=True) if p.status() == psutil.STATUS_ZOMBIE]
    assert zombies == []


def test_describe_returncode_names_signals_and_exit_codes() -> None:
    assert describe_returncode(-9) == "killed by signal SIGKILL"
    assert describe_returncode(-15) == "killed by signal SIGTERM"
    assert describe_returncode(3) == "exit code 3"
