"""Real Airflow, real PostgreSQL: overlapping backfills and a rerun commit every key exactly once.

The failure this prevents: concurrent backfills of 30 cities without idempotent partition keys
appended duplicate feature rows, and the model overfit (train loss 0.3, validation loss 2.1).

Three ``airflow dags test`` processes (each its own Airflow metadata database, like three workers)
run the factory's backfill DAG at the same time against one PostgreSQL ledger: backfill A
(Feb 1-6, reprocess "all"), backfill B (Feb 4-9, "all") and, started while they run, a manual
rerun of Feb 5 ("all"). Afterwards rows are counted in PostgreSQL: exactly one committed set of
rows per key, zero duplicates, zero missing.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

CITIES = ("berlin", "paris", "rome")
ROWS_PER_KEY = 4
AIRFLOW_BIN = str(Path(sys.executable).with_name("airflow"))

DAG_FILE = (
    textwrap.dedent(
        '''
    """Concurrency test pipeline."""
    from __future__ import annotations

    import datetime as dt
    import time

    from airflow_training_guard.backfill.factory import TrainingPipeline, build_dags
    from airflow_training_guard.backfill.validation import Dimension


    def work(unit):
        time.sleep(0.2)  # long enough for the three runs to overlap on the same keys
        return [{"key": unit.partition_key, "row": i, "token": unit.fencing_token} for i in range(ROWS)]


    pipeline = TrainingPipeline(
        name="tg_concurrency",
        work=work,
        start_date=dt.date(2026, 1, 1),
        dimensions=(Dimension("city", CITIES),),
        output="rows",
        max_backfill_days=30,
        retries=0,
        doc_md="concurrency test",
    )
    daily, backfill = build_dags(pipeline)
    '''
    )
    .replace("ROWS", str(ROWS_PER_KEY))
    .replace("CITIES", repr(CITIES))
)


def _prepare_worker(
    name: str, *, tmp_path: Path, base_env: dict[str, str], ledger_url: str
) -> dict[str, str]:
    """A private Airflow home with a migrated metadata database: one independent 'worker'."""
    home = tmp_path / name
    home.mkdir()
    env = dict(base_env)
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__CORE__DAGS_FOLDER": str(tmp_path / "dags"),
            "TRAINING_GUARD_LEDGER_URL": ledger_url,
            "TRAINING_GUARD_CHECKPOINT_ROOT": str(home / "checkpoints"),
        }
    )
    subprocess.run([AIRFLOW_BIN, "db", "migrate"], env=env, check=True, capture_output=True, timeout=120)
    return env


def _start_run(env: dict[str, str], conf: dict[str, object]) -> tuple[subprocess.Popen[str], Path]:
    log = Path(env["AIRFLOW_HOME"]) / "dags-test.log"
    proc = subprocess.Popen(
        [AIRFLOW_BIN, "dags", "test", "tg_concurrency_backfill", "--conf", json.dumps(conf)],
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        text=True,
    )
    return proc, log


def test_overlapping_backfills_and_a_rerun_commit_each_key_exactly_once(
    tmp_path: Path, airflow_env: dict[str, str], postgres_database: str, postgres_sqlalchemy_url: str
) -> None:
    import psycopg

    (tmp_path / "dags").mkdir()
    (tmp_path / "dags" / "tg_concurrency.py").write_text(DAG_FILE)
    ledger_url = postgres_sqlalchemy_url
    # Create the tables once, so three processes do not race on CREATE TABLE.
    from airflow_training_guard.partitions.ledger import PartitionLedger

    PartitionLedger(ledger_url, namespace="tg_concurrency")
    common = {"city": list(CITIES), "reprocess": "all"}
    workers = [
        _prepare_worker(name, tmp_path=tmp_path, base_env=airflow_env, ledger_url=ledger_url)
        for name in ("backfill_a", "backfill_b", "rerun")
    ]
    runs = [
        _start_run(workers[0], {"start_date": "2026-02-01", "end_date": "2026-02-06", **common}),
        _start_run(workers[1], {"start_date": "2026-02-04", "end_date": "2026-02-09", **common}),
    ]
    time.sleep(8)  # the rerun starts while both backfills are working on Feb 4-6
    runs.append(_start_run(workers[2], {"start_date": "2026-02-05", "end_date": "2026-02-05", **common}))
    for proc, log in runs:
        try:
            proc.wait(timeout=400)
        except subprocess.TimeoutExpired:
            proc.kill()
            pytest.fail(f"{log.parent.name} did not finish:\n{log.read_text()[-3000:]}")
        assert proc.returncode == 0, log.read_text()[-4000:]
        text = log.read_text()
        assert "state=success" in text or "DagRun Finished" in text, text[-3000:]

    expected = {f"{city}|2026-02-{day:02d}" for city in CITIES for day in range(1, 10)}
    with psycopg.connect(postgres_database) as conn:
        per_key = dict(
            conn.execute(
                "SELECT partition_key, count(*) FROM training_guard_partition_rows "
                "WHERE namespace = 'tg_concurrency' GROUP BY partition_key"
            ).fetchall()
        )
        duplicates = conn.execute(
            "SELECT count(*) FROM (SELECT partition_key, payload FROM training_guard_partition_rows "
            "GROUP BY partition_key, payload HAVING count(*) > 1) d"
        ).fetchone()
        mixed = conn.execute(
            "SELECT count(*) FROM (SELECT partition_key FROM training_guard_partition_rows "
            "GROUP BY partition_key HAVING count(DISTINCT fencing_token) > 1) m"
        ).fetchone()
        ledger = {
            row[0]: row[1:]
            for row in conn.execute(
                "SELECT partition_key, state, commits, committed_token, row_count, fencing_token FROM "
                "training_guard_partition_ledger WHERE namespace = 'tg_concurrency'"
            ).fetchall()
        }
    assert set(per_key) == expected, f"missing: {sorted(expected - set(per_key))}"  # zero missing
    assert set(per_key.values()) == {ROWS_PER_KEY}  # zero duplicates: one committed set per key
    assert duplicates == (0,) and mixed == (0,)  # never rows of two attempts mixed
    assert sum(per_key.values()) == len(expected) * ROWS_PER_KEY
    assert {state for state, *_ in ledger.values()} == {"committed"}
    # The runs really overlapped on the same keys: the fencing token counts the claims of a key.
    for city in CITIES:
        assert ledger[f"{city}|2026-02-01"][4] == 1  # only backfill A
        assert ledger[f"{city}|2026-02-04"][4] == 2  # A and B
        assert ledger[f"{city}|2026-02-05"][4] == 3  # A, B and the rerun
        # Whoever claimed last is the one whose rows are committed.
        assert ledger[f"{city}|2026-02-05"][2] == 3
