"""Ledger claim + commit against a plain delete + insert, side by side, at 1, 4 and 16 workers.

The question (issue 17): what does exactly-once cost per partition key? Every unit of work of a
backfill opens the ledger the way a task does (``PartitionLedger(url, namespace=...)``, as
``TrainingPipeline.ledger()``), claims its key and publishes its rows. The baseline is what a job
without a ledger does: one transaction that deletes the key's rows and inserts the new ones.

Each worker is its own process (as Airflow workers are) with its own keys; all workers start
together at a barrier. Per variant and worker count the script runs ``--repeats`` rounds on fresh
keys and reports keys per second (median and every round), the statements each key sent to the
database, and the ratio ledger / plain. The verdict is computed from the figures: the ledger keeps at
least ``--target`` (0.5) of the plain throughput at every worker count.

    .venv/bin/python benchmarks/ledger.py [--url postgresql+psycopg://postgres@127.0.0.1:5432/test]
        [--workers 1,4,16] [--keys 150] [--rows 24] [--repeats 3]

The URL names a server and a database to connect to first; the benchmark creates its own fresh
database there and drops it at the end (PostgreSQL), or uses a temporary file (SQLite).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sqlalchemy import (  # noqa: E402
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    delete,
    event,
    insert,
    make_url,
)

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"

plain_metadata = MetaData()
plain_rows = Table(
    "bench_plain_rows",
    plain_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("namespace", String(250), nullable=False),
    Column("partition_key", String(250), nullable=False),
    Column("row_number", Integer, nullable=False),
    Column("payload", Text, nullable=False),
    Index("ix_bench_plain_rows_key", "namespace", "partition_key"),
)


def _rows(key: str, count: int) -> list[dict[str, Any]]:
    return [{"partition_key": key, "hour": hour, "price": 50 + hour} for hour in range(count)]


def _count_statements(engine: Any, counter: list[int]) -> None:
    @event.listens_for(engine, "before_cursor_execute")
    def _count(*_args: Any) -> None:
        counter[0] += 1


def _worker(
    variant: str, url: str, namespace: str, worker: int, keys: int, rows: int, barrier: Any, out: Any
) -> None:
    """One worker process: ``keys`` keys of its own, timed from the common barrier."""
    import json as _json

    from airflow_training_guard.partitions import ledger as ledger_module
    from airflow_training_guard.partitions.ledger import PartitionLedger

    statements = [0]
    names = [f"w{worker:02d}k{index:04d}|2026-01-01" for index in range(keys)]
    if variant == "plain":
        engine = create_engine(url)
        _count_statements(engine, statements)
        with engine.connect():
            pass  # connect before the clock starts, as the ledger's worker engine below
    else:
        # The worker's engine, as the first task of a worker process gets it (then timed per key).
        warm = PartitionLedger(url, namespace=namespace)
        _count_statements(warm.engine, statements)
        with warm.engine.connect():
            pass
    statements[0] = 0
    barrier.wait()
    started = time.monotonic()
    for key in names:
        payload = _rows(key, rows)
        if variant == "plain":
            with engine.begin() as conn:
                conn.execute(
                    delete(plain_rows).where(
                        plain_rows.c.namespace == namespace, plain_rows.c.partition_key == key
                    )
                )
                conn.execute(
                    insert(plain_rows),
                    [
                        {
                            "namespace": namespace,
                            "partition_key": key,
                            "row_number": index,
                            "payload": _json.dumps(row, sort_keys=True),
                        }
                        for index, row in enumerate(payload)
                    ],
                )
        else:
            # What run_unit does for every key: open the ledger, claim, publish the rows.
            ledger = PartitionLedger(url, namespace=namespace)
            claim = ledger.claim(key, mode="all", holder=f"bench/w{worker}")
            assert claim is not None
            ledger.publish(claim, rows=payload)
    ended = time.monotonic()
    out.put(
        {
            "worker": worker,
            "started": started,
            "ended": ended,
            "statements": statements[0],
            "engines": len(getattr(ledger_module, "_ENGINES", {})),
        }
    )


def _round(variant: str, url: str, workers: int, keys: int, rows: int) -> dict[str, Any]:
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(workers)
    out = context.Queue()
    namespace = f"bench_{uuid.uuid4().hex[:10]}"
    procs = [
        context.Process(target=_worker, args=(variant, url, namespace, w, keys, rows, barrier, out))
        for w in range(workers)
    ]
    for proc in procs:
        proc.start()
    results = [out.get(timeout=900) for _ in procs]
    for proc in procs:
        proc.join(timeout=60)
        if proc.exitcode != 0:
            raise RuntimeError(f"{variant} worker exited {proc.exitcode}")
    wall = max(r["ended"] for r in results) - min(r["started"] for r in results)
    total = workers * keys
    return {
        "keys_per_second": round(total / wall, 1),
        "wall_seconds": round(wall, 3),
        "statements_per_key": round(sum(r["statements"] for r in results) / total, 2),
    }


def _check_exactly_once(url: str) -> dict[str, Any]:
    """Every ledger key of the run committed once per round, with exactly its rows."""
    from sqlalchemy import func, select

    from airflow_training_guard.partitions.ledger import ledger_table, rows_table

    engine = create_engine(url)
    with engine.connect() as conn:
        not_committed = conn.execute(
            select(func.count()).select_from(ledger_table).where(ledger_table.c.state != "committed")
        ).scalar_one()
        bad_counts = conn.execute(
            select(func.count()).select_from(
                select(rows_table.c.namespace, rows_table.c.partition_key)
                .group_by(rows_table.c.namespace, rows_table.c.partition_key)
                .having(func.count() != ledger_rows_per_key)
                .subquery()
            )
        ).scalar_one()
    engine.dispose()
    return {"keys_not_committed": int(not_committed), "keys_with_wrong_row_count": int(bad_counts)}


ledger_rows_per_key = 24


def _fresh_database(url: str) -> tuple[str, Any]:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = Path(tempfile.mkdtemp(prefix="tg-ledger-bench-")) / "ledger.db"
        return f"sqlite:///{path}", lambda: None
    name = f"tg_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')

    def _drop() -> None:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()

    return parsed.set(database=name).render_as_string(hide_password=False), _drop


def main() -> None:
    global ledger_rows_per_key
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", default=os.environ.get("TRAINING_GUARD_BENCH_LEDGER_URL", DEFAULT_URL))
    parser.add_argument("--workers", default="1,4,16")
    parser.add_argument("--keys", type=int, default=150, help="keys per worker per round")
    parser.add_argument("--rows", type=int, default=24, help="rows per key (a city's 24 hours)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--target", type=float, default=0.5, help="ledger / plain throughput to reach")
    args = parser.parse_args()
    ledger_rows_per_key = args.rows
    url, drop = _fresh_database(args.url)
    try:
        from airflow_training_guard.partitions.ledger import PartitionLedger

        plain_engine = create_engine(url)
        plain_metadata.create_all(plain_engine)
        plain_engine.dispose()
        PartitionLedger(url, namespace="bench_setup").engine.dispose()  # the ledger tables
        figures: list[dict[str, Any]] = []
        for workers in [int(part) for part in args.workers.split(",")]:
            rounds: dict[str, list[dict[str, Any]]] = {"plain": [], "ledger": []}
            for _ in range(args.repeats):
                for variant in ("plain", "ledger"):  # interleaved: both see the same machine load
                    rounds[variant].append(_round(variant, url, workers, args.keys, args.rows))
            medians = {
                variant: statistics.median(r["keys_per_second"] for r in results)
                for variant, results in rounds.items()
            }
            figures.append(
                {
                    "workers": workers,
                    "keys_per_worker": args.keys,
                    "plain_delete_insert": {
                        "keys_per_second_median": medians["plain"],
                        "rounds": rounds["plain"],
                    },
                    "ledger_claim_commit": {
                        "keys_per_second_median": medians["ledger"],
                        "rounds": rounds["ledger"],
                    },
                    "ratio_ledger_to_plain": round(medians["ledger"] / medians["plain"], 3),
                }
            )
        invariants = _check_exactly_once(url)
    finally:
        drop()
    ratios = [figure["ratio_ledger_to_plain"] for figure in figures]
    verdict = "pass" if min(ratios) >= args.target and not any(invariants.values()) else "fail"
    print(
        json.dumps(
            {
                "benchmark": "ledger claim+commit vs plain delete+insert",
                "backend": make_url(args.url).get_backend_name(),
                "rows_per_key": args.rows,
                "repeats": args.repeats,
                "cpu_count": os.cpu_count(),
                "figures": figures,
                "exactly_once": invariants,
                "target_ratio": args.target,
                "min_ratio": min(ratios),
                "verdict": verdict,
                "verdict_reason": (
                    f"lowest ledger/plain throughput ratio {min(ratios)} "
                    f"{'>=' if min(ratios) >= args.target else '<'} target {args.target} "
                    f"at workers {[f['workers'] for f in figures]}; exactly-once {invariants}"
                ),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
