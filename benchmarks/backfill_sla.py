"""Backfill benchmark: DAG file parse time for backfill ranges of 1, 90 and 365 days x 30 cities.

Run: ``.venv/bin/python benchmarks/backfill_sla.py [--repeat 5]``; prints JSON.

What it measures: the wall time of a real ``DagBag`` parse of one DAG file built with the factory
(``build_dags``), for ``max_backfill_days`` of 1, 90 and 365 with 30 cities (target: flat, < 0.5 s).
The factory maps partition keys at run time, so the DAG's shape (and its parse cost) does not grow
with the range.

NOT measured yet: the scheduler part of the issue (a real LocalExecutor scheduler on PostgreSQL, a
30 cities x 90 days backfill, then the daily run's task wait time with and without the pools and the
cluster policy). ``scheduler_sla`` in the output says so explicitly rather than printing a number.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path

DAG_TEMPLATE = textwrap.dedent(
    '''
    """Benchmark pipeline."""
    from __future__ import annotations

    import datetime as dt

    from airflow_training_guard.backfill.factory import TrainingPipeline, build_dags
    from airflow_training_guard.backfill.validation import Dimension

    pipeline = TrainingPipeline(
        name="bench_{days}",
        work=lambda unit: [],
        start_date=dt.date(2025, 1, 1),
        dimensions=(Dimension("city", tuple(f"city{{i:02d}}" for i in range(30))),),
        output="rows",
        max_backfill_days={days},
        doc_md="benchmark",
    )
    daily, backfill = build_dags(pipeline)
    '''
)


def parse_times(days_list: list[int], repeat: int) -> dict[str, dict[str, float]]:
    from airflow.dag_processing.dagbag import DagBag

    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as folder:
        for days in days_list:
            path = Path(folder) / f"bench_{days}.py"
            path.write_text(DAG_TEMPLATE.format(days=days))
            samples = []
            for _ in range(repeat):
                begin = time.perf_counter()
                bag = DagBag(dag_folder=str(path))
                samples.append(time.perf_counter() - begin)
                if bag.import_errors:
                    raise SystemExit(f"import errors: {bag.import_errors}")
            results[f"{days}d_x_30_cities"] = {
                "median_s": round(statistics.median(samples), 4),
                "max_s": round(max(samples), 4),
                "dags": len(bag.dags),
                "tasks_per_dag": max(len(dag.tasks) for dag in bag.dags.values()),
            }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    parse = parse_times([1, 90, 365], args.repeat)
    flat = max(entry["median_s"] for entry in parse.values()) < 0.5
    print(
        json.dumps(
            {
                "python": sys.version.split()[0],
                "dag_parse_time": parse,
                "parse_target_met": flat,
                "scheduler_sla": "not measured: the real-scheduler comparison is not implemented yet",
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
