#!/usr/bin/env python3
"""Pinning data by content: what ``content_digest`` costs next to just reading the same bytes.

Pre-flight pins data without a commit SHA (a day of hourly partitions) by a SHA-256 over every
file, and the training task recomputes it before it starts, so the data is read twice more per
run. This measures, in one run and side by side on the same files (hot page cache, the best case
for both, so the ratio isolates the hashing):

- ``read_only``: every file read in 1 MiB chunks, nothing else (the floor: any pin must read);
- ``content_digest``: :func:`airflow_training_guard.preflight.data.content_digest`.

Layouts: the daily DAG's day (24 hours x 1 file, the demo's size and a 16 MiB-per-hour size) and
many small files (24 x 50 files). Each figure is the best of ``--repeat`` runs.

    .venv/bin/python benchmarks/data_pin.py            # about 1 GiB of files in all
    .venv/bin/python benchmarks/data_pin.py --quick

Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from airflow_training_guard.preflight.data import content_digest

CHUNK = 1 << 20


def write_day(root: Path, *, hours: int, files_per_hour: int, file_bytes: int) -> int:
    block = os.urandom(min(file_bytes, CHUNK))
    total = 0
    for hour in range(hours):
        folder = root / f"hour={hour:02d}"
        folder.mkdir(parents=True)
        for index in range(files_per_hour):
            with (folder / f"part-{index}.csv").open("wb") as handle:
                left = file_bytes
                while left > 0:
                    piece = block[: min(left, len(block))]
                    handle.write(piece)
                    left -= len(piece)
            total += file_bytes
        (folder / "_SUCCESS").write_bytes(b"")
    return total


def read_only(root: Path) -> int:
    size = 0
    for path in sorted(root.rglob("*")):
        if path.is_file():
            with path.open("rb") as handle:
                while chunk := handle.read(CHUNK):
                    size += len(chunk)
    return size


def best(fn, repeat: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small files only")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    layouts = [
        ("day_24x1_17KiB (demo size)", 24, 1, 17 * 1024),
        ("day_24x50_64KiB (many small files)", 24, 50, 64 * 1024),
    ]
    if not args.quick:
        layouts.append(("day_24x1_16MiB", 24, 1, 16 * CHUNK))
        layouts.append(("day_24x4_10MiB", 24, 4, 10 * CHUNK))
    results = []
    with tempfile.TemporaryDirectory(prefix="data-pin-bench-") as tmp:
        for name, hours, files, size in layouts:
            root = Path(tmp) / name.split()[0]
            total = write_day(root, hours=hours, files_per_hour=files, file_bytes=size)
            read_only(root)  # warm the page cache for both
            read_s = best(lambda root=root: read_only(root), args.repeat)
            digest_s = best(lambda root=root: content_digest(root), args.repeat)
            results.append(
                {
                    "layout": name,
                    "files": hours * (files + 1),
                    "bytes": total,
                    "read_only_s": round(read_s, 4),
                    "content_digest_s": round(digest_s, 4),
                    "content_digest_mib_per_s": round(total / CHUNK / digest_s, 1),
                    "ratio_digest_to_read": round(digest_s / read_s, 2),
                }
            )
    print(
        json.dumps(
            {
                "benchmark": "data_pin",
                "python": platform.python_version(),
                "cpus": os.cpu_count(),
                "repeat": args.repeat,
                "results": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
