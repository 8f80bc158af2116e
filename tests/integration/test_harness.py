"""The shared test harness gives each session and test what it promises."""

from __future__ import annotations

import os
from pathlib import Path

import pendulum


def test_airflow_home_is_an_isolated_temporary_directory(airflow_home: Path) -> None:
    assert os.environ["AIRFLOW_HOME"] == str(airflow_home)
    assert airflow_home != Path.home() / "airflow"
    assert "training-guard-airflow-home-" in airflow_home.name


def test_postgres_database_is_fresh_writable_and_private(postgres_database: str, postgres_url: str) -> None:
    import psycopg

    with psycopg.connect(postgres_database) as conn:
        tables = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchone()
        assert tables == (0,)
        conn.execute("CREATE TABLE ledger (partition_key text PRIMARY KEY)")
        conn.execute("INSERT INTO ledger VALUES ('berlin|2026-11-01')")
        assert conn.execute("SELECT count(*) FROM ledger").fetchone() == (1,)
    assert postgres_database != postgres_url


def test_run_dag_returns_the_final_state_of_every_task(run_dag) -> None:
    from airflow.sdk import DAG, task

    with DAG("tg_harness_states", schedule=None, start_date=pendulum.datetime(2026, 11, 1, tz="UTC")) as dag:

        @task
        def ok() -> int:
            return 1

        @task
        def boom(value: int) -> None:
            raise RuntimeError(f"failing on purpose after {value}")

        @task(trigger_rule="all_done")
        def after(_: None) -> None:
            return None

        after(boom(ok()))

    assert run_dag(dag) == {"ok": "success", "boom": "failed", "after": "success"}
