"""The ledger and the SQL model registry on real PostgreSQL through an Airflow connection id.

The failure this prevents: ``TRAINING_GUARD_LEDGER_URL`` carried the database password in clear
(environment, DAG files, docker-compose) and a connect error could print it. A connection id keeps
it in Airflow's connections; these tests use a recognisable password and look for it in every log
line and error text.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pendulum
import pytest
from psycopg.conninfo import conninfo_to_dict

from airflow_training_guard.hooks import sql as sql_hooks
from airflow_training_guard.hooks.sql import SqlConnectionError, engine_for
from airflow_training_guard.partitions.ledger import PartitionLedger
from airflow_training_guard.promotion import registry_from_url
from airflow_training_guard.promotion.registry import Observed, ProductionPointer
from airflow_training_guard.promotion.sql import SqlModelRegistry

# PostgreSQL here uses trust authentication: the password is sent and ignored, which is what lets a
# test carry a recognisable one and search for it.
PASSWORD = "Sesame-4711-Secret"


@pytest.fixture(autouse=True)
def _fresh_engines() -> Iterator[None]:
    yield
    for engine in sql_hooks._ENGINES.values():
        engine.dispose()
    sql_hooks._ENGINES.clear()


def _conn_json(postgres_database: str, **overrides: object) -> str:
    params = conninfo_to_dict(postgres_database)
    conn = {
        "conn_type": "postgres",
        "host": params.get("host") or "127.0.0.1",
        "port": int(params.get("port") or 5432),
        "login": params.get("user") or "postgres",
        "password": PASSWORD,
        "schema": params["dbname"],
    }
    conn.update(overrides)
    return json.dumps(conn)


def _pointer(version: int) -> ProductionPointer:
    return ProductionPointer(
        model_name="ranker",
        version=version,
        candidate_id=f"train/run-{version}",
        artifact_uri=f"/models/ranker/{version}",
        metrics={"ndcg": 0.5},
        promoted_at="2026-11-01T03:00:00+00:00",
        promoted_by="test",
        action="promote",
    )


def test_the_ledger_commits_through_a_connection_from_an_environment_variable(
    postgres_database: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_TG_LEDGER_DB", _conn_json(postgres_database))
    caplog.set_level(logging.DEBUG)
    ledger = PartitionLedger(engine_for("tg_ledger_db"), namespace="pricing")
    claim = ledger.claim("rome|2026-11-01", mode="missing")
    assert claim is not None
    ledger.publish(claim, rows=[{"price": 1.5}])
    again = PartitionLedger(engine_for("tg_ledger_db"), namespace="pricing")
    assert [row["price"] for row in again.read_rows("rome|2026-11-01")] == [1.5]
    assert PASSWORD not in repr(ledger)
    assert PASSWORD not in caplog.text


def test_the_model_registry_swaps_through_a_connection_id(
    postgres_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_TG_REGISTRY_DB", _conn_json(postgres_database))
    registry = registry_from_url("tg_registry_db")
    assert isinstance(registry, SqlModelRegistry)
    assert registry.compare_and_swap("ranker", Observed(pointer=None, token=0), _pointer(1))
    assert registry.read("ranker").pointer == _pointer(1)
    assert PASSWORD not in repr(registry)


def test_a_connection_error_names_neither_the_password_in_the_message_nor_in_the_log(
    postgres_database: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A database that does not exist: psycopg's error travels up, the password does not."""
    monkeypatch.setenv("AIRFLOW_CONN_TG_BROKEN_DB", _conn_json(postgres_database, schema="no_such_database"))
    caplog.set_level(logging.DEBUG)
    with pytest.raises(Exception) as err:  # SQLAlchemy's OperationalError, as any driver error
        PartitionLedger(engine_for("tg_broken_db"), namespace="pricing")
    assert "no_such_database" in str(err.value)
    assert PASSWORD not in str(err.value) and PASSWORD not in repr(err.value)
    assert PASSWORD not in caplog.text


def test_a_connection_that_is_not_a_sql_connection_is_refused_by_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_TG_HTTP", json.dumps({"conn_type": "http", "host": "example.org", "password": PASSWORD})
    )
    with pytest.raises(SqlConnectionError, match=r"'tg_http'.*not a SQL hook") as err:
        engine_for("tg_http")
    assert PASSWORD not in str(err.value)


def test_a_missing_connection_says_how_to_create_it() -> None:
    with pytest.raises(SqlConnectionError, match="AIRFLOW_CONN_TG_NOWHERE"):
        engine_for("tg_nowhere")


def _add_metadata_connection(conn_id: str, postgres_database: str) -> str:
    from airflow.models import Connection
    from airflow.utils.session import create_session

    params = conninfo_to_dict(postgres_database)
    with create_session() as session:
        session.query(Connection).filter(Connection.conn_id == conn_id).delete()
        session.add(
            Connection(
                conn_id=conn_id,
                conn_type="postgres",
                host=params.get("host") or "127.0.0.1",
                port=int(params.get("port") or 5432),
                login=params.get("user") or "postgres",
                password=PASSWORD,
                schema=params["dbname"],
            )
        )
    return params["dbname"]


def test_a_cli_process_reads_the_registry_connection_from_the_metadata_database(
    postgres_database: str, airflow_db
) -> None:
    """Outside tasks and servers (the training-guard CLI) the Task SDK does not read the metadata DB."""
    _add_metadata_connection("tg_meta_registry", postgres_database)
    registry = SqlModelRegistry("tg_meta_registry")
    assert registry.compare_and_swap("ranker", Observed(pointer=None, token=0), _pointer(1))
    assert PASSWORD not in repr(registry)


def test_a_task_reads_the_ledger_connection_from_the_metadata_database(
    postgres_database: str, run_dag, airflow_db
) -> None:
    """In a task, the connection comes through the execution API from the metadata database."""
    from airflow.sdk import DAG, task

    database = _add_metadata_connection("tg_meta_ledger", postgres_database)

    with DAG("tg_ledger_connection", schedule=None, start_date=pendulum.datetime(2026, 11, 1)) as dag:

        @task
        def commit() -> int:
            ledger = PartitionLedger(engine_for("tg_meta_ledger"), namespace="meta")
            claim = ledger.claim("oslo|2026-11-01", mode="missing")
            assert claim is not None
            ledger.publish(claim, rows=[{"n": 1}])
            return claim.fencing_token

        commit()

    assert run_dag(dag) == {"commit": "success"}
    checker = PartitionLedger(f"postgresql+psycopg://postgres@127.0.0.1:5432/{database}", namespace="meta")
    assert [row["n"] for row in checker.read_rows("oslo|2026-11-01")] == [1]
