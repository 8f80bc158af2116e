"""PreemptionGuard: SIGTERM becomes "save a checkpoint at the step boundary, exit 75", in real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from airflow_training_guard.runtime import (
    EXIT_OK,
    EXIT_PREEMPTED,
    Checkpointer,
    PreemptionGuard,
    TrainingEnvironment,
    exit_preempted,
    read_heartbeat,
)

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[3]
PROGRAM = Path(__file__).with_name("training_program.py")


def start_program(
    tmp_path: Path, mode: str, *, total_steps: int = 1_000_000, every: int = 1000
) -> subprocess.Popen[str]:
    (tmp_path / "ready").unlink(missing_ok=True)
    training_env = TrainingEnvironment(
        partition_key="2026-11-01",
        checkpoint_dir=tmp_path / "ckpt",
        checkpoint_every=every,
        heartbeat_file=tmp_path / "heartbeat.json",
    )
    env = dict(os.environ)
    env.update(training_env.to_env())
    env["TEST_READY_FILE"] = str(tmp_path / "ready")
    env["TEST_TOTAL_STEPS"] = str(total_steps)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return subprocess.Popen(
        [sys.executable, str(PROGRAM), mode],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_until_ready(tmp_path: Path, proc: subprocess.Popen[str], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not (tmp_path / "ready").exists():
        if proc.poll() is not None:
            _, err = proc.communicate()
            pytest.fail(f"program exited {proc.returncode} before it was ready:\n{err}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"program not ready within {timeout}s")
        time.sleep(0.01)


def test_sigterm_saves_a_checkpoint_at_the_step_boundary_and_exits_75(tmp_path: Path) -> None:
    """A spot-instance reclaim killed the job mid-step and threw away everything since the last
    periodic checkpoint; with the guard, SIGTERM costs at most the step in flight."""
    proc = start_program(tmp_path, "train")
    wait_until_ready(tmp_path, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)

    assert proc.returncode == EXIT_PREEMPTED, err
    assert "received SIGTERM" in err
    assert "preempted at step" in err
    latest = Checkpointer(tmp_path / "ckpt").latest()
    assert latest is not None, "no valid checkpoint after a graceful preemption"
    assert latest.metadata == {"reason": "preempted"}
    assert latest.step >= 3
    heartbeat = read_heartbeat(tmp_path / "heartbeat.json")
    assert heartbeat is not None and heartbeat.step == latest.step, (
        "the checkpoint is at the last finished step"
    )


def test_preempted_job_resumes_from_its_checkpoint_not_from_step_0(tmp_path: Path) -> None:
    """A preempted job restarted from step 0 because it never saved on SIGTERM."""
    proc = start_program(tmp_path, "train", total_steps=100_000)
    wait_until_ready(tmp_path, proc)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    assert proc.returncode == EXIT_PREEMPTED
    preempted_at = Checkpointer(tmp_path / "ckpt").latest()
    assert preempted_at is not None

    # The retry: it resumes, runs 3 more steps (then "ready"), and is preempted again.
    proc = start_program(tmp_path, "train", total_steps=100_000)
    wait_until_ready(tmp_path, proc)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == EXIT_PREEMPTED, err
    assert f"resumed from step {preempted_at.step}" in out
    second = Checkpointer(tmp_path / "ckpt").latest()
    assert second is not None and second.step >= preempted_at.step + 3


def test_run_that_is_not_preempted_finishes_with_exit_0(tmp_path: Path) -> None:
    proc = start_program(tmp_path, "train", total_steps=12, every=5)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == EXIT_OK, err
    assert "done at step 12" in out
    scan = Checkpointer(tmp_path / "ckpt").scan()
    assert [c.step for c in scan.valid] == [12, 10, 5]
    assert all(c.metadata == {"reason": "periodic"} for c in scan.valid)


def test_second_ctrl_c_stops_a_program_stuck_in_a_step(tmp_path: Path) -> None:
    proc = start_program(tmp_path, "wait-in-guard")
    wait_until_ready(tmp_path, proc)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.3)
    assert proc.poll() is None, "the first Ctrl-C only requests a checkpoint"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert "KeyboardInterrupt" in err
    assert proc.returncode != EXIT_PREEMPTED


def _deliver(signum: int) -> None:
    """Send ``signum`` to this process; the Python handler runs in the main thread right after."""
    os.kill(os.getpid(), signum)
    time.sleep(0.01)


def test_signal_sets_the_flag_instead_of_killing_and_handlers_are_restored(tmp_path: Path) -> None:
    previous = signal.getsignal(signal.SIGTERM)
    with PreemptionGuard() as guard:
        assert not guard.requested and guard.signal_received is None
        _deliver(signal.SIGTERM)
        assert guard.requested
        assert guard.signal_received == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is previous
    assert guard.requested, "the flag stays readable after the block"


def test_only_the_first_signal_is_recorded(tmp_path: Path) -> None:
    with PreemptionGuard(signals=(signal.SIGTERM, signal.SIGUSR1)) as guard:
        _deliver(signal.SIGUSR1)
        _deliver(signal.SIGTERM)
    assert guard.signal_received == signal.SIGUSR1


def test_handlers_are_restored_when_the_loop_raises() -> None:
    previous = signal.getsignal(signal.SIGTERM)
    with pytest.raises(ZeroDivisionError), PreemptionGuard():
        1 / 0  # noqa: B018
    assert signal.getsignal(signal.SIGTERM) is previous


def test_entering_the_guard_outside_the_main_thread_is_a_clear_error() -> None:
    errors: list[BaseException] = []

    def enter() -> None:
        try:
            with PreemptionGuard():
                pass
        except BaseException as err:
            errors.append(err)

    thread = threading.Thread(target=enter, name="data-loader")
    thread.start()
    thread.join()
    assert len(errors) == 1 and isinstance(errors[0], RuntimeError)
    assert "must be entered in the main thread" in str(errors[0])
    assert "'data-loader'" in str(errors[0])


def test_entering_the_same_guard_twice_is_an_error() -> None:
    guard = PreemptionGuard()
    with guard, pytest.raises(RuntimeError, match="already active"), guard:
        pass


@pytest.mark.parametrize(
    ("signals", "message"),
    [
        ((), "signals is empty"),
        ((signal.SIGKILL,), "cannot be caught"),
        ((99999,), "99999 is not a valid signal"),
    ],
)
def test_invalid_signal_lists_are_rejected(signals: tuple[int, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PreemptionGuard(signals)


def test_exit_preempted_prints_the_message_to_stderr_and_exits_75(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        exit_preempted("preempted at step 120: checkpoint saved")
    assert exit_info.value.code == EXIT_PREEMPTED == 75
    assert capsys.readouterr().err == "preempted at step 120: checkpoint saved\n"
