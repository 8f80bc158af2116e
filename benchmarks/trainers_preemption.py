#!/usr/bin/env python3
"""Preemption overhead of the 2-rank PyTorch DDP example: k SIGKILLs of a random rank, side by side.

Three modes in one run, the same seeded kill points for the two faulty ones:

- ``fault_free``: the job once, no kill;
- ``checkpointing``: a checkpoint every ``--checkpoint-every`` steps (model + Adam state of
  ``--hidden`` 2304: about 130 MB); ``k`` times a random rank is SIGKILLed at a seeded step (no
  chance to save), the attempt fails, the retry resumes from the newest valid checkpoint;
- ``no_checkpointing``: the same kills, no checkpoint before the end: each retry starts at step 0.

Each attempt is the real torchrun job under the real supervisor (benchmarks/_ddp_job.py). Prints one
JSON document: wall seconds per mode and repeat, the checkpoint size, and the overhead ratios
(mode / fault-free, medians); goal: checkpointing <= 1.10 (verdict computed from the figures).

    .venv/bin/python benchmarks/trainers_preemption.py               # 120 steps, k = 3
    .venv/bin/python benchmarks/trainers_preemption.py --quick       # small model, 40 steps
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import contextlib

from _ddp_job import run_job

from airflow_training_guard.runtime import read_rank_heartbeats

GOAL = 1.10


def _killer(kills: list[tuple[int, int]]):
    """Before attempt i (1-based) <= k: a thread SIGKILLs rank kills[i-1][0] once it passes step kills[i-1][1]."""

    def start(attempt: int, supervisor, heartbeat: Path) -> None:
        if attempt > len(kills):
            return
        rank, step = kills[attempt - 1]

        def watch() -> None:
            while True:
                record = read_rank_heartbeats(heartbeat).get(rank)
                if record is not None and record.step >= step:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(record.pid, signal.SIGKILL)
                    return
                if supervisor._proc is not None and supervisor._proc.poll() is not None:
                    return
                time.sleep(0.02)

        threading.Thread(target=watch, daemon=True).start()

    return start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--hidden", type=int, default=2304)
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--checkpoint-every", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.hidden, args.checkpoint_every = 40, 256, 10
    program = [
        "--steps",
        str(args.steps),
        "--hidden",
        str(args.hidden),
        "--layers",
        "3",
        "--batch-size",
        "32",
    ]
    rng = random.Random(args.seed)
    runs: dict[str, list[float]] = {"fault_free": [], "checkpointing": [], "no_checkpointing": []}
    attempts: dict[str, list[int]] = {mode: [] for mode in runs}
    checkpoint_bytes = 0
    for _ in range(args.repeats):
        # k seeded kill points, spread over the job: (rank, step), steps increasing
        points = sorted(rng.sample(range(5, args.steps - 2), args.kills))
        kills = [(rng.randrange(2), step) for step in points]
        for mode in ("fault_free", "checkpointing", "no_checkpointing"):
            work = Path(tempfile.mkdtemp(prefix=f"tg-preempt-{mode}-"))
            try:
                every = args.steps + 1 if mode == "no_checkpointing" else args.checkpoint_every
                result = run_job(
                    work,
                    program,
                    checkpoint_every=every,
                    on_attempt_start=None if mode == "fault_free" else _killer(kills),
                    max_attempts=args.kills + 3,
                )
                if not result.succeeded:
                    raise SystemExit(f"{mode}: the job did not succeed: {result.attempts[-1].detail}")
                runs[mode].append(result.wall_seconds)
                attempts[mode].append(len(result.attempts))
                if mode == "checkpointing":
                    newest = max((work / "checkpoints").glob("step-*"))
                    checkpoint_bytes = sum(p.stat().st_size for p in newest.rglob("*") if p.is_file())
            finally:
                shutil.rmtree(work, ignore_errors=True)
    medians = {mode: statistics.median(values) for mode, values in runs.items()}
    ratios = {mode: medians[mode] / medians["fault_free"] for mode in ("checkpointing", "no_checkpointing")}
    print(
        json.dumps(
            {
                "benchmark": "trainers_preemption",
                "job": {
                    "ranks": 2,
                    "steps": args.steps,
                    "hidden": args.hidden,
                    "checkpoint_every": args.checkpoint_every,
                },
                "kills": args.kills,
                "checkpoint_mb": round(checkpoint_bytes / 1e6, 1),
                "wall_seconds": {mode: [round(v, 1) for v in values] for mode, values in runs.items()},
                "attempts": attempts,
                "overhead_ratio": {mode: round(value, 3) for mode, value in ratios.items()},
                "goal": f"checkpointing <= {GOAL}",
                "verdict": "pass" if ratios["checkpointing"] <= GOAL else "fail",
                "load_average_1m": round(os.getloadavg()[0], 2),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
