"""PartitionCompletenessSensor in real DAG runs: files on disk, real PostgreSQL, the triggerer path."""

from __future__ import annotations

import asyncio
import sys
import textwrap
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pendulum
import pytest

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "examples" / "training"))
from sample_data import write_day  # noqa: E402

from airflow_training_guard.partitions import (  # noqa: E402
    DaysOfRange,
    ExplicitKeys,
    HoursOfDay,
    ObjectStorageSource,
    Product,
    SqlSource,
)
from airflow_training_guard.partitions.completeness import xcom_keys  # noqa: E402
from tests.helpers import xcom_value  # noqa: E402

DAY = "2026-11-01"
CONN_ID = "tg_partitions_db"


def _dag(dag_id: str, **sensor_kwargs: Any):
    """The daily DAG's shape: the sensor in front of a task that reads its XCom."""
    from airflow.sdk import DAG, task

    from airflow_training_guard.sensors.completeness import PartitionCompletenessSensor

    with DAG(dag_id=dag_id, schedule=None, start_date=pendulum.datetime(2026, 11, 1, tz="UTC")) as dag:
        wait = PartitionCompletenessSensor(task_id="wait_for_partitions", **sensor_kwargs)

        @task
        def train(partitions: dict) -> int:
            assert partitions["complete"] is True
            return int(partitions["present_count"])

        train(wait.output)
    return dag


def _daily_source(root: Path) -> ObjectStorageSource:
    # Exactly the layout of examples/training/sample_data.py and dags/daily_retraining.py.
    return ObjectStorageSource(str(root) + "/date={date}/hour={hour}")


# -- object storage ------------------------------------------------------------------------------


def test_a_complete_day_lets_training_start_with_the_present_keys_in_xcom(run_dag, tmp_path: Path) -> None:
    write_day(tmp_path, DAY, rows_per_hour=5)
    dag = _dag(
        "tg_completeness_complete", expected=HoursOfDay(DAY), source=_daily_source(tmp_path), poke_interval=1
    )
    assert run_dag(dag) == {"wait_for_partitions": "success", "train": "success"}
    partitions = xcom_value("tg_completeness_complete", "wait_for_partitions")
    assert partitions["present_count"] == 24
    assert partitions["present_ranges"] == [["2026-11-01T00:00:00", "2026-11-01T23:00:00"]]
    assert partitions["totals"]["files"] == 24
    assert xcom_keys(partitions)[:2] == ["2026-11-01T00:00:00", "2026-11-01T01:00:00"]
    assert xcom_value("tg_completeness_complete", "train") == 24


def test_eighteen_of_twenty_four_hours_blocks_training(run_dag, tmp_path: Path, capfd) -> None:
    """Regression: a model trained on 18 of 24 hourly partitions shipped with 8% lower NDCG."""
    write_day(tmp_path, DAY, rows_per_hour=5, hours=18)
    dag = _dag(
        "tg_completeness_18_of_24",
        expected=HoursOfDay(DAY),
        source=_daily_source(tmp_path),
        poke_interval=0.2,
        timeout=1,
    )
    assert run_dag(dag) == {"wait_for_partitions": "failed", "train": "upstream_failed"}
    out, err = capfd.readouterr()
    assert (
        "18/24 partitions present; 6 missing (nothing there): 2026-11-01T18:00:00..2026-11-01T23:00:00 (6)"
        in out + err
    )


def test_soft_fail_skips_training_instead_of_failing(run_dag, tmp_path: Path) -> None:
    write_day(tmp_path, DAY, rows_per_hour=5, hours=23)
    dag = _dag(
        "tg_completeness_soft_fail",
        expected=HoursOfDay(DAY),
        source=_daily_source(tmp_path),
        poke_interval=0.2,
        timeout=0.5,
        soft_fail=True,
    )
    assert run_dag(dag) == {"wait_for_partitions": "skipped", "train": "skipped"}


def test_a_zero_byte_last_hour_blocks_training(run_dag, tmp_path: Path) -> None:
    """Regression: 23 hours plus a zero-byte 24th (with its _SUCCESS) must never pass."""
    write_day(tmp_path, DAY, rows_per_hour=5, hours=23)
    last = tmp_path / f"date={DAY}" / "hour=23"
    last.mkdir(parents=True)
    (last / "part-0.csv").write_bytes(b"")
    (last / "_SUCCESS").touch()
    dag = _dag(
        "tg_completeness_zero_byte",
        expected=HoursOfDay(DAY),
        source=_daily_source(tmp_path),
        poke_interval=0.2,
        timeout=0.6,
    )
    assert run_dag(dag)["wait_for_partitions"] == "failed"


def test_the_jinja_date_of_the_daily_dag_is_rendered_from_the_run(run_dag, tmp_path: Path) -> None:
    write_day(tmp_path, "2026-10-31", rows_per_hour=5)
    dag = _dag(
        "tg_completeness_templated",
        expected=HoursOfDay("{{ macros.ds_add(ds, -1) }}"),
        source=ObjectStorageSource("{{ params.root }}/date={date}/hour={hour}"),
        params={"root": str(tmp_path)},
        poke_interval=1,
    )
    states = run_dag(dag, logical_date=pendulum.datetime(2026, 11, 1, 2, tz="UTC"))
    assert states == {"wait_for_partitions": "success", "train": "success"}
    assert (
        xcom_value("tg_completeness_templated", "wait_for_partitions")["present_ranges"][0][0]
        == "2026-10-31T00:00:00"
    )


def test_deferrable_mode_waits_in_the_trigger_until_the_day_is_complete(run_dag, tmp_path: Path) -> None:
    write_day(tmp_path, DAY, rows_per_hour=5, hours=20)

    def finish_the_day() -> None:
        time.sleep(2.5)
        write_day(tmp_path, DAY, rows_per_hour=5)

    writer = threading.Thread(target=finish_the_day)
    writer.start()
    dag = _dag(
        "tg_completeness_deferred",
        expected=HoursOfDay(DAY),
        source=_daily_source(tmp_path),
        poke_interval=0.5,
        timeout=60,
        deferrable=True,
    )
    try:
        assert run_dag(dag) == {"wait_for_partitions": "success", "train": "success"}
    finally:
        writer.join()
    assert xcom_value("tg_completeness_deferred", "wait_for_partitions")["present_count"] == 24


def test_deferrable_mode_fails_with_the_missing_keys_when_the_trigger_times_out(
    run_dag, tmp_path: Path, capfd
) -> None:
    write_day(tmp_path, DAY, rows_per_hour=5, hours=18)
    dag = _dag(
        "tg_completeness_deferred_timeout",
        expected=HoursOfDay(DAY),
        source=_daily_source(tmp_path),
        poke_interval=0.3,
        timeout=1.5,
        deferrable=True,
    )
    assert run_dag(dag)["wait_for_partitions"] == "failed"
    out, err = capfd.readouterr()
    assert "6 missing (nothing there): 2026-11-01T18:00:00..2026-11-01T23:00:00 (6)" in out + err


def test_a_bad_configuration_is_an_import_error_of_the_dag_file(tmp_path: Path, airflow_db) -> None:
    from airflow.dag_processing.dagbag import DagBag

    dag_file = tmp_path / "bad_partitions_dag.py"
    dag_file.write_text(
        textwrap.dedent(
            """
            import pendulum
            from airflow.sdk import DAG
            from airflow_training_guard.partitions import HoursOfDay, ObjectStorageSource
            from airflow_training_guard.sensors.completeness import PartitionCompletenessSensor

            with DAG("tg_bad_partitions", schedule=None, start_date=pendulum.datetime(2026, 11, 1, tz="UTC")):
                PartitionCompletenessSensor(
                    task_id="wait",
                    expected=HoursOfDay("{{ ds }}", timezone="Europe/Berln"),
                    source=ObjectStorageSource("/data/date={date}/hour={hour}"),
                )
            """
        )
    )
    bag = DagBag(dag_folder=str(dag_file))
    assert "tg_bad_partitions" not in bag.dags
    (error,) = bag.import_errors.values()
    assert "timezone 'Europe/Berln' is not a known IANA time zone; did you mean 'Europe/Berlin'?" in error


# -- SQL on a real PostgreSQL --------------------------------------------------------------------


@pytest.fixture
def events_db(postgres_database: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A PostgreSQL database with hourly event rows, reachable as connection CONN_ID."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    params = conninfo_to_dict(postgres_database)
    url = f"postgresql://{params.get('user', 'postgres')}@{params['host']}:{params.get('port', 5432)}/{params['dbname']}"
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", url)
    with psycopg.connect(postgres_database) as conn:
        conn.execute("CREATE TABLE events (city text NOT NULL, event_time timestamp NOT NULL, value int)")
        for hour in range(24):
            rows = 0 if hour == 23 else (3 if hour == 22 else 50)
            for city in ("berlin", "paris"):
                conn.execute(
                    "INSERT INTO events SELECT %s, %s::timestamp + (g || ' seconds')::interval, g "
                    "FROM generate_series(1, %s) AS g",
                    (city, f"{DAY} {hour:02d}:00:00", rows),
                )
    return postgres_database


HOURLY_SQL = (
    "SELECT date_trunc('hour', event_time) AS hour, count(*) FROM events "
    "WHERE event_time >= %(day)s::date AND event_time < %(day)s::date + 1 GROUP BY 1"
)


def test_sql_source_counts_rows_per_hour_and_applies_min_rows(events_db: str) -> None:
    result = SqlSource(CONN_ID, HOURLY_SQL, parameters={"day": DAY}, min_rows=10).check(HoursOfDay(DAY))
    assert result.summary() == (
        "22/24 partitions present; 1 too small (fewer than min_rows=10 rows): 2026-11-01T22:00:00; "
        "1 missing (nothing there): 2026-11-01T23:00:00"
    )
    assert result.observations["2026-11-01T00:00:00"].counts() == {"rows": 100}


def test_sql_source_composite_keys_built_in_sql_with_the_expected_keys_as_a_parameter(events_db: str) -> None:
    sql = (
        "SELECT k, n FROM (SELECT city || '|' || to_char(event_time, 'YYYY-MM-DD') AS k, count(*) AS n "
        "FROM events GROUP BY 1) t WHERE k = ANY(%(keys)s)"
    )
    expected = Product(ExplicitKeys(["berlin", "paris", "rome"], names="city"), DaysOfRange(DAY, DAY))
    result = SqlSource(CONN_ID, sql, expected_keys_parameter="keys").check(expected)
    assert result.present_keys == ("berlin|2026-11-01", "paris|2026-11-01")
    assert result.incomplete_keys == ("rome|2026-11-01",)


def test_sql_source_in_a_dag_run_with_a_rendered_query(run_dag, events_db: str) -> None:
    import psycopg

    with psycopg.connect(events_db) as conn:
        conn.execute("INSERT INTO events VALUES ('rome', %s, 1)", (f"{DAY} 23:30:00",))
    dag = _dag(
        "tg_completeness_sql",
        expected=HoursOfDay(DAY),
        source=SqlSource(CONN_ID, HOURLY_SQL, parameters={"day": "{{ ds }}"}, min_rows=1),
        poke_interval=0.2,
        timeout=5,
        xcom_detail="keys",
    )
    states = run_dag(dag, logical_date=pendulum.datetime(2026, 11, 1, tz="UTC"))
    assert states == {"wait_for_partitions": "success", "train": "success"}
    counts = xcom_value("tg_completeness_sql", "wait_for_partitions")["counts"]
    assert counts["2026-11-01T22:00:00"] == {"rows": 6}
    assert counts["2026-11-01T23:00:00"] == {"rows": 1}


def test_sql_source_trigger_run_in_an_asyncio_loop_sees_late_rows_arrive(events_db: str) -> None:
    import psycopg

    from airflow_training_guard.triggers.completeness import PartitionCompletenessTrigger

    fired = PartitionCompletenessTrigger(
        expected=HoursOfDay(DAY),
        source=SqlSource(CONN_ID, HOURLY_SQL, parameters={"day": DAY}, min_rows=10),
        poke_interval=0.2,
        timeout_at=datetime.now(UTC) + timedelta(seconds=30),
    )

    async def late_rows() -> None:
        await asyncio.sleep(0.5)
        with psycopg.connect(events_db) as conn:
            conn.execute(
                "INSERT INTO events SELECT 'rome', %s::timestamp + (g || ' seconds')::interval, g "
                "FROM generate_series(1, 20) AS g",
                (f"{DAY} 22:00:00",),
            )
            conn.execute(
                "INSERT INTO events SELECT 'rome', %s::timestamp + (g || ' seconds')::interval, g "
                "FROM generate_series(1, 20) AS g",
                (f"{DAY} 23:00:00",),
            )

    async def run() -> list[dict[str, Any]]:
        writer = asyncio.create_task(late_rows())
        payloads = [event.payload async for event in fired.run()]
        await writer
        return payloads

    (event,) = asyncio.run(asyncio.wait_for(run(), timeout=30))
    assert event["status"] == "success"
    assert event["result"]["totals"] == {"rows": 50 * 2 * 22 + 3 * 2 + 20 + 20}


def test_sql_source_without_counts_cannot_check_min_rows(events_db: str) -> None:
    from airflow_training_guard.exceptions import GuardConfigError

    source = SqlSource(CONN_ID, "SELECT DISTINCT date_trunc('hour', event_time) FROM events", min_rows=5)
    with pytest.raises(
        GuardConfigError, match="returned rows without a row count, so min_rows=5 cannot be checked"
    ):
        source.check(HoursOfDay(DAY))


# -- time zones against real PostgreSQL and SQLite (issue 13) ------------------------------------

#: (zone, local day, hours): zones at UTC+0, half-hour offsets, and both DST transitions.
ZONE_DAYS = [
    ("Europe/London", "2026-01-15", 24),
    ("Europe/Lisbon", "2026-01-15", 24),
    ("Europe/Dublin", "2026-01-15", 24),
    ("Atlantic/Reykjavik", "2026-07-01", 24),
    ("Asia/Kolkata", "2026-01-15", 24),
    ("Australia/Adelaide", "2026-01-15", 24),
    ("Australia/Adelaide", "2026-07-01", 24),
    ("Europe/London", "2026-03-29", 23),
    ("Europe/London", "2026-10-25", 25),
    ("America/New_York", "2026-03-08", 23),
    ("America/New_York", "2026-11-01", 25),
]
ZONE_IDS = [f"{zone}-{day}" for zone, day, _ in ZONE_DAYS]
TZ_CONN_ID = "tg_tz_events"


def _event_times(expected: HoursOfDay) -> list[datetime]:
    """Ten minutes into every expected hour but the last, as aware local datetimes."""
    from airflow_training_guard.partitions.keys import parse_temporal

    times = []
    for key in expected.keys()[:-1]:
        found = parse_temporal(key)
        assert found is not None
        times.append(found.start + timedelta(minutes=10))
    return times


@pytest.fixture
def tz_events_pg(postgres_database: str, monkeypatch: pytest.MonkeyPatch) -> str:
    from psycopg.conninfo import conninfo_to_dict

    params = conninfo_to_dict(postgres_database)
    url = f"postgresql://{params.get('user', 'postgres')}@{params['host']}:{params.get('port', 5432)}/{params['dbname']}"
    monkeypatch.setenv(f"AIRFLOW_CONN_{TZ_CONN_ID.upper()}", url)
    return postgres_database


@pytest.mark.parametrize(("zone", "day", "hours"), ZONE_DAYS, ids=ZONE_IDS)
def test_postgres_hour_buckets_match_the_expected_hours_in_every_zone(
    tz_events_pg: str, zone: str, day: str, hours: int
) -> None:
    """Regression (issue 13): timestamptz at +00:00 lost its offset, so London/Lisbon/Reykjavik stayed 0/24."""
    import psycopg

    expected = HoursOfDay(day, zone)
    assert len(expected) == hours
    with psycopg.connect(tz_events_pg) as conn:
        conn.execute("CREATE TABLE tz_events (event_time timestamptz NOT NULL)")
        with conn.cursor() as cursor:
            cursor.executemany("INSERT INTO tz_events VALUES (%s)", [(t,) for t in _event_times(expected)])
    sql = (
        "SELECT date_trunc('hour', event_time, %(zone)s), count(*) FROM tz_events "
        "WHERE event_time >= %(start)s AND event_time < %(end)s GROUP BY 1"
    )
    first = expected.keys()[0]
    parameters = {"zone": zone, "start": first, "end": expected.closes_at()}
    result = SqlSource(TZ_CONN_ID, sql, parameters=parameters).check(expected)
    assert result.ratio == f"{hours - 1}/{hours}"
    assert result.incomplete_keys == (expected.keys()[-1],)
    assert result.unexpected == 0


@pytest.fixture
def tz_events_sqlite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    import json

    database = tmp_path / "events.db"
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{TZ_CONN_ID.upper()}", json.dumps({"conn_type": "sqlite", "host": str(database)})
    )
    return database


@pytest.mark.parametrize(("zone", "day", "hours"), ZONE_DAYS, ids=ZONE_IDS)
def test_sqlite_hour_keys_as_local_text_or_utc_text_match_in_every_zone(
    tz_events_sqlite: Path, zone: str, day: str, hours: int
) -> None:
    import sqlite3

    expected = HoursOfDay(day, zone)
    with sqlite3.connect(tz_events_sqlite) as conn:
        conn.execute("CREATE TABLE tz_events (event_time text NOT NULL)")
        conn.executemany(
            "INSERT INTO tz_events VALUES (?)", [(t.isoformat(),) for t in _event_times(expected)]
        )
    # the writer's local text with its offset, truncated to the hour: the key text itself
    local = (
        "SELECT substr(event_time, 1, 13) || ':00:00' || substr(event_time, 20), count(*) "
        "FROM tz_events GROUP BY 1"
    )
    result = SqlSource(TZ_CONN_ID, local).check(expected)
    assert result.ratio == f"{hours - 1}/{hours}"
    assert result.incomplete_keys == (expected.keys()[-1],)
    # SQLite's own UTC text of the hour start ('2026-01-15 00:00:00+00'), PostgreSQL's text form
    utc = (
        "SELECT strftime('%Y-%m-%d %H:%M:00', event_time, '-10 minutes') || '+00', count(*) "
        "FROM tz_events GROUP BY 1"
    )
    assert SqlSource(TZ_CONN_ID, utc).check(expected).ratio == f"{hours - 1}/{hours}"
