#!/usr/bin/env python3
"""Coverage grid: response time and payload of the grid data endpoint vs the number of keys.

A real ledger (SQLite file; PostgreSQL too with ``--postgres URL``) is filled with one pipeline of
30 cities (60 for the largest size) x N days, in a realistic mix: 80% committed, 5% failed, 3% held
by a live claim, 12% never attempted (no row). For 900, 2,700, 5,400, 10,950 (30 x 365) and
21,900 keys, side by side in the same run:

- ``grid``: what ``GET /training-guard/api/pipelines/{name}/grid`` does after authorization:
  :func:`~airflow_training_guard.partitions.coverage.read_coverage` (one query of three columns)
  and the JSON encoding of its compact payload (one string per row, one letter per date);
- ``per_cell_objects``: the obvious alternative, every ledger row read in full
  (``PartitionLedger.entries()``) and one JSON object per cell with all its fields, missing cells
  included.

For each: the median of ``--repeats`` runs (milliseconds), the payload in bytes and gzip-compressed
bytes. The verdict: the grid of 10,950 keys answers in under 500 ms with a payload under 200 KB
(what a browser renders at once on a laptop), and stays at least 10x smaller than per-cell objects.

    .venv/bin/python benchmarks/coverage_grid.py [--repeats 5] [--postgres postgresql+psycopg://...]

Prints one JSON document.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import json
import platform
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sqlalchemy import create_engine, insert, text  # noqa: E402

from airflow_training_guard.partitions.coverage import GridSpec, read_coverage  # noqa: E402
from airflow_training_guard.partitions.ledger import PartitionLedger, ledger_table, metadata  # noqa: E402

SIZES = ((30, 30), (30, 90), (30, 180), (30, 365), (60, 365))
FIRST_DAY = dt.date(2025, 1, 1)
TARGET_KEYS, TARGET_MS, TARGET_BYTES, TARGET_RATIO = 10_950, 500.0, 200_000, 10.0


def fill(engine: Any, namespace: str, cities: int, days: int, seed: int = 7) -> dict[str, int]:
    """Insert the ledger rows of ``cities`` x ``days`` keys; return how many of each state."""
    rng = random.Random(seed)
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    rows = []
    counts = {"committed": 0, "failed": 0, "claimed": 0, "none": 0}
    for c in range(cities):
        for d in range(days):
            day = (FIRST_DAY + dt.timedelta(days=d)).isoformat()
            key = f"city{c:02d}|{day}"
            roll = rng.random()
            state = (
                "committed"
                if roll < 0.80
                else "failed"
                if roll < 0.85
                else "claimed"
                if roll < 0.88
                else None
            )
            counts[state or "none"] += 1
            if state is None:
                continue
            token = rng.randint(1, 4)
            rows.append(
                {
                    "namespace": namespace,
                    "partition_key": key,
                    "state": state,
                    "fencing_token": token,
                    "holder": f"{namespace}_backfill/manual__2026-11-05T00:00:00+00:00/train_partition[{c * days + d}] try 1",
                    "claimed_at": now - dt.timedelta(minutes=rng.randint(1, 30)),
                    "committed_token": token if state == "committed" else None,
                    "committed_at": now if state == "committed" else None,
                    "commits": token if state == "committed" else 0,
                    "location": f"/data/partitions/{namespace}/{key.replace('|', '%7C')}/v{token:08d}"
                    if state == "committed"
                    else None,
                    "row_count": None,
                    "error": "FileNotFoundError: input of partition_key is missing; land it, then backfill"
                    if state == "failed"
                    else None,
                }
            )
    with engine.begin() as conn:
        for start in range(0, len(rows), 2000):
            conn.execute(insert(ledger_table), rows[start : start + 2000])
    return counts


def per_cell_objects(engine: Any, namespace: str, cities: int, days: int) -> bytes:
    entries = {
        e.partition_key: e
        for e in PartitionLedger(engine, namespace=namespace, create_tables=False).entries()
    }
    cells = []
    for c in range(cities):
        for d in range(days):
            key = f"city{c:02d}|{(FIRST_DAY + dt.timedelta(days=d)).isoformat()}"
            entry = entries.get(key)
            cells.append(
                {
                    "partition_key": key,
                    "state": entry.state if entry else "missing",
                    "fencing_token": entry.fencing_token if entry else None,
                    "version": entry.committed_token if entry else None,
                    "commits": entry.commits if entry else 0,
                    "row_count": entry.row_count if entry else None,
                    "holder": entry.holder if entry else None,
                    "since": entry.claimed_at.isoformat() if entry and entry.claimed_at else None,
                    "committed_at": entry.committed_at.isoformat() if entry and entry.committed_at else None,
                    "location": entry.location if entry else None,
                    "error": entry.error if entry else None,
                }
            )
    return json.dumps({"cells": cells}).encode()


def grid(engine: Any, namespace: str, cities: int, days: int) -> bytes:
    spec = GridSpec(
        namespace=namespace,
        dimensions=(("city", tuple(f"city{c:02d}" for c in range(cities))),),
        date_from=FIRST_DAY,
        date_to=FIRST_DAY + dt.timedelta(days=days - 1),
    )
    return json.dumps(read_coverage(engine, spec).to_payload()).encode()


def measure(fn: Any, repeats: int, *args: Any) -> tuple[float, bytes]:
    fn(*args)  # warm the connection pool and caches, as a running API server has them
    times = []
    body = b""
    for _ in range(repeats):
        started = time.perf_counter()
        body = fn(*args)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), body


def run_backend(name: str, url: str, repeats: int) -> list[dict[str, Any]]:
    engine = create_engine(url)
    metadata.create_all(engine)
    results = []
    for cities, days in SIZES:
        namespace = f"bench_{cities}x{days}_{uuid.uuid4().hex[:6]}"
        states = fill(engine, namespace, cities, days)
        grid_ms, grid_body = measure(grid, repeats, engine, namespace, cities, days)
        naive_ms, naive_body = measure(per_cell_objects, repeats, engine, namespace, cities, days)
        results.append(
            {
                "backend": name,
                "keys": cities * days,
                "cities": cities,
                "days": days,
                "ledger_rows_by_state": states,
                "grid": {
                    "median_ms": round(grid_ms, 1),
                    "payload_bytes": len(grid_body),
                    "payload_gzip_bytes": len(gzip.compress(grid_body)),
                },
                "per_cell_objects": {
                    "median_ms": round(naive_ms, 1),
                    "payload_bytes": len(naive_body),
                    "payload_gzip_bytes": len(gzip.compress(naive_body)),
                },
                "payload_ratio": round(len(naive_body) / len(grid_body), 1),
                "time_ratio": round(naive_ms / grid_ms, 1) if grid_ms else None,
            }
        )
        with engine.begin() as conn:
            conn.execute(
                text("DELETE FROM training_guard_partition_ledger WHERE namespace = :n"), {"n": namespace}
            )
    engine.dispose()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--postgres", help="also measure on this PostgreSQL SQLAlchemy URL")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        results += run_backend("sqlite", f"sqlite:///{Path(tmp) / 'ledger.db'}", args.repeats)
    if args.postgres:
        results += run_backend("postgresql", args.postgres, args.repeats)
    checks = []
    for row in results:
        if row["keys"] == TARGET_KEYS:
            checks.append(
                {
                    "backend": row["backend"],
                    "grid_ms_under_target": row["grid"]["median_ms"] < TARGET_MS,
                    "grid_bytes_under_target": row["grid"]["payload_bytes"] < TARGET_BYTES,
                    "payload_ratio_over_target": row["payload_ratio"] >= TARGET_RATIO,
                }
            )
    ok = bool(checks) and all(all(v for k, v in c.items() if k != "backend") for c in checks)
    print(
        json.dumps(
            {
                "benchmark": "coverage_grid",
                "machine": {"python": platform.python_version(), "platform": platform.platform()},
                "repeats": args.repeats,
                "targets": {
                    "keys": TARGET_KEYS,
                    "grid_median_ms_under": TARGET_MS,
                    "grid_payload_bytes_under": TARGET_BYTES,
                    "payload_ratio_at_least": TARGET_RATIO,
                },
                "results": results,
                "checks": checks,
                "verdict": "pass" if ok else "fail",
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
