#!/usr/bin/env python3
"""Partition completeness: listing cost per poke in a root full of history, and triggers per triggerer.

Nothing here flatters the guard: the dataset root holds **three years** of hourly history
(2024-01-01 .. 2026-12-31, ``date=YYYY-MM-DD/hour=HH/part-0.csv`` + ``_SUCCESS``, the daily DAG's
layout) plus unrelated objects (writer checksums ``.part-0.csv.crc`` in every hour, a ``_staging``
folder, a manifest), and the expected sets are the newest day (24), the newest 30 days (720) and
the newest year (8,760). The baseline is Airflow's standard ``FileSensor`` / ``FileTrigger`` as a
user would write it (one per partition marker), measured in the same run.

Part 1, storage (one process, ``file://`` through ``ObjectStoragePath``), side by side per size:

- ``guard_default``: ``ObjectStorageSource(template)`` with its default listing;
- ``guard_per_parent``: ``ObjectStorageSource(template, listing="per_parent")``;
- ``filesensor_per_partition``: ``FileSensor(filepath=<partition>/_SUCCESS).poke()`` for every
  partition (one sensor per partition: the only way a FileSensor can wait for a set).

Figures per poke: fsspec calls made by the check (wrapping the filesystem's methods), objects
listed, ``object_store_requests_model`` (what S3/GCS bill: a listing returns 1,000 objects per
request, a per-partition probe is one request), wall time (median of repeats), peak Python memory
(``tracemalloc``, a separate untimed pass) and the success payload the trigger event and XCom carry.

Part 2, triggerer: a fresh process (one triggerer's worth) runs N ``FileTrigger``s, then a fresh
process runs N ``PartitionCompletenessTrigger``s (each waiting for its own day of 24 hours with
23 present, in a root with history); both report CPU per check, CPU % of one core, RSS per trigger
and event-loop lag, and how long until all fired once the data landed.

Each figure's verdict is computed from the figures (``verdict``), against the targets of issue 17.

    .venv/bin/python benchmarks/completeness.py                 # full: about 3 minutes on 2 cores
    .venv/bin/python benchmarks/completeness.py --quick         # smaller, a smoke check
    .venv/bin/python benchmarks/completeness.py --package-root /tmp/before   # another checkout's code

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
import tracemalloc
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any


def _package_root() -> Path:
    if "--package-root" in sys.argv:
        return Path(sys.argv[sys.argv.index("--package-root") + 1]).resolve()
    return Path(__file__).resolve().parent.parent


PACKAGE_ROOT = _package_root()
sys.path.insert(0, str(PACKAGE_ROOT))

from airflow_training_guard.partitions import (  # noqa: E402
    CompletenessResult,
    ExpectedPartitions,
    HoursOfDay,
    HoursOfRange,
    ObjectStorageSource,
)

HISTORY_START = date(2024, 1, 1)
HISTORY_END = date(2026, 12, 31)
LISTING_PAGE = 1_000  # objects per LIST request on S3 and GCS
FS_METHODS = ("find", "ls", "info", "exists", "isfile", "isdir", "glob", "walk", "size", "open", "cat_file")
#: issue 17 targets
TARGET_VS_PER_PARENT = 1.5
TARGET_PAYLOAD_BYTES = 16 * 1024
TARGET_CPU_VS_FILETRIGGER = 10.0
WALL_NOISE_FLOOR_MS = 50.0


# -- counting at the fsspec layer ----------------------------------------------------------------


class FsCounter:
    """Counts calls to the local fsspec filesystem made by the check (top level) and objects listed."""

    def __init__(self) -> None:
        self.top: Counter[str] = Counter()
        self.listed_entries: list[int] = []
        self._depth = threading.local()
        self._lock = threading.Lock()

    @contextmanager
    def installed(self) -> Iterator[FsCounter]:
        from fsspec.implementations.local import LocalFileSystem

        originals = {name: getattr(LocalFileSystem, name) for name in FS_METHODS}
        counter = self

        def wrap(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
            def wrapper(fs: Any, *args: Any, **kwargs: Any) -> Any:
                depth = getattr(counter._depth, "value", 0)
                counter._depth.value = depth + 1
                try:
                    result = original(fs, *args, **kwargs)
                finally:
                    counter._depth.value = depth
                if depth == 0:
                    with counter._lock:
                        counter.top[name] += 1
                        if name in {"find", "ls", "glob"}:
                            counter.listed_entries.append(len(result) if not inspect_generator(result) else 0)
                return result

            return wrapper

        for name, original in originals.items():
            setattr(LocalFileSystem, name, wrap(name, original))
        # Newer code lists a local disk with os.scandir (_scan_local) instead of fsspec's find: one
        # such recursive listing is one `find`, and is counted as one. It lives in
        # sources/object_storage.py since sources.py became a package.
        try:
            from airflow_training_guard.partitions.sources import object_storage as sources
        except ImportError:  # older code: one sources.py
            from airflow_training_guard.partitions import sources  # type: ignore[no-redef]

        scan = getattr(sources, "_scan_local", None)
        if scan is not None:
            sources._scan_local = functools.partial(wrap("find", lambda _fs, prefix: scan(prefix)), None)  # type: ignore[attr-defined]
        try:
            yield self
        finally:
            for name, original in originals.items():
                setattr(LocalFileSystem, name, original)
            if scan is not None:
                sources._scan_local = scan  # type: ignore[attr-defined]

    def reset(self) -> None:
        self.top.clear()
        self.listed_entries.clear()

    def object_store_requests(self) -> int:
        listings = sum(max(1, math.ceil(entries / LISTING_PAGE)) for entries in self.listed_entries)
        return listings + sum(count for name, count in self.top.items() if name not in {"find", "ls", "glob"})


def inspect_generator(value: Any) -> bool:
    return hasattr(value, "__next__")


# -- fixture -------------------------------------------------------------------------------------


def write_history(root: Path, first: date, last: date) -> int:
    """Hourly partitions from ``first`` to ``last`` plus unrelated objects; returns the object count."""
    data = b"f0,f1,label\n0.1,0.2,1\n"
    objects = 0
    day = first
    while day <= last:
        for hour in range(24):
            folder = root / f"date={day.isoformat()}" / f"hour={hour:02d}"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "part-0.csv").write_bytes(data)
            (folder / ".part-0.csv.crc").write_bytes(b"crc")
            (folder / "_SUCCESS").write_bytes(b"")
            objects += 3
        day += timedelta(days=1)
    staging = root / "_staging"
    staging.mkdir(exist_ok=True)
    for index in range(500):
        (staging / f"tmp-{index:04d}.parquet").write_bytes(b"x")
    (root / "manifest.json").write_text("{}")
    return objects + 501


def expected_sets() -> dict[str, ExpectedPartitions]:
    last = HISTORY_END
    return {
        "a day (24)": HoursOfDay(last.isoformat()),
        "30 days (720)": HoursOfRange((last - timedelta(days=29)).isoformat(), last.isoformat()),
        "a year (8,760)": HoursOfRange(date(last.year, 1, 1).isoformat(), last.isoformat()),
    }


# -- part 1: storage -----------------------------------------------------------------------------


def filesensor_check(sensors: list[Any]) -> bool:
    """Every partition's FileSensor pokes once: the set is complete when all of them find their marker."""
    return all([sensor.poke({}) for sensor in sensors])


def payload_bytes(source: ObjectStorageSource, expected: ExpectedPartitions) -> dict[str, int]:
    """Bytes of the success event the trigger yields, and of the XCom value inside it."""
    from airflow_training_guard.triggers.completeness import PartitionCompletenessTrigger

    trigger = PartitionCompletenessTrigger(expected=expected, source=source, poke_interval=1.0)
    trigger.log.disabled = True  # type: ignore[attr-defined]

    async def first_event() -> dict[str, Any]:
        async for event in trigger.run():
            return dict(event.payload)
        raise RuntimeError("the trigger yielded nothing")

    payload = asyncio.run(first_event())
    return {
        "status": payload["status"],  # type: ignore[dict-item]
        "trigger_event_bytes": len(json.dumps(payload)),
        "xcom_bytes": len(json.dumps(payload.get("result"))),
    }


def measure(
    check: Callable[[], Any], counter: FsCounter, repeats: int, *, memory: bool = True
) -> dict[str, Any]:
    walls: list[float] = []
    cpus: list[float] = []
    complete = True
    for _ in range(repeats):
        counter.reset()
        cpu, started = time.process_time(), time.perf_counter()
        result = check()
        walls.append(time.perf_counter() - started)
        cpus.append(time.process_time() - cpu)
        complete = complete and (
            result.is_complete if isinstance(result, CompletenessResult) else bool(result)
        )
    figures: dict[str, Any] = {
        "complete": complete,
        "fsspec_calls_per_poke": dict(sorted(counter.top.items())),
        "objects_listed_per_poke": sum(counter.listed_entries),
        "object_store_requests_model_per_poke": counter.object_store_requests(),
        "wall_ms_per_poke": {
            "median": round(statistics.median(walls) * 1000, 2),
            "min": round(min(walls) * 1000, 2),
            "max": round(max(walls) * 1000, 2),
            "repeats": repeats,
        },
        "cpu_ms_per_poke_median": round(statistics.median(cpus) * 1000, 2),
    }
    if memory:
        tracemalloc.start()
        check()
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        figures["peak_python_memory_mb_per_poke"] = round(peak / 2**20, 2)
    return figures


def storage_benchmark(root: Path, sizes: list[str], quick: bool) -> list[dict[str, Any]]:
    from airflow.providers.standard.sensors.filesystem import FileSensor

    results: list[dict[str, Any]] = []
    counter = FsCounter()
    template = str(root) + "/date={date}/hour={hour}"
    for label, expected in expected_sets().items():
        if label not in sizes:
            continue
        expected.keys()
        guard = ObjectStorageSource(template)
        per_parent = ObjectStorageSource(template, listing="per_parent")
        sensors = [
            FileSensor(task_id=f"wait_{index}", filepath=url.removeprefix("file://") + "/_SUCCESS")
            for index, url in enumerate(guard.locations(expected).values())
        ]
        for sensor in sensors:
            sensor.log.disabled = True  # type: ignore[attr-defined]
        repeats = 3 if quick else (7 if len(expected) <= 720 else 3)
        checks: dict[str, Callable[[], Any]] = {
            "guard_default": functools.partial(guard.check, expected),
            "guard_per_parent": functools.partial(per_parent.check, expected),
            "filesensor_per_partition": functools.partial(filesensor_check, sensors),
        }
        with counter.installed():
            for check in checks.values():
                check()  # one untimed warm-up each: the same warm page cache for all
            approaches = {name: measure(check, counter, repeats) for name, check in checks.items()}
        filesensor = approaches["filesensor_per_partition"]
        filesensor["object_store_requests_model_per_poke"] = len(sensors)  # one probe per marker
        filesensor["note"] = "os-level glob per marker; sees the marker only, not the data sizes"
        default, reference = approaches["guard_default"], approaches["guard_per_parent"]
        ratio = {
            "requests": round(
                default["object_store_requests_model_per_poke"]
                / reference["object_store_requests_model_per_poke"],
                2,
            ),
            "wall": round(default["wall_ms_per_poke"]["median"] / reference["wall_ms_per_poke"]["median"], 2),
            "memory": round(
                default["peak_python_memory_mb_per_poke"]
                / max(reference["peak_python_memory_mb_per_poke"], 0.01),
                2,
            ),
        }
        payload = payload_bytes(guard, expected)
        results.append(
            {
                "expected": label,
                "expected_partitions": len(expected),
                "approaches": approaches,
                "guard_default_vs_per_parent": ratio,
                "success_payload": payload,
                "verdict": {
                    # wall time only where it is above the noise of a shared machine
                    "default_within_1_5x_of_per_parent": all(
                        value <= TARGET_VS_PER_PARENT
                        for name, value in ratio.items()
                        if name != "wall" or reference["wall_ms_per_poke"]["median"] >= WALL_NOISE_FLOOR_MS
                    ),
                    "payload_within_16_kb": payload["trigger_event_bytes"] <= TARGET_PAYLOAD_BYTES,
                    "guard_requests_below_filesensor": default["object_store_requests_model_per_poke"]
                    < filesensor["object_store_requests_model_per_poke"],
                },
            }
        )
    return results


# -- part 2: triggerer ---------------------------------------------------------------------------


def trigger_day(index: int) -> str:
    """Trigger ``index`` waits for this day of the shared three-year root (newest first)."""
    return (HISTORY_END - timedelta(days=index)).isoformat()


def take_last_hours(root: Path, count: int) -> None:
    """The 23:00 hour of each trigger's day is not there yet."""
    for index in range(count):
        shutil.rmtree(root / f"date={trigger_day(index)}" / "hour=23", ignore_errors=True)


def _land_last_hour(root: Path, count: int) -> None:
    for index in range(count):
        folder = root / f"date={trigger_day(index)}" / "hour=23"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "part-0.csv").write_bytes(b"f0,f1,label\n0.1,0.2,1\n")
        (folder / "_SUCCESS").write_bytes(b"")


def triggerer_child(kind: str, root: Path, count: int, poke_interval: float, hold: float) -> dict[str, Any]:
    """Run ``count`` triggers of ``kind`` on one loop in this process, like one triggerer does."""
    import psutil

    process = psutil.Process()
    checks = [0]
    if kind == "file":
        import airflow.providers.standard.triggers.file as file_module
        from airflow.providers.standard.triggers.file import FileTrigger

        original_glob = file_module.glob

        def counted_glob(*args: Any, **kwargs: Any) -> list[str]:
            checks[0] += 1
            return original_glob(*args, **kwargs)

        file_module.glob = counted_glob  # type: ignore[assignment]
        rss_baseline = process.memory_info().rss
        triggers: list[Any] = [
            FileTrigger(
                filepath=str(root / f"date={trigger_day(index)}" / "hour=23" / "_SUCCESS"),
                poke_interval=poke_interval,
            )
            for index in range(count)
        ]
    else:
        from airflow_training_guard.triggers.completeness import PartitionCompletenessTrigger

        original_check = ObjectStorageSource.check_async

        async def counted_check(source: ObjectStorageSource, expected: ExpectedPartitions) -> Any:
            result = await original_check(source, expected)
            checks[0] += 1
            return result

        ObjectStorageSource.check_async = counted_check  # type: ignore[method-assign]
        rss_baseline = process.memory_info().rss
        triggers = [
            PartitionCompletenessTrigger(
                expected=HoursOfDay(trigger_day(index)),
                source=ObjectStorageSource(str(root) + "/date={date}/hour={hour}"),
                poke_interval=poke_interval,
                timeout_at=datetime.now(UTC) + timedelta(hours=1),
            )
            for index in range(count)
        ]
    for trigger in triggers:  # quiet: 1,000 triggers log every poke
        trigger.log.disabled = True

    async def main() -> dict[str, Any]:
        fired: list[float] = []
        statuses: Counter[str] = Counter()

        async def consume(trigger: Any) -> None:
            async for event in trigger.run():
                payload = event.payload
                statuses[payload["status"] if isinstance(payload, dict) else str(payload)] += 1
                fired.append(time.monotonic())
                return

        lags: list[float] = []
        stop = asyncio.Event()

        async def lag_probe() -> None:
            while not stop.is_set():
                before = time.monotonic()
                await asyncio.sleep(0.1)
                lags.append(time.monotonic() - before - 0.1)

        probe = asyncio.create_task(lag_probe())
        tasks = [asyncio.create_task(consume(trigger)) for trigger in triggers]
        await asyncio.sleep(min(3.0, hold / 3))  # every trigger starts and checks once
        startup_lag_max = max(lags, default=0.0)
        lags.clear()
        threads_peak = threading.active_count()
        checks_before = checks[0]
        cpu_before = process.cpu_times()
        wall_before = time.monotonic()
        rss_samples: list[int] = []
        while time.monotonic() - wall_before < hold:
            await asyncio.sleep(1.0)
            rss_samples.append(process.memory_info().rss)
            threads_peak = max(threads_peak, threading.active_count())
        cpu_after = process.cpu_times()
        held = time.monotonic() - wall_before
        checks_during_hold = checks[0] - checks_before
        waiting = sum(1 for task in tasks if not task.done())
        cpu_seconds = (cpu_after.user - cpu_before.user) + (cpu_after.system - cpu_before.system)
        lag = sorted(lags) or [0.0]
        landed_at = time.monotonic()
        await asyncio.to_thread(_land_last_hour, root, count)
        landed = time.monotonic()
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=max(120.0, poke_interval * 10))
        stop.set()
        await probe
        return {
            "trigger": kind,
            "triggers": count,
            "poke_interval_seconds": poke_interval,
            "held_seconds": round(held, 1),
            "triggers_waiting_during_hold": waiting,
            "checks_during_hold": checks_during_hold,
            "checks_per_second": round(checks_during_hold / held, 1),
            "cpu_percent_of_one_core": round(100 * cpu_seconds / held, 1),
            "cpu_ms_per_check": round(1000 * cpu_seconds / max(1, checks_during_hold), 4),
            "threads_peak": threads_peak,
            "rss_mb_before_triggers": round(rss_baseline / 2**20, 1),
            "rss_mb_with_triggers_peak": round(max(rss_samples) / 2**20, 1),
            "rss_kb_per_trigger": round((max(rss_samples) - rss_baseline) / count / 1024, 1),
            "event_loop_lag_ms_while_waiting": {
                "p50": round(1000 * lag[len(lag) // 2], 1),
                "p99": round(1000 * lag[max(0, int(len(lag) * 0.99) - 1)], 1),
                "max": round(1000 * lag[-1], 1),
            },
            "event_loop_lag_ms_max_at_startup": round(1000 * startup_lag_max, 1),
            "seconds_to_write_last_hours": round(landed - landed_at, 2),
            "seconds_until_all_fired_after_data_landed": round(max(fired) - landed, 2),
            "events": dict(statuses),
        }

    return asyncio.run(main())


def run_child(kind: str, root: Path, count: int, poke_interval: float, hold: float) -> dict[str, Any]:
    command = [sys.executable, __file__, "--package-root", str(PACKAGE_ROOT), "--triggerer-child", kind]
    command += [
        str(root),
        "--triggers",
        str(count),
        "--poke-interval",
        str(poke_interval),
        "--hold",
        str(hold),
    ]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=hold + 900)
    if proc.returncode != 0:
        raise RuntimeError(f"triggerer child {kind} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def triggerer_benchmark(root: Path, count: int, poke_interval: float, hold: float) -> dict[str, Any]:
    """Both kinds of trigger, each of N waiting for the 23:00 hour of its own day of the same root."""
    take_last_hours(root, count)
    file = run_child("file", root, count, poke_interval, hold)
    take_last_hours(root, count)  # the file child landed them: take them away again
    guard = run_child("completeness", root, count, poke_interval, hold)
    ratio = guard["cpu_ms_per_check"] / max(file["cpu_ms_per_check"], 1e-6)
    return {
        "fixture": "the same three-year root; trigger i waits for the 23:00 hour of day HISTORY_END - i",
        "file_trigger": file,
        "completeness_trigger": guard,
        "cpu_per_check_vs_file_trigger": round(ratio, 1),
        "verdict": {
            "cpu_per_check_within_10x_of_file_trigger": ratio <= TARGET_CPU_VS_FILETRIGGER,
            "all_completeness_triggers_succeeded": guard["events"] == {"success": count},
            "all_file_triggers_fired": sum(file["events"].values()) == count,
        },
    }


# -- main ----------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a day and 30 days, 100 triggers, short hold")
    parser.add_argument("--package-root", default=None, help="import airflow_training_guard from here")
    parser.add_argument("--triggers", type=int, default=None, help="concurrent triggers (default 1000)")
    parser.add_argument("--poke-interval", type=float, default=5.0, help="trigger poke interval (s)")
    parser.add_argument("--hold", type=float, default=None, help="seconds the triggers wait (default 30)")
    parser.add_argument("--skip-triggerer", action="store_true")
    parser.add_argument("--skip-storage", action="store_true")
    parser.add_argument("--triggerer-child", nargs=2, metavar=("KIND", "ROOT"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("AIRFLOW_CONN_FS_DEFAULT", json.dumps({"conn_type": "fs", "extra": {"path": "/"}}))
    if args.triggerer_child:
        kind, root = args.triggerer_child
        print(json.dumps(triggerer_child(kind, Path(root), args.triggers, args.poke_interval, args.hold)))
        return

    import airflow
    import fsspec

    sizes = ["a day (24)", "30 days (720)"] if args.quick else list(expected_sets())
    count = args.triggers or (100 if args.quick else 1000)
    hold = args.hold or (8.0 if args.quick else 30.0)
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="tg-completeness-bench-"))
    revision = subprocess.run(
        ["git", "-C", str(PACKAGE_ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    try:
        report: dict[str, Any] = {
            "benchmark": "partition_completeness",
            "command": " ".join([Path(sys.executable).name, "benchmarks/completeness.py", *sys.argv[1:]]),
            "code": {"package_root": str(PACKAGE_ROOT), "revision": revision or "not a git checkout"},
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "airflow": airflow.__version__,
                "fsspec": fsspec.__version__,
                "filesystem": "local disk (file://) through ObjectStoragePath",
            },
        }
        root = work / "history"
        setup = time.perf_counter()
        objects = write_history(root, HISTORY_START, HISTORY_END)
        report["history"] = {
            "root": "date=YYYY-MM-DD/hour=HH/{part-0.csv,.part-0.csv.crc,_SUCCESS} + _staging/ + manifest.json",
            "days": (HISTORY_END - HISTORY_START).days + 1,
            "objects": objects,
            "setup_seconds": round(time.perf_counter() - setup, 1),
        }
        if not args.skip_storage:
            report["storage"] = storage_benchmark(root, sizes, args.quick)
        if not args.skip_triggerer:
            report["triggerer"] = triggerer_benchmark(root, count, args.poke_interval, hold)
        verdicts = [part["verdict"] for part in report.get("storage", [])]
        if "triggerer" in report:
            verdicts.append(report["triggerer"]["verdict"])
        report["verdict"] = "all targets met" if all(all(v.values()) for v in verdicts) else "targets missed"
        report["total_seconds"] = round(time.perf_counter() - started, 1)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
