#!/usr/bin/env python3
"""Example training program: logistic regression on hourly event partitions, with NumPy.

It is small but real, and it follows the training-guard runtime contract the way a production
program should (docs/checkpoint-contract.md):

- reads its partition, checkpoint directory and resume point from the environment
  (``TrainingEnvironment.from_env()``);
- resumes from ``TRAINING_GUARD_RESUME_FROM`` when the launcher found a valid checkpoint;
- saves an atomic, checksummed checkpoint every ``TRAINING_GUARD_CHECKPOINT_EVERY`` steps;
- writes a progress heartbeat every step (the launcher's stall detection reads it);
- on SIGTERM (preemption) saves a checkpoint and exits with code 75 so the retry resumes;
- on bad input exits with code 78 so the launcher does not retry;
- in a smoke run (``TRAINING_GUARD_SMOKE_STEPS``) trains a few steps on a sample, writes nothing.

Batches are chosen by a generator seeded with (seed, step), so a resumed run computes exactly the
same weights as an uninterrupted one.

Input layout: ``<data-dir>/date=YYYY-MM-DD/hour=HH/part-0.csv`` with a ``_SUCCESS`` marker; the
last column is the 0/1 label. For a partition key ``2026-11-01`` (or ``city|2026-11-01``) the
program reads the 24 hours of that date.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path

import numpy as np

from airflow_training_guard.runtime import (
    EXIT_CONFIG_ERROR,
    Checkpointer,
    PreemptionGuard,
    TrainingEnvironment,
    exit_preempted,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True, type=Path, help="root of the hourly partitions")
    parser.add_argument("--steps", type=int, default=200, help="total optimisation steps")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--learning-rate", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--step-seconds", type=float, default=0.0, help="extra time per step, to simulate a longer job"
    )
    parser.add_argument("--sample-rows", type=int, default=512, help="rows used by a smoke run")
    return parser.parse_args(argv)


def partition_date(partition_key: str) -> str:
    """``2026-11-01`` -> ``2026-11-01``; ``berlin|2026-11-01`` -> ``2026-11-01`` (last dimension)."""
    return partition_key.split("|")[-1][:10]


def load_partition(data_dir: Path, partition_key: str) -> np.ndarray:
    day = data_dir / f"date={partition_date(partition_key)}"
    hours = sorted(day.glob("hour=*"))
    if not hours:
        raise FileNotFoundError(f"no hourly partitions under {day}")
    frames = []
    for hour in hours:
        if not (hour / "_SUCCESS").exists():
            raise FileNotFoundError(f"partition {hour} has no _SUCCESS marker: it is not finalized")
        for part in sorted(hour.glob("part-*.csv")):
            frames.append(np.loadtxt(part, delimiter=",", ndmin=2))
    return np.concatenate(frames)


def loss_and_grad(w: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    z = np.clip(x @ w, -30, 30)
    p = 1.0 / (1.0 + np.exp(-z))
    eps = 1e-9
    loss = float(-np.mean(y * np.log(p + eps) + (1 - y) * np.log(1 - p + eps)))
    grad = x.T @ (p - y) / len(y)
    return loss, grad


def to_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        env = TrainingEnvironment.from_env()
        data = load_partition(args.data_dir, env.partition_key)
    except (ValueError, FileNotFoundError) as err:
        print(f"configuration error: {err}", file=sys.stderr)
        return EXIT_CONFIG_ERROR

    for kind, revisions in env.pins.items():  # what pre-flight resolved: load these SHAs, not branch names
        for repo_id, sha in revisions.items():
            print(f"pinned {kind[:-1]} {repo_id}@{sha}", flush=True)
    total_steps = env.smoke_steps if env.is_smoke_run else args.steps
    if env.is_smoke_run:
        data = data[: args.sample_rows]
    x = np.hstack([data[:, :-1], np.ones((len(data), 1))])  # bias column
    y = data[:, -1]
    checkpointer = Checkpointer(env.checkpoint_dir, keep_last=env.checkpoint_keep)
    heartbeat = env.heartbeat()  # a file for the local launcher, log lines in a pod

    w = np.zeros(x.shape[1])
    start_step = 0
    # Always ask the checkpointer: the local launcher also passes TRAINING_GUARD_RESUME_FROM, but a
    # pod launcher cannot see the volume, so the program finds the newest valid checkpoint itself.
    checkpoint = checkpointer.latest()
    if checkpoint is not None:
        w = np.load(io.BytesIO(checkpoint.read_bytes("weights.npy")), allow_pickle=False)
        start_step = checkpoint.step
        print(f"resumed from checkpoint step {start_step} ({checkpoint.path})", flush=True)
    print(
        f"training partition_key={env.partition_key} rows={len(y)} steps={start_step}->{total_steps} "
        f"attempt={env.attempt} smoke={env.is_smoke_run}",
        flush=True,
    )
    heartbeat.beat(start_step, force=True)

    loss = float("nan")
    with PreemptionGuard() as preemption:
        for step in range(start_step + 1, total_steps + 1):
            rng = np.random.default_rng([args.seed, step])
            batch = rng.integers(0, len(y), size=min(args.batch_size, len(y)))
            loss, grad = loss_and_grad(w, x[batch], y[batch])
            w = w - args.learning_rate * grad
            if args.step_seconds:
                time.sleep(args.step_seconds)
            heartbeat.beat(step, {"loss": loss})
            if step % env.checkpoint_every == 0 or step == total_steps:
                checkpointer.save(step, {"weights.npy": to_bytes(w)}, metadata={"loss": loss})
            if step % 50 == 0:
                print(f"step {step}/{total_steps} loss={loss:.4f}", flush=True)
            if preemption.requested:
                checkpointer.save(step, {"weights.npy": to_bytes(w)}, metadata={"loss": loss})
                exit_preempted(f"preempted at step {step}: checkpoint saved, exiting for a resume")

    full_loss, _ = loss_and_grad(w, x, y)
    accuracy = float(np.mean(((x @ w) > 0) == (y > 0.5)))
    if env.is_smoke_run:
        print(f"smoke run ok: {total_steps} steps, loss={full_loss:.4f}", flush=True)
        return 0
    if env.output_dir is not None:
        env.output_dir.mkdir(parents=True, exist_ok=True)
        np.save(env.output_dir / "model.npy", w, allow_pickle=False)
        metrics = {"loss": full_loss, "accuracy": accuracy, "steps": total_steps, "rows": len(y)}
        (env.output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(f"done: loss={full_loss:.4f} accuracy={accuracy:.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
