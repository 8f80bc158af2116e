"""How LocalTrainingOperator fails an attempt: the diagnosis decides, the message reads like a pod's.

The outcomes here are what ``ProcessSupervisor`` returns (tests/unit/launchers run real processes);
this pins the Airflow side: which exception, and what the task log says.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from airflow_training_guard.launchers.process import Outcome
from airflow_training_guard.operators.local import LocalTrainingOperator
from airflow_training_guard.policies.diagnostics import FailureKind, diagnose_exit, stalled
from airflow_training_guard.runtime.contract import TrainingEnvironment
from airflow_training_guard.runtime.heartbeat import HeartbeatRecord
from airflow_training_guard.secrets import mask
from airflow_training_guard.settings import ENV_CHECKPOINT_ROOT, ENV_OUTPUT_ROOT

pytestmark = pytest.mark.unit

ENV = TrainingEnvironment(partition_key="2026-11-20", checkpoint_dir=Path("/tmp/ckpt"))


def make(**kwargs) -> LocalTrainingOperator:
    return LocalTrainingOperator(
        task_id="train", command=[sys.executable, "-c", "pass"], expected_runtime="1h", **kwargs
    )


def outcome(diagnosis, *, returncode: int | None = 1, lines: tuple[str, ...] = (), **kw) -> Outcome:
    beat = HeartbeatRecord(step=212, metrics={}, time=0.0, pid=4242)
    return Outcome(returncode, 134.2, lines, beat, diagnosis=diagnosis, **kw)


def test_exit_78_fails_without_retry_and_says_what_to_fix() -> None:
    failed = outcome(diagnose_exit(78, subject="process 4242"), returncode=78, lines=("bad column",))
    with pytest.raises(AirflowFailException) as err:
        make()._raise_for(failed, ENV)
    assert str(err.value).splitlines() == [
        "training for partition_key='2026-11-20' failed: nonzero_exit (not retryable)",
        "reason: process 4242 exited with code 78",
        "hint: exit 78 means the program rejected its configuration or input; a retry cannot fix it. "
        "Read the last log lines, fix the parameters or the input, then clear the task",
        "process: exit code 78 after 134.2s; last heartbeat step: 212",
        "Last output lines (last 1):",
        "  | bad column",
    ]


def test_a_stall_is_retried() -> None:
    detail = "no heartbeat progress for 120s (stall_after 2m); last step 212"
    stall = outcome(stalled(detail, subject="process 4242"), returncode=-15)
    with pytest.raises(AirflowException, match=r"failed: stalled \(retryable\)") as err:
        make()._raise_for(stall, ENV)
    assert not isinstance(err.value, AirflowFailException)
    assert "process: killed by signal SIGTERM after 134.2s" in str(err.value)


def test_the_operators_non_retryable_exit_codes_reach_the_launcher(tmp_path: Path) -> None:
    """Before issue 15 the operator re-judged the launcher's verdict; now the launcher applies them."""
    op = make(non_retryable_exit_codes=[3], watch_heartbeat=False)
    env = TrainingEnvironment(partition_key="2026-11-20", checkpoint_dir=tmp_path)
    limits = op._limits(op.timeout_policy.hard_deadline)
    ended = op._supervise([sys.executable, "-c", "raise SystemExit(3)"], env, limits)
    assert ended.kind is FailureKind.NONZERO_EXIT and not ended.retryable


def test_a_cancelled_run_is_not_a_failure_kind() -> None:
    cancelled = outcome(None, returncode=-15, cancelled=True)
    with pytest.raises(AirflowException, match=r"^training for partition_key='2026-11-20' was cancelled"):
        make()._raise_for(cancelled, ENV)


def test_secrets_in_the_last_output_lines_are_masked() -> None:
    mask("hf_localfailuretoken0123456789")
    failed = outcome(diagnose_exit(1, subject="process 1"), lines=("token hf_localfailuretoken0123456789",))
    with pytest.raises(AirflowException) as err:
        make()._raise_for(failed, ENV)
    assert "hf_localfailuretoken" not in str(err.value)
    assert "  | token ***" in str(err.value)


def test_default_roots_come_from_the_settings_environment_names(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv(ENV_CHECKPOINT_ROOT, str(tmp_path / "ckpt"))
    monkeypatch.setenv(ENV_OUTPUT_ROOT, str(tmp_path / "models"))
    op = make()
    assert op._effective_checkpoint_policy().root == str(tmp_path / "ckpt")
    assert op._default_output_dir("2026-11-20").is_relative_to(tmp_path / "models")
