"""A templated partition_key is validated after rendering, in a real DAG run (dag.test())."""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path

import pendulum


def test_an_unsafe_rendered_partition_key_fails_the_task_without_retry_and_the_program_never_runs(
    run_dag, tmp_path: Path, capfd
) -> None:
    """'../../x;$(touch y)|a b' from a DAG param reached the program's environment and paths."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.sdk import DAG
    from airflow.utils.session import create_session

    from airflow_training_guard.operators.local import LocalTrainingOperator

    marker = tmp_path / "program-ran"
    with DAG(
        dag_id="tg_local_unsafe_key",
        schedule=None,
        start_date=pendulum.datetime(2026, 11, 1, tz="UTC"),
        params={"key": "../../x;$(touch y)|a b"},
    ) as dag:
        LocalTrainingOperator(
            task_id="train",
            command=[sys.executable, "-c", f"open({str(marker)!r}, 'w').close()"],
            partition_key="{{ params.key }}",
            expected_runtime="1m",
            checkpoint_root=str(tmp_path / "ckpt"),
            output_dir=str(tmp_path / "out"),
            retries=3,
            retry_delay=timedelta(seconds=0),
        )
    assert run_dag(dag, logical_date=pendulum.datetime(2026, 11, 2, tz="UTC")) == {"train": "failed"}
    out, err = capfd.readouterr()
    assert (
        "task 'train': partition_key '../../x;$(touch y)|a b' is refused: partition key part "
        "'../../x;$(touch y)' of '../../x;$(touch y)|a b' contains '/', a path separator"
    ) in out + err
    assert not marker.exists()
    assert not (tmp_path / "ckpt").exists()
    with create_session() as session:
        ti = session.query(TaskInstance).filter(TaskInstance.dag_id == "tg_local_unsafe_key").one()
        assert ti.try_number == 1  # AirflowFailException: the same key renders on every retry
