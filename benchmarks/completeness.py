#!/usr/bin/env python3
"""Partition completeness: storage requests and wall time per poke, and triggers per triggerer.

Part 1, storage. Real files on disk (``file://`` through ``ObjectStoragePath``) in the layout of
the daily DAG (``date=YYYY-MM-DD/hour=HH/part-0.csv`` + ``_SUCCESS``), complete, for 24 (a day),
720 (30 days) and 8,760 (a year) expected hourly partitions. In the same run, side by side:

- ``guard_common_prefix``: ``ObjectStorageSource`` (default listing: one recursive listing under
  the prefix all partitions share);
- ``guard_per_parent``: ``ObjectStorageSource(listing="per_parent")`` (one listing per day);
- ``naive_per_partition``: the usual hand-written check, per partition ``exists(_SUCCESS)`` and
  ``ls(partition)`` for the data sizes.

Requests are counted at the fsspec layer by wrapping the filesystem's methods: ``fsspec_calls``
are the calls the check makes (what an object store would receive as requests), and
``fsspec_primitive_ops`` also counts the calls fsspec makes internally (on a local disk a
recursive ``find`` walks one ``ls`` per folder; on S3/GCS it is one flat listing).
``object_store_requests_model`` turns the calls into the requests S3 or GCS would bill: a listing
returns 1,000 objects per request; ``exists``/``ls`` of one partition are one request each.

Part 2, triggerer. A fresh Python process (one triggerer's worth) runs N deferred
``PartitionCompletenessTrigger``s concurrently on one asyncio loop, each waiting for its own
dataset of 24 hourly partitions with 23 present: it reports CPU and memory while they all wait,
event-loop lag, and how long until every trigger fires once the last hour lands everywhere.

    .venv/bin/python benchmarks/completeness.py            # 24 / 720 / 8,760; 1,000 triggers
    .venv/bin/python benchmarks/completeness.py --quick    # smaller, for a smoke check

Prints one JSON document.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from airflow_training_guard.partitions import (  # noqa: E402
    CompletenessResult,
    ExpectedPartitions,
    HoursOfDay,
    HoursOfRange,
    ObjectStorageSource,
    PartitionObservation,
    PartitionStatus,
)

FIRST_DAY = date(2026, 1, 1)
LISTING_PAGE = 1_000  # objects per LIST request on S3 and GCS
FS_METHODS = (
    "find",
    "ls",
    "info",
    "exists",
    "isfile",
    "isdir",
    "glob",
    "walk",
    "size",
    "stat",
    "open",
    "cat_file",
)


# -- counting at the fsspec layer ----------------------------------------------------------------


class FsCounter:
    """Counts calls to the local fsspec filesystem: top-level (issued by the check) and nested."""

    def __init__(self) -> None:
        self.top: Counter[str] = Counter()
        self.all: Counter[str] = Counter()
        self.listed_entries: list[int] = []
        self._depth = threading.local()

    @contextmanager
    def installed(self) -> Iterator[FsCounter]:
        from fsspec.implementations.local import LocalFileSystem

        originals = {name: getattr(LocalFileSystem, name) for name in FS_METHODS}
        counter = self

        def wrap(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
            def wrapper(fs: Any, *args: Any, **kwargs: Any) -> Any:
                depth = getattr(counter._depth, "value", 0)
                counter.all[name] += 1
                if depth == 0:
                    counter.top[name] += 1
                counter._depth.value = depth + 1
                try:
                    result = original(fs, *args, **kwargs)
                finally:
                    counter._depth.value = depth
                if depth == 0 and name in {"find", "ls", "glob"}:
                    counter.listed_entries.append(len(result))
                return result

            return wrapper

        for name, original in originals.items():
            setattr(LocalFileSystem, name, wrap(name, original))
        try:
            yield self
        finally:
            for name, original in originals.items():
                setattr(LocalFileSystem, name, original)

    def reset(self) -> None:
        self.top.clear()
        self.all.clear()
        self.listed_entries.clear()

    def object_store_requests(self) -> int:
        """Requests S3/GCS would bill: a listing is one request per 1,000 objects, others one each."""
        listings = sum(max(1, math.ceil(entries / LISTING_PAGE)) for entries in self.listed_entries)
        return listings + sum(count for name, count in self.top.items() if name not in {"find", "ls", "glob"})


# -- part 1: storage -----------------------------------------------------------------------------


def write_partitions(root: Path, days: int) -> None:
    for offset in range(days):
        day = (FIRST_DAY + timedelta(days=offset)).isoformat()
        for hour in range(24):
            folder = root / f"date={day}" / f"hour={hour:02d}"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "part-0.csv").write_bytes(b"f0,f1,label\n0.1,0.2,1\n")
            (folder / "_SUCCESS").write_bytes(b"")


def expected_for(days: int) -> ExpectedPartitions:
    first = FIRST_DAY.isoformat()
    if days == 1:
        return HoursOfDay(first)
    return HoursOfRange(first, (FIRST_DAY + timedelta(days=days - 1)).isoformat())


def naive_check(source: ObjectStorageSource, expected: ExpectedPartitions) -> CompletenessResult:
    """One check per partition: does the marker exist, and how big is the data next to it?"""
    from airflow.sdk.io.path import ObjectStoragePath

    urls = source.locations(expected)
    fs = ObjectStoragePath(next(iter(urls.values()))).fs
    observed: dict[str, PartitionObservation] = {}
    for key, url in urls.items():
        path = fs._strip_protocol(url)
        if not fs.exists(f"{path}/_SUCCESS"):
            continue
        entries = fs.ls(path, detail=True)
        data = [
            e
            for e in entries
            if e["type"] == "file" and not e["name"].rsplit("/", 1)[-1].startswith(("_", "."))
        ]
        size = sum(int(e.get("size") or 0) for e in data)
        status = PartitionStatus.PRESENT if data and size > 0 else PartitionStatus.TOO_SMALL
        observed[key] = PartitionObservation(status, bytes=size, files=len(data))
    return CompletenessResult.evaluate(expected.keys(), observed)


def measure(check: Callable[[], CompletenessResult], counter: FsCounter, repeats: int) -> dict[str, Any]:
    walls: list[float] = []
    complete = True
    for _ in range(repeats):
        counter.reset()
        started = time.perf_counter()
        result = check()
        walls.append(time.perf_counter() - started)
        complete = complete and result.is_complete
    return {
        "complete": complete,
        "fsspec_calls_per_poke": dict(sorted(counter.top.items())),
        "fsspec_calls_total_per_poke": sum(counter.top.values()),
        "fsspec_primitive_ops_per_poke": sum(counter.all.values()),
        "object_store_requests_model_per_poke": counter.object_store_requests(),
        "wall_ms_per_poke": {
            "median": round(statistics.median(walls) * 1000, 2),
            "min": round(min(walls) * 1000, 2),
            "max": round(max(walls) * 1000, 2),
            "repeats": repeats,
        },
    }


def storage_benchmark(sizes: list[int], work: Path) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    counter = FsCounter()
    for days in sizes:
        root = work / f"storage-{days}"
        started = time.perf_counter()
        write_partitions(root, days)
        setup = time.perf_counter() - started
        expected = expected_for(days)
        expected.keys()  # computed once per set, like the sensor does
        template = str(root) + "/date={date}/hour={hour}"
        guard = ObjectStorageSource(template)
        per_parent = ObjectStorageSource(template, listing="per_parent")
        repeats = 7 if days == 1 else (5 if days <= 30 else 3)
        checks: dict[str, Callable[[], CompletenessResult]] = {
            "guard_common_prefix": functools.partial(guard.check, expected),
            "guard_per_parent": functools.partial(per_parent.check, expected),
            "naive_per_partition": functools.partial(naive_check, guard, expected),
        }
        with counter.installed():
            for check in checks.values():
                check()  # one untimed warm-up each, so all of them see the same (warm) page cache
            approaches = {name: measure(check, counter, repeats) for name, check in checks.items()}
        naive = approaches["naive_per_partition"]
        best = approaches["guard_common_prefix"]
        results.append(
            {
                "expected_partitions": len(expected),
                "expected": expected.describe(),
                "files_on_disk": len(expected) * 2,
                "setup_seconds": round(setup, 2),
                "approaches": approaches,
                "request_reduction_vs_naive": round(
                    naive["fsspec_calls_total_per_poke"] / best["fsspec_calls_total_per_poke"], 1
                ),
                "object_store_request_reduction_vs_naive": round(
                    naive["object_store_requests_model_per_poke"]
                    / best["object_store_requests_model_per_poke"],
                    1,
                ),
                "wall_speedup_vs_naive": round(
                    naive["wall_ms_per_poke"]["median"] / best["wall_ms_per_poke"]["median"], 2
                ),
            }
        )
        shutil.rmtree(root, ignore_errors=True)
    return results


# -- part 2: triggerer ---------------------------------------------------------------------------


def write_trigger_datasets(root: Path, count: int, hours: int) -> None:
    day = FIRST_DAY.isoformat()
    for index in range(count):
        for hour in range(hours):
            folder = root / f"ds{index:04d}" / f"date={day}" / f"hour={hour:02d}"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "part-0.csv").write_bytes(b"f0,f1,label\n0.1,0.2,1\n")
            (folder / "_SUCCESS").write_bytes(b"")


def triggerer_child(root: Path, count: int, poke_interval: float, hold: float) -> dict[str, Any]:
    """Run ``count`` triggers on one loop in this process, like one triggerer does."""
    import psutil

    from airflow_training_guard.triggers.completeness import PartitionCompletenessTrigger

    process = psutil.Process()
    expected = HoursOfDay(FIRST_DAY.isoformat())
    rss_baseline = process.memory_info().rss
    triggers = [
        PartitionCompletenessTrigger(
            expected=expected,
            source=ObjectStorageSource(str(root / f"ds{index:04d}") + "/date={date}/hour={hour}"),
            poke_interval=poke_interval,
            timeout_at=datetime.now(UTC) + timedelta(hours=1),
        )
        for index in range(count)
    ]
    for trigger in triggers:  # quiet: 1,000 triggers log every poke
        trigger.log.disabled = True  # type: ignore[attr-defined]

    async def main() -> dict[str, Any]:
        fired: list[float] = []
        statuses: Counter[str] = Counter()

        checks = [0]
        original_check = ObjectStorageSource.check_async

        async def counted_check(
            source: ObjectStorageSource, expected: ExpectedPartitions
        ) -> CompletenessResult:
            result = await original_check(source, expected)
            checks[0] += 1
            return result

        ObjectStorageSource.check_async = counted_check  # type: ignore[method-assign]

        async def consume(trigger: PartitionCompletenessTrigger) -> None:
            async for event in trigger.run():
                statuses[event.payload["status"]] += 1
                fired.append(time.monotonic())

        lags: list[float] = []
        stop = asyncio.Event()

        async def lag_probe() -> None:
            while not stop.is_set():
                before = time.monotonic()
                await asyncio.sleep(0.1)
                lags.append(time.monotonic() - before - 0.1)

        probe = asyncio.create_task(lag_probe())
        started = time.monotonic()
        tasks = [asyncio.create_task(consume(trigger)) for trigger in triggers]
        await asyncio.sleep(min(2.0, hold / 4))  # let every trigger start and poke once
        # the start (every trigger's first check at once) is reported apart from the steady state
        startup_lag_max = max(lags, default=0.0)
        lags.clear()
        checks_before = checks[0]
        cpu_before = process.cpu_times()
        wall_before = time.monotonic()
        rss_samples: list[int] = []
        while time.monotonic() - wall_before < hold:
            await asyncio.sleep(1.0)
            rss_samples.append(process.memory_info().rss)
        cpu_after = process.cpu_times()
        held = time.monotonic() - wall_before
        checks_during_hold = checks[0] - checks_before
        waiting = sum(1 for task in tasks if not task.done())
        cpu_seconds = (cpu_after.user - cpu_before.user) + (cpu_after.system - cpu_before.system)
        lag_while_waiting = sorted(lags)
        lags.clear()

        # the last hour lands for every dataset at once (written off the loop, not counted as CPU above)
        landed_at_start = time.monotonic()
        await asyncio.to_thread(_land_last_hour, root, count)
        landed = time.monotonic()
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=max(120.0, poke_interval * 10))
        stop.set()
        await probe
        return {
            "triggers": count,
            "poke_interval_seconds": poke_interval,
            "expected_partitions_per_trigger": len(expected),
            "held_seconds": round(held, 1),
            "triggers_waiting_during_hold": waiting,
            "checks_per_second_during_hold": round(checks_during_hold / held, 1),
            "cpu_percent_of_one_core_during_hold": round(100 * cpu_seconds / held, 1),
            "cpu_ms_per_check": round(1000 * cpu_seconds / max(1, checks_during_hold), 3),
            "cpu_percent_of_one_core_projected_at_60s_poke_interval": round(
                100 * (cpu_seconds / max(1, checks_during_hold)) * count / 60, 1
            ),
            "rss_mb_before_triggers": round(rss_baseline / 2**20, 1),
            "rss_mb_with_triggers_peak": round(max(rss_samples) / 2**20, 1),
            "rss_kb_per_trigger": round((max(rss_samples) - rss_baseline) / count / 1024, 1),
            "event_loop_lag_ms_while_waiting": {
                "p50": round(1000 * lag_while_waiting[len(lag_while_waiting) // 2], 1),
                "p99": round(1000 * lag_while_waiting[int(len(lag_while_waiting) * 0.99) - 1], 1),
                "max": round(1000 * lag_while_waiting[-1], 1),
            },
            "event_loop_lag_ms_max_at_startup": round(1000 * startup_lag_max, 1),
            "seconds_to_write_last_hours": round(landed - landed_at_start, 2),
            "seconds_until_all_fired_after_data_landed": round(max(fired) - landed, 2),
            "events": dict(statuses),
            "all_succeeded": statuses == Counter({"success": count}),
            "total_seconds": round(time.monotonic() - started, 1),
        }

    return asyncio.run(main())


def _land_last_hour(root: Path, count: int) -> None:
    day = FIRST_DAY.isoformat()
    for index in range(count):
        folder = root / f"ds{index:04d}" / f"date={day}" / "hour=23"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "part-0.csv").write_bytes(b"f0,f1,label\n0.1,0.2,1\n")
        (folder / "_SUCCESS").write_bytes(b"")


def triggerer_benchmark(count: int, poke_interval: float, hold: float, work: Path) -> dict[str, Any]:
    root = work / "triggers"
    started = time.perf_counter()
    write_trigger_datasets(root, count, hours=23)
    setup = time.perf_counter() - started
    proc = subprocess.run(
        [
            sys.executable,
            __file__,
            "--triggerer-child",
            str(root),
            "--triggers",
            str(count),
            "--poke-interval",
            str(poke_interval),
            "--hold",
            str(hold),
        ],
        capture_output=True,
        text=True,
        timeout=hold + 600,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"triggerer child failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    result["setup_seconds"] = round(setup, 1)
    shutil.rmtree(root, ignore_errors=True)
    return result


# -- main ----------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="24/720 partitions and 100 triggers, short hold")
    parser.add_argument("--triggers", type=int, default=None, help="concurrent triggers (default 1000)")
    parser.add_argument("--poke-interval", type=float, default=5.0, help="trigger poke interval (s)")
    parser.add_argument("--hold", type=float, default=None, help="seconds the triggers wait (default 30)")
    parser.add_argument("--skip-triggerer", action="store_true")
    parser.add_argument("--triggerer-child", metavar="ROOT", help=argparse.SUPPRESS)
    args = parser.parse_args()

    os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")
    if args.triggerer_child:
        print(
            json.dumps(
                triggerer_child(Path(args.triggerer_child), args.triggers, args.poke_interval, args.hold)
            )
        )
        return

    import airflow
    import fsspec

    sizes = [1, 30] if args.quick else [1, 30, 365]
    count = args.triggers or (100 if args.quick else 1000)
    hold = args.hold or (8.0 if args.quick else 30.0)
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="tg-completeness-bench-"))
    try:
        report: dict[str, Any] = {
            "benchmark": "partition_completeness",
            "command": " ".join([Path(sys.executable).name, "benchmarks/completeness.py", *sys.argv[1:]]),
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "airflow": airflow.__version__,
                "fsspec": fsspec.__version__,
                "filesystem": "local disk (file://) through ObjectStoragePath",
            },
            "storage": storage_benchmark(sizes, work),
        }
        if not args.skip_triggerer:
            report["triggerer"] = triggerer_benchmark(count, args.poke_interval, hold, work)
        report["total_seconds"] = round(time.perf_counter() - started, 1)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
