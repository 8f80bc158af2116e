"""A backfill on a real CeleryExecutor: two workers share the keys, every key is committed exactly once.

A private stack (``tests/e2e/celery_stack.py``): api-server, scheduler, dag-processor and triggerer
on the CeleryExecutor, its own ``redis-server`` as the broker, two ``airflow celery worker``
processes, a fresh PostgreSQL database for the metadata, Celery's results and the partition
ledger. The pools come from ``deploy/pools.json`` (``airflow pools import``, as docker-compose's
``airflow-init`` does). ``city_pricing_backfill`` (``dags/``) is triggered through the REST API with
the trigger form's fields, as the UI sends them: 8 cities x 3 days = 24 keys.

Checked: the run succeeded; 24 mapped ``train_partition`` instances, one per key (the map index
names the key), each successful and in ``training_backfill``; both workers ran some of them
(``task_instance.hostname``, and each worker's own log shows the Celery tasks it received); the
ledger on PostgreSQL holds exactly the 24 keys, each committed once with its 24 rows, and its
committed rows are 24 per key (no duplicate from two workers).
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from airflow_training_guard.partitions.ledger import PartitionLedger, rows_table
from tests.e2e.celery_stack import WORKERS, CeleryStack

pytestmark = pytest.mark.e2e

DAG_ID = "city_pricing_backfill"
LEDGER_NAMESPACE = "city_pricing"
MAPPED_TASK = "train_partition"
CITIES = ("rome", "berlin", "oslo", "paris", "madrid", "vienna", "prague", "lisbon")
DAYS = 3
ROWS_PER_KEY = 24
RUN_TIMEOUT = 240  # seconds; 24 keys on 2 workers x 2 slots, pool of 2 slots, on 2 shared cores
# A worker's log line for each Airflow workload it was handed by the broker.
RECEIVED = re.compile(r"Task execute_workload\[[0-9a-f-]+\] received")


@pytest.fixture(scope="module")
def celery_stack() -> Iterator[CeleryStack]:
    if shutil.which("redis-server") is None and not Path("/usr/bin/redis-server").exists():
        pytest.skip("redis-server is not installed (Debian: apt-get install redis-server)")
    home = Path(tempfile.mkdtemp(prefix="training-guard-celery-e2e-"))
    stack = CeleryStack(home)
    # db migrate alone took 3 min on the shared 2-core machine under load: a generous start timeout.
    stack.start(timeout=900, wait_for_dags=(DAG_ID,), pools="import")
    try:
        yield stack
    finally:
        stack.stop()
        leftovers = stack.leftover_pids()
        if os.environ.get("TRAINING_GUARD_E2E_KEEP") != "1":
            shutil.rmtree(home, ignore_errors=True)
        assert not leftovers, f"Airflow processes survived stop(): {leftovers}"


def _run_path(run_id: str) -> str:
    return f"/dags/{DAG_ID}/dagRuns/{urllib.parse.quote(run_id, safe='')}"


def _wait_finished(stack: CeleryStack, run_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + RUN_TIMEOUT
    while True:
        run: dict[str, Any] = stack.api("GET", _run_path(run_id))
        if run["state"] in {"success", "failed"}:
            return run
        if time.monotonic() > deadline:
            states = [
                (ti["task_id"], ti["map_index"], ti["state"], ti.get("hostname"))
                for ti in stack.api("GET", f"{_run_path(run_id)}/taskInstances", params={"limit": 100})[
                    "task_instances"
                ]
            ]
            raise AssertionError(
                f"run {run_id} still {run['state']} after {RUN_TIMEOUT}s; tasks: {states}\n{stack.logs(40)}"
            )
        time.sleep(2)


def test_backfill_on_two_celery_workers_commits_every_key_exactly_once(celery_stack: CeleryStack) -> None:
    stack = celery_stack
    last = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=2)
    first = last - dt.timedelta(days=DAYS - 1)
    days = [(first + dt.timedelta(days=offset)).isoformat() for offset in range(DAYS)]
    expected = {f"{city}|{day}" for city in CITIES for day in days}
    stack.api("PATCH", f"/dags/{DAG_ID}", json={"is_paused": False})
    run = stack.api(
        "POST",
        f"/dags/{DAG_ID}/dagRuns",
        json={
            "logical_date": None,
            "conf": {
                "start_date": first.isoformat(),
                "end_date": last.isoformat(),
                "city": list(CITIES),
                "reprocess": "missing",
            },
        },
    )
    finished = _wait_finished(stack, run["dag_run_id"])
    if finished["state"] != "success":
        states = [
            (ti["task_id"], ti["map_index"], ti["state"], ti.get("hostname"))
            for ti in stack.api(
                "GET", f"{_run_path(run['dag_run_id'])}/taskInstances", params={"limit": 100}
            )["task_instances"]
        ]
        pytest.fail(f"run {finished['state']}: {states}\n{stack.task_logs(40)}\n{stack.logs(40)}")

    tis = stack.api(
        "GET", f"{_run_path(run['dag_run_id'])}/taskInstances", params={"task_id": MAPPED_TASK, "limit": 100}
    )["task_instances"]
    assert sorted(ti["rendered_map_index"] for ti in tis) == sorted(expected)
    assert {(ti["state"], ti["pool"]) for ti in tis} == {("success", "training_backfill")}

    # Both workers ran keys: the host name each task instance recorded, and each worker's own log.
    ran_on: dict[str, int] = {}
    for ti in tis:
        ran_on[ti["hostname"]] = ran_on.get(ti["hostname"], 0) + 1
    assert set(ran_on) == set(WORKERS), ran_on
    received = {name: len(RECEIVED.findall(stack.worker_log(name))) for name in WORKERS}
    assert all(count >= 1 for count in received.values()), received
    # Every attempt of every task of the run (validate_request + the 24 keys) went through the broker.
    every_ti = stack.api("GET", f"{_run_path(run['dag_run_id'])}/taskInstances", params={"limit": 100})[
        "task_instances"
    ]
    assert sum(received.values()) == sum(int(ti["try_number"]) for ti in every_ti), (received, every_ti)

    # Exactly once across the two workers: the ledger on PostgreSQL.
    ledger = PartitionLedger(
        stack.env["TRAINING_GUARD_LEDGER_URL"], namespace=LEDGER_NAMESPACE, create_tables=False
    )
    try:
        entries = ledger.entries()
        assert {entry.partition_key for entry in entries} == expected
        assert {(entry.state, entry.commits, entry.row_count) for entry in entries} == {
            ("committed", 1, ROWS_PER_KEY)
        }
        with ledger.engine.connect() as conn:
            per_key = dict(
                conn.execute(
                    select(rows_table.c.partition_key, func.count())
                    .where(rows_table.c.namespace == LEDGER_NAMESPACE)
                    .group_by(rows_table.c.partition_key)
                ).all()
            )
        assert per_key == dict.fromkeys(expected, ROWS_PER_KEY)
    finally:
        ledger.engine.dispose()
