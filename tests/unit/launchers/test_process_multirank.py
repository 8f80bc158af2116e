"""The supervisor with several ranks: progress is the slowest rank's, stragglers are reported or restarted.

The ranks here are plain Python processes writing per-rank heartbeats (the wire format torchrun
ranks write), so the straggler wiring is tested in seconds; the real torchrun runs in
tests/integration/operators/test_local_multirank.py.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from airflow_training_guard.launchers.process import (
    ProcessSupervisor,
    SupervisionLimits,
    torchrun_command,
)
from airflow_training_guard.policies.diagnostics import FailureKind
from airflow_training_guard.policies.stragglers import StragglerPolicy

pytestmark = pytest.mark.unit

RANKS = textwrap.dedent(
    """
    import os, subprocess, sys, time
    from airflow_training_guard.runtime import Heartbeat
    if len(sys.argv) == 1:  # the "launcher": start two ranks, wait for both
        children = [subprocess.Popen([sys.executable, __file__, str(rank)]) for rank in (0, 1)]
        sys.exit(max(child.wait() for child in children))
    rank = int(sys.argv[1])
    steps = int(os.environ["STEPS"])
    slow = float(os.environ["SLOW_FACTOR"]) if rank == 1 else 1.0
    heartbeat = Heartbeat.for_rank(os.environ["TRAINING_GUARD_HEARTBEAT_FILE"], rank, 2, node=f"node-{rank}")
    compute = 0.0
    for step in range(1, steps + 1):
        busy = 0.01 * slow  # rank 1 computes `slow` times longer; both wait for each other (lockstep)
        compute += busy
        time.sleep(0.01 * float(os.environ["SLOW_FACTOR"]))
        heartbeat.beat(step, {"compute_seconds": compute})
    """
)


def _run(tmp_path: Path, *, policy: StragglerPolicy | None, steps: int, slow: float) -> tuple:
    script = tmp_path / "ranks.py"
    script.write_text(RANKS)
    heartbeat = tmp_path / "heartbeat.json"
    lines: list[str] = []
    import os

    supervisor = ProcessSupervisor(
        command=[sys.executable, str(script)],
        env={
            **os.environ,
            "TRAINING_GUARD_HEARTBEAT_FILE": str(heartbeat),
            "STEPS": str(steps),
            "SLOW_FACTOR": str(slow),
        },
        limits=SupervisionLimits(
            deadline=120,
            startup_timeout=60,
            stall_after=30,
            poll_interval=0.1,
            termination_grace=5,
            straggler=policy,
        ),
        heartbeat_file=heartbeat,
        on_line=lines.append,
        multi_rank=True,
    )
    return supervisor.run(), lines


def test_restart_policy_stops_the_job_naming_the_slow_rank_and_its_node(tmp_path: Path) -> None:
    outcome, lines = _run(
        tmp_path,
        policy=StragglerPolicy(fraction=0.5, window=1.0, rate_window=1.0, action="restart"),
        steps=3000,
        slow=3,
    )
    assert outcome.kind is FailureKind.STRAGGLER and outcome.retryable
    assert [report.rank for report in outcome.stragglers] == [1]
    assert outcome.stragglers[0].node == "node-1"
    assert "rank 1 on node-1 is a straggler" in outcome.detail
    assert "the retry resumes from the newest valid checkpoint" in outcome.detail
    assert outcome.duration < 60
    assert any("rank 1 on node-1 is a straggler" in line for line in lines)


def test_warn_policy_reports_the_straggler_and_lets_the_job_finish(tmp_path: Path) -> None:
    outcome, lines = _run(
        tmp_path,
        policy=StragglerPolicy(fraction=0.5, window=1.0, rate_window=1.0, action="warn"),
        steps=250,
        slow=3,
    )
    assert outcome.succeeded
    assert [report.rank for report in outcome.stragglers] == [1]
    assert any("training-guard: rank 1 on node-1 is a straggler" in line for line in lines)


def test_ranks_at_the_same_pace_are_not_stragglers_and_progress_is_the_slowest_rank(tmp_path: Path) -> None:
    outcome, _ = _run(
        tmp_path,
        policy=StragglerPolicy(fraction=0.5, window=1.0, rate_window=1.0, action="restart"),
        steps=200,
        slow=1,
    )
    assert outcome.succeeded and outcome.stragglers == ()
    assert outcome.last_heartbeat is not None and outcome.last_heartbeat.step == 200
    assert outcome.last_heartbeat.rank in (0, 1)


def test_torchrun_command_runs_python_programs_with_the_same_interpreter() -> None:
    assert torchrun_command(["/venv/bin/python3.11", "train.py", "--steps", "5"], 2, python="/other") == [
        "/venv/bin/python3.11",
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nnodes",
        "1",
        "--nproc-per-node",
        "2",
        "--max-restarts",
        "0",
        "train.py",
        "--steps",
        "5",
    ]


def test_torchrun_command_runs_other_executables_with_no_python() -> None:
    command = torchrun_command(["/usr/local/bin/train", "--fast"], 4, python="/venv/bin/python")
    assert command[:3] == ["/venv/bin/python", "-m", "torch.distributed.run"]
    assert command[-3:] == ["--no-python", "/usr/local/bin/train", "--fast"]
    assert "4" in command


def test_torchrun_command_rejects_a_bad_rank_count() -> None:
    with pytest.raises(ValueError, match=r"nproc_per_node=0 is invalid: use an integer >= 1"):
        torchrun_command(["python", "train.py"], 0, python="python")


TORCHRUN_SUMMARY = """
import sys
print("torch.distributed.elastic.multiprocessing.errors.ChildFailedError:")
print("Failures:")
for rank, code in {codes!r}.items():
    print(f"[{{rank}}]:")
    print(f"  rank      : {{rank}} (local_rank: {{rank}})")
    print(f"  exitcode  : {{code}} (pid: {{4000 + rank}})")
sys.exit(1)
"""


@pytest.mark.parametrize(
    ("codes", "rank", "retryable", "hint"),
    [
        ({0: -9, 1: 78}, 1, False, "exit 78 means the program rejected its configuration"),
        ({0: 75, 1: 75}, 0, True, "exit 75 means preempted by contract"),
        ({0: 75, 1: -9}, 1, True, "it was killed with SIGKILL from outside"),
        ({0: 75, 1: 3}, 1, True, "the program failed"),
    ],
)
def test_torchrun_exit_1_is_classified_by_the_rank_codes_it_reports(
    tmp_path: Path, codes: dict[int, int], rank: int, retryable: bool, hint: str
) -> None:
    """torchrun exits 1 for every failed rank; a rank's exit 78 (bad input) was retried three times."""
    script = tmp_path / "fake_torchrun.py"
    script.write_text(TORCHRUN_SUMMARY.format(codes=codes))
    outcome = ProcessSupervisor(
        command=[sys.executable, str(script)],
        env={},
        limits=SupervisionLimits(deadline=30, startup_timeout=10, stall_after=None, watch_heartbeat=False),
        on_line=lambda _line: None,
        multi_rank=True,
    ).run()
    assert outcome.returncode == 1 and outcome.rank_exit_codes == codes
    assert outcome.diagnosis is not None and outcome.kind is FailureKind.NONZERO_EXIT
    assert outcome.detail.startswith(f"rank {rank} ")
    assert "torchrun reported rank 0: " in outcome.detail
    assert outcome.retryable is retryable
    assert outcome.diagnosis.hint.startswith(hint)
