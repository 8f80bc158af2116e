#!/usr/bin/env python3
"""Checkpoint save throughput: a 1 GB torch state through TorchCheckpointer vs a plain write + fsync.

Both write the same bytes to the same disk, in alternating order, ``--repeats`` times:

- ``plain``: the bytes ``torch.save`` produces for the state (serialized once, before timing),
  written sequentially to one file and fsynced: the floor any durable checkpoint pays;
- ``guarded``: ``TorchCheckpointer.save(model=...)``: ``torch.save`` into a temporary directory,
  fsync, SHA-256 of every file, the manifest, the atomic rename and the directory fsyncs.

Prints one JSON document with each run's seconds and MB/s, the medians, and
``ratio = guarded MB/s / plain MB/s``; the goal is ratio >= 0.7 (verdict computed from the medians).

    .venv/bin/python benchmarks/trainers_checkpoint_throughput.py                  # 1024 MB, 3 repeats
    .venv/bin/python benchmarks/trainers_checkpoint_throughput.py --size-mb 128    # a quick look
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch

from airflow_training_guard.runtime.integrations.torch import TorchCheckpointer

GOAL = 0.7


class _State(torch.nn.Module):
    """A "model" of ``size_mb`` MB of float32 parameters in 64 MB tensors."""

    def __init__(self, size_mb: int) -> None:
        super().__init__()
        chunk = 64 * 1024 * 1024 // 4
        count = max(1, size_mb // 64)
        generator = torch.Generator().manual_seed(0)
        self.weights = torch.nn.ParameterList(
            torch.nn.Parameter(torch.randn(chunk, generator=generator)) for _ in range(count)
        )


def _plain(data: bytes, directory: Path) -> float:
    target = directory / "plain.bin"
    started = time.perf_counter()
    with open(target, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    elapsed = time.perf_counter() - started
    target.unlink()
    return elapsed


def _guarded(model: torch.nn.Module, directory: Path, step: int) -> float:
    checkpoints = TorchCheckpointer(directory / "ckpt", keep_last=1)
    started = time.perf_counter()
    checkpoints.save(step, model=model)
    elapsed = time.perf_counter() - started
    shutil.rmtree(directory / "ckpt")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None, help="directory on the disk to measure")
    args = parser.parse_args()

    model = _State(args.size_mb)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    data = buffer.getvalue()
    megabytes = len(data) / 1e6
    scratch = Path(tempfile.mkdtemp(prefix="tg-ckpt-bench-", dir=args.dir))
    runs: dict[str, list[float]] = {"plain": [], "guarded": []}
    try:
        for repeat in range(args.repeats):
            order = ("plain", "guarded") if repeat % 2 == 0 else ("guarded", "plain")
            for mode in order:
                seconds = _plain(data, scratch) if mode == "plain" else _guarded(model, scratch, repeat)
                runs[mode].append(seconds)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    medians = {mode: statistics.median(values) for mode, values in runs.items()}
    throughput = {mode: megabytes / seconds for mode, seconds in medians.items()}
    ratio = throughput["guarded"] / throughput["plain"]
    print(
        json.dumps(
            {
                "benchmark": "trainers_checkpoint_throughput",
                "bytes": len(data),
                "repeats": args.repeats,
                "seconds": {mode: [round(s, 3) for s in values] for mode, values in runs.items()},
                "median_seconds": {mode: round(s, 3) for mode, s in medians.items()},
                "median_mb_per_s": {mode: round(v, 1) for mode, v in throughput.items()},
                "ratio_guarded_to_plain": round(ratio, 3),
                "goal": f"ratio >= {GOAL}",
                "verdict": "pass" if ratio >= GOAL else "fail",
                "cpu_count": os.cpu_count(),
                "load_average_1m": round(os.getloadavg()[0], 2),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
