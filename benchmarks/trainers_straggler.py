#!/usr/bin/env python3
"""Straggler: one rank of the 2-rank DDP example slowed 3x by a SIGSTOP/SIGCONT duty cycle.

Rank 1's process runs ``--run-ms`` then stops for twice as long, for as long as it lives (the slow
node). Three modes in one run, side by side:

- ``baseline``: no slowdown (the job as it should run);
- ``warn``: slowed for the whole job; policy ``warn`` only reports (this is "doing nothing",
  plus the report: it gives the time to detection);
- ``restart``: slowed; policy ``restart`` stops the attempt once the rule fires and the retry
  resumes from the newest valid checkpoint, away from the slow node (the retry's ranks are not
  slowed, as with ``avoid_node`` on a multi-node launcher).

Prints one JSON document: wall seconds per mode, attempts, time to detection in heartbeat looks
and seconds, the report, and the ratio restart / warn (verdict: restart finishes sooner).

    .venv/bin/python benchmarks/trainers_straggler.py
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _ddp_job import run_job

from airflow_training_guard.policies.stragglers import StragglerPolicy
from airflow_training_guard.runtime import read_rank_heartbeats


def _slow_rank_one(run_seconds: float, only_first_attempt: bool):
    def start(attempt: int, supervisor, heartbeat: Path) -> None:
        if only_first_attempt and attempt > 1:
            return

        def duty_cycle() -> None:
            pid = None
            while pid is None:  # wait for rank 1's first heartbeat: its pid
                record = read_rank_heartbeats(heartbeat).get(1)
                pid = record.pid if record is not None else None
                if supervisor._proc is not None and supervisor._proc.poll() is not None:
                    return
                time.sleep(0.05)
            while True:
                try:
                    os.kill(pid, signal.SIGSTOP)
                    time.sleep(2 * run_seconds)  # stopped 2/3 of the time: 3x slower
                    os.kill(pid, signal.SIGCONT)
                    time.sleep(run_seconds)
                except ProcessLookupError:
                    return

        threading.Thread(target=duty_cycle, daemon=True).start()

    return start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--step-seconds", type=float, default=0.05)
    parser.add_argument("--run-ms", type=float, default=100.0)
    parser.add_argument("--window", type=float, default=10.0)
    parser.add_argument("--rate-window", type=float, default=5.0)
    parser.add_argument("--poll-interval", type=float, default=0.5)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    program = ["--steps", str(args.steps), "--step-seconds", str(args.step_seconds)]
    modes = {
        "baseline": (None, None),
        "warn": (
            StragglerPolicy(fraction=0.5, window=args.window, rate_window=args.rate_window, action="warn"),
            False,
        ),
        "restart": (
            StragglerPolicy(fraction=0.5, window=args.window, rate_window=args.rate_window, action="restart"),
            True,
        ),
    }
    walls: dict[str, list[float]] = {mode: [] for mode in modes}
    attempts: dict[str, list[int]] = {mode: [] for mode in modes}
    detections: dict[str, list[dict]] = {"warn": [], "restart": []}
    for _ in range(args.repeats):
        for mode, (policy, only_first) in modes.items():
            work = Path(tempfile.mkdtemp(prefix=f"tg-straggler-{mode}-"))
            try:
                result = run_job(
                    work,
                    program,
                    checkpoint_every=20,
                    straggler=policy,
                    on_attempt_start=None
                    if policy is None
                    else _slow_rank_one(args.run_ms / 1000, only_first),
                    poll_interval=args.poll_interval,
                )
            finally:
                shutil.rmtree(work, ignore_errors=True)
            if not result.succeeded:
                raise SystemExit(f"{mode}: the job did not succeed: {result.attempts[-1].detail}")
            walls[mode].append(result.wall_seconds)
            attempts[mode].append(len(result.attempts))
            if mode in detections:
                reports = [report for outcome in result.attempts for report in outcome.stragglers]
                first = reports[0] if reports else None
                detections[mode].append(
                    {
                        "detected": first is not None,
                        "rank": first.rank if first else None,
                        "heartbeat_looks": first.observations if first else None,
                        "seconds_from_watch_start": round(first.observations * args.poll_interval, 1)
                        if first
                        else None,
                        "report": first.describe() if first else None,
                    }
                )
    medians = {mode: statistics.median(values) for mode, values in walls.items()}
    ratio = medians["restart"] / medians["warn"]
    all_detected = all(
        entry["detected"] and entry["rank"] == 1 for entries in detections.values() for entry in entries
    )
    print(
        json.dumps(
            {
                "benchmark": "trainers_straggler",
                "job": {
                    "ranks": 2,
                    "steps": args.steps,
                    "slowed_rank": 1,
                    "slowdown": "3x (SIGSTOP 2/3 of the time)",
                },
                "policy": {
                    "fraction": 0.5,
                    "window_seconds": args.window,
                    "rate_window_seconds": args.rate_window,
                },
                "poll_interval_seconds": args.poll_interval,
                "wall_seconds": {mode: [round(v, 1) for v in values] for mode, values in walls.items()},
                "attempts": attempts,
                "detection": detections,
                "ratio_restart_to_warn": round(ratio, 3),
                "ratio_warn_to_baseline": round(medians["warn"] / medians["baseline"], 3),
                "verdict": "pass" if all_detected and ratio < 1.0 else "fail",
                "verdict_rule": "rank 1 detected in every slowed run and restart finishes sooner than doing nothing",
                "load_average_1m": round(os.getloadavg()[0], 2),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
