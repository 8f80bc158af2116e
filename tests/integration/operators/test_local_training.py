"""LocalTrainingOperator in real DAG runs (dag.test()) with the real example training program."""

from __future__ import annotations

import json
import sys
import textwrap
from datetime import timedelta
from pathlib import Path

import pendulum
import pytest

REPO = Path(__file__).resolve().parents[3]
TRAIN = REPO / "examples" / "training" / "train.py"
sys.path.insert(0, str(REPO / "examples" / "training"))
from sample_data import write_day  # noqa: E402

from tests.helpers import xcom_value  # noqa: E402

DATE = "2026-11-01"


@pytest.fixture
def roots(tmp_path: Path) -> dict[str, Path]:
    data = tmp_path / "data"
    write_day(data, DATE, rows_per_hour=60)
    return {"data": data, "checkpoints": tmp_path / "ckpt", "models": tmp_path / "models"}


def _dag(dag_id: str, **operator_kwargs):
    from airflow.sdk import DAG

    from airflow_training_guard.operators.local import LocalTrainingOperator

    with DAG(dag_id=dag_id, schedule=None, start_date=pendulum.datetime(2026, 11, 1, tz="UTC")) as dag:
        LocalTrainingOperator(task_id="train", **operator_kwargs)
    return dag


def _training_dag(
    dag_id: str,
    roots: dict[str, Path],
    *,
    steps: int,
    script: Path = TRAIN,
    data_dir: Path | None = None,
    extra_args: tuple[str, ...] = (),
    **overrides,
):
    """The example program on the test's partitions, with the settings most tests share."""
    data = str(data_dir or roots["data"])
    command = [sys.executable, str(script), "--data-dir", data, "--steps", str(steps), *extra_args]
    params = {
        "command": command,
        "partition_key": DATE,
        "expected_runtime": "2m",
        "poll_interval": "0.2s",
        "checkpoint_root": str(roots["checkpoints"]),
        "output_dir": str(roots["models"]),
        **overrides,
    }
    return _dag(dag_id, **params)


def test_example_program_trains_checkpoints_and_writes_a_model(run_dag, roots) -> None:
    dag = _training_dag("tg_local_happy", roots, steps=60, checkpoint_every_steps=20)
    assert run_dag(dag, logical_date=pendulum.datetime(2026, 11, 2, tz="UTC")) == {"train": "success"}
    result = xcom_value("tg_local_happy", "train")
    assert result["partition_key"] == DATE
    assert result["final_step"] == 60
    assert result["resumed_from_step"] == 0
    ckpt_dir = Path(result["checkpoint_dir"])
    assert ckpt_dir.is_relative_to(roots["checkpoints"])
    assert "tg_local_happy" in ckpt_dir.parts and DATE in ckpt_dir.name
    assert sorted(p.name for p in ckpt_dir.glob("step-*"))[-1] == "step-000000000060"
    metrics = json.loads((roots["models"] / "metrics.json").read_text())
    assert metrics["accuracy"] > 0.7


def test_preflight_pins_reach_the_program_and_the_manifest(run_dag, roots, capfd) -> None:
    """A branch moved between pre-flight and training; the run must use the SHA resolved first."""
    sha = "0123456789abcdef0123456789abcdef01234567"
    dag = _training_dag(
        "tg_local_pins",
        roots,
        steps=10,
        smoke_run_steps=0,
        # As Jinja renders an XCom dict pulled from PreflightOperator: a string.
        pins=str({"image_digest": None, "datasets": {"org/events": sha}, "models": {}}),
    )
    assert run_dag(dag, logical_date=pendulum.datetime(2026, 11, 2, tz="UTC")) == {"train": "success"}
    out, err = capfd.readouterr()
    assert f"pinned dataset org/events@{sha}" in out + err
    result = xcom_value("tg_local_pins", "train")
    assert result["manifest"]["datasets"] == {"org/events": sha}


def test_successful_run_writes_a_complete_manifest_next_to_the_model(run_dag, roots) -> None:
    """Incident reviews could not tell which code, environment and checkpoints produced a model."""
    from airflow_training_guard.manifest import RunManifest

    dag = _training_dag("tg_local_manifest", roots, steps=20, checkpoint_every_steps=10)
    assert run_dag(dag, logical_date=pendulum.datetime(2026, 11, 2, tz="UTC")) == {"train": "success"}
    result = xcom_value("tg_local_manifest", "train")
    manifest = RunManifest.read(result["manifest_path"])
    assert manifest.is_complete, manifest.missing_fields()
    assert manifest.partition_key == DATE
    assert manifest.artifact_uri == str(roots["models"])
    assert manifest.metrics["accuracy"] > 0.5
    assert manifest.checkpoints[-1].endswith("step-000000000020")
    assert manifest.code["dag_file_sha256"]  # the test module is this DAG's file
    assert manifest.python_env is not None
    assert manifest.python_env["python"].startswith("3.11")


def test_retry_after_preemption_resumes_from_the_saved_checkpoint(run_dag, roots, tmp_path: Path) -> None:
    """A preempted 2 h job restarted from step 0 on every retry and took 10 h."""
    wrapper = tmp_path / "preempt_once.py"
    wrapper.write_text(
        textwrap.dedent(
            f"""
            import os, runpy, signal, sys, threading
            # First attempt: deliver SIGTERM (a preemption) once step 30 has been checkpointed.
            if os.environ["TRAINING_GUARD_ATTEMPT"] == "1":
                from airflow_training_guard.runtime import read_heartbeat
                def watch():
                    import time
                    while True:
                        hb = read_heartbeat(os.environ["TRAINING_GUARD_HEARTBEAT_FILE"])
                        if hb and hb.step >= 30:
                            os.kill(os.getpid(), signal.SIGTERM)
                            return
                        time.sleep(0.01)
                threading.Thread(target=watch, daemon=True).start()
            with open(os.path.join({str(tmp_path)!r}, "attempts.log"), "a") as f:
                f.write(os.environ["TRAINING_GUARD_ATTEMPT"] + " " + os.environ["TRAINING_GUARD_RESUME_STEP"] + "\\n")
            sys.argv = [{str(TRAIN)!r}] + sys.argv[1:]
            runpy.run_path({str(TRAIN)!r}, run_name="__main__")
            """
        )
    )
    dag = _training_dag(
        "tg_local_preempt",
        roots,
        steps=80,
        script=wrapper,
        extra_args=("--step-seconds", "0.01"),
        checkpoint_every_steps=10,
        smoke_run_steps=0,
        retries=1,
        retry_delay=timedelta(seconds=0),
    )
    assert run_dag(dag, logical_date=pendulum.datetime(2026, 11, 2, tz="UTC")) == {"train": "success"}
    attempts = (tmp_path / "attempts.log").read_text().split("\n")
    first, second = attempts[0].split(), attempts[1].split()
    assert first == ["1", "0"]
    assert second[0] == "2" and int(second[1]) >= 30, attempts
    result = xcom_value("tg_local_preempt", "train")
    assert result["resumed_from_step"] >= 30
    assert result["final_step"] == 80


def test_smoke_run_failure_stops_the_job_before_the_full_run(run_dag, roots, tmp_path: Path) -> None:
    # Data for a date that has no partitions: the program exits 78 (bad input) in the smoke run.
    dag = _training_dag("tg_local_smoke_fail", roots, steps=50, data_dir=tmp_path / "empty", retries=2)
    assert run_dag(dag, logical_date=pendulum.datetime(2026, 11, 2, tz="UTC")) == {"train": "failed"}
    assert not (roots["models"] / "metrics.json").exists()


def test_only_corrupt_checkpoints_fail_the_task_with_the_directory_and_the_fix(run_dag, roots, capfd) -> None:
    from airflow_training_guard.policies.checkpoints import CheckpointPolicy

    ckpt = Path(
        CheckpointPolicy(root=str(roots["checkpoints"])).checkpoint_dir(
            dag_id="tg_local_corrupt", task_id="train", partition_key=DATE
        )
    )
    bad = ckpt / "step-000000000010"
    bad.mkdir(parents=True)
    (bad / "MANIFEST.json").write_text("{not json")
    dag = _dag(
        "tg_local_corrupt",
        command=[sys.executable, str(TRAIN), "--data-dir", str(roots["data"]), "--steps", "20"],
        partition_key=DATE,
        expected_runtime="2m",
        checkpoint_root=str(roots["checkpoints"]),
        retries=0,
    )
    assert run_dag(dag, logical_date=pendulum.datetime(2026, 11, 2, tz="UTC")) == {"train": "failed"}
    # Airflow's task logger writes through structlog to the process's stdout.
    out, err = capfd.readouterr()
    log = out + err
    assert f"all 1 checkpoint(s) in {ckpt} are corrupt" in log
    assert "on_corrupt_checkpoints='restart'" in log
    assert "AirflowFailException" in log  # not retried: a person has to look


def test_program_missing_on_the_worker_fails_without_retry(run_dag, roots, tmp_path: Path) -> None:
    """A templated command names a program this worker does not have: retrying cannot help."""
    dag = _dag(
        "tg_local_missing_program",
        command=["{{ 'no-such-trainer-xyz' }}", "--steps", "5"],
        partition_key=DATE,
        expected_runtime="2m",
        checkpoint_root=str(roots["checkpoints"]),
        retries=3,
        retry_delay=timedelta(seconds=0),
    )
    assert run_dag(dag, logical_date=pendulum.datetime(2026, 11, 2, tz="UTC")) == {"train": "failed"}
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        ti = session.query(TaskInstance).filter(TaskInstance.dag_id == "tg_local_missing_program").one()
        assert ti.try_number == 1  # failed once, not retried
