"""``airflow training-guard partitions status|plan`` through the real ``airflow`` command line.

The ``city_demand`` pipeline's backfill DAG (dags/city_demand.py) is serialized into the session's
metadata database, as the dag-processor would; its ledger (SQLite under ``$AIRFLOW_HOME``, where
the workers put it) holds a committed, a failed and a live key of berlin and oslo over three days.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from airflow_training_guard.partitions.ledger import PartitionLedger
from tests.conftest import DAGS_FOLDER
from tests.helpers import write_dag_to_db

TODAY = dt.datetime.now(dt.UTC).date()
DAY1, DAY2, DAY3 = ((TODAY - dt.timedelta(days=n)).isoformat() for n in (5, 4, 3))
HOLDER = "city_demand_backfill/manual__x/train_partition[0] try 1"


@pytest.fixture(scope="module")
def city_demand_ledger(airflow_db: Path, airflow_home: Path) -> PartitionLedger:
    spec = importlib.util.spec_from_file_location("city_demand_dag", DAGS_FOLDER / "city_demand.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    write_dag_to_db(module.city_demand_backfill)

    path = airflow_home / "training-guard" / "ledger.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    ledger = PartitionLedger(f"sqlite:///{path}", namespace="city_demand")
    claim = ledger.claim(f"berlin|{DAY1}", mode="all", holder=HOLDER)
    assert claim is not None
    ledger.publish(claim, rows=[{"n": 1}, {"n": 2}])
    claim = ledger.claim(f"oslo|{DAY2}", mode="all", holder=HOLDER)
    assert claim is not None
    ledger.fail(claim, "FileNotFoundError: input of partition_key='oslo|...' is missing")
    assert ledger.claim(f"berlin|{DAY3}", mode="all", holder=HOLDER) is not None
    return ledger


def _json(proc: Any) -> list[dict[str, Any]]:
    return json.loads(proc.stdout)


def test_status_lists_every_key_of_the_range_with_its_state_and_ledger_details(
    airflow_cli, city_demand_ledger: PartitionLedger
) -> None:
    proc = airflow_cli(
        "training-guard", "partitions", "status", "city_demand",
        "--from", DAY1, "--to", DAY3, "--where", "city=berlin,oslo", "-o", "json",
    )  # fmt: skip
    rows = {row["partition_key"]: row for row in _json(proc)}
    assert list(rows) == [f"{c}|{d}" for c in ("berlin", "oslo") for d in (DAY1, DAY2, DAY3)]
    assert {key: row["state"] for key, row in rows.items()} == {
        f"berlin|{DAY1}": "committed",
        f"berlin|{DAY2}": "missing",
        f"berlin|{DAY3}": "running",
        f"oslo|{DAY1}": "missing",
        f"oslo|{DAY2}": "failed",
        f"oslo|{DAY3}": "missing",
    }
    committed = rows[f"berlin|{DAY1}"]
    # AirflowConsole prints every value as text, in JSON too (as `airflow dags list -o json` does).
    fields = ("commits", "fencing_token", "version", "row_count")
    assert tuple(committed[name] for name in fields) == ("1", "1", "1", "2")
    assert committed["holder"] == HOLDER
    assert rows[f"oslo|{DAY2}"]["error"].startswith("FileNotFoundError: input of partition_key=")


def test_status_as_yaml_and_table_follows_airflows_output_formats(
    airflow_cli, city_demand_ledger: PartitionLedger
) -> None:
    args = ("training-guard", "partitions", "status", "city_demand", "--from", DAY1, "--to", DAY1)
    as_yaml = yaml.safe_load(airflow_cli(*args, "--where", "city=berlin", "-o", "yaml").stdout)
    assert [(row["partition_key"], row["state"]) for row in as_yaml] == [(f"berlin|{DAY1}", "committed")]
    table = airflow_cli(*args, "-o", "table")
    assert "partition_key" in table.stdout and f"berlin|{DAY1}" in table.stdout
    assert f"city_demand {DAY1}..{DAY1}: 6 partition keys: 1 committed" in table.stderr


def test_plan_failed_runs_missing_and_failed_keys_and_says_why_the_others_are_skipped(
    airflow_cli, city_demand_ledger: PartitionLedger
) -> None:
    proc = airflow_cli(
        "training-guard", "partitions", "plan", "city_demand", "--from", DAY1, "--to", DAY3,
        "--where", "city=berlin,oslo", "--reprocess", "failed", "-o", "json",
    )  # fmt: skip
    rows = {row["partition_key"]: (row["action"], row["reason"]) for row in _json(proc)}
    assert rows == {
        f"berlin|{DAY1}": ("skip", "already committed (use --reprocess all to replace it)"),
        f"berlin|{DAY2}": ("run", "never done"),
        f"berlin|{DAY3}": ("skip", "in progress: a live claim holds it"),
        f"oslo|{DAY1}": ("run", "never done"),
        f"oslo|{DAY2}": ("run", "last attempt failed"),
        f"oslo|{DAY3}": ("run", "never done"),
    }
    # A dry run: nothing was claimed.
    assert [e.fencing_token for e in city_demand_ledger.entries()] == [1, 1, 1]


def test_plan_refuses_a_reversed_range_and_an_unknown_city_listing_both(
    airflow_cli, city_demand_ledger: PartitionLedger
) -> None:
    proc = airflow_cli(
        "training-guard", "partitions", "plan", "city_demand", "--from", DAY3, "--to", DAY1,
        "--where", "city=berlni", check=False,
    )  # fmt: skip
    assert proc.returncode == 1
    assert "the backfill request is invalid; nothing was started" in proc.stderr
    assert f"start_date {DAY3} is after end_date {DAY1}; swap them" in proc.stderr
    assert "city 'berlni' is not a known city; did you mean 'berlin'?" in proc.stderr


def test_status_of_an_unknown_pipeline_names_the_known_ones(
    airflow_cli, city_demand_ledger: PartitionLedger
) -> None:
    proc = airflow_cli("training-guard", "partitions", "status", "city_demnad", check=False)
    assert proc.returncode == 1
    assert "no training-guard pipeline 'city_demnad'" in proc.stderr
    assert "Known pipelines: city_demand" in proc.stderr
