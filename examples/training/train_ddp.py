#!/usr/bin/env python3
"""Example training program: a PyTorch MLP trained with DistributedDataParallel (gloo, CPU).

Run it with any number of ranks under ``torchrun`` (``LocalTrainingOperator(nproc_per_node=2)``
does that) or as a single process. It follows the training-guard contract
(docs/checkpoint-contract.md, docs/trainers.md):

- the model is built from a config (``--features``, ``--hidden``, ``--layers``): no download;
- data: the hourly partitions of ``--data-dir`` (the layout of ``sample_data.py``), or, without
  ``--data-dir``, rows generated from the seed and the partition key;
- resumes model, optimizer, LR scheduler, RNG states and data position from the newest valid
  checkpoint (:class:`TorchCheckpointer`; rank 0 writes, every rank loads);
- every rank writes its own heartbeat with its compute seconds (stall and straggler detection);
- SIGTERM on any rank: every rank agrees, saves at the same step, exits 75;
- seeded and deterministic: the same run gives a byte-identical ``model.safetensors``
  (``airflow training-guard runs reproduce`` checks that).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from safetensors.torch import save_file
from torch import nn

from airflow_training_guard.exceptions import CheckpointError
from airflow_training_guard.runtime import (
    EXIT_CONFIG_ERROR,
    PreemptionGuard,
    TrainingEnvironment,
    exit_preempted,
)
from airflow_training_guard.runtime.integrations.torch import (
    ComputeClock,
    TorchCheckpointer,
    distributed_rank,
    preemption_agreed,
    seed_everything,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=None, help="root of the hourly partitions")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=64, help="rows per rank per step")
    parser.add_argument("--features", type=int, default=8)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--learning-rate", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--rows", type=int, default=4096, help="generated rows (without --data-dir)")
    parser.add_argument("--step-seconds", type=float, default=0.0, help="extra time per step (demos)")
    return parser.parse_args(argv)


class MLP(nn.Module):
    """A small classifier built from its config; large ``hidden`` values make realistic checkpoints."""

    def __init__(self, features: int, hidden: int, layers: int) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        width = features
        for _ in range(layers):
            blocks += [nn.Linear(width, hidden), nn.Tanh()]
            width = hidden
        blocks.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)


def load_rows(args: argparse.Namespace, partition_key: str) -> np.ndarray:
    if args.data_dir is None:
        seed = [args.seed, *(ord(c) for c in partition_key)]
        rng = np.random.default_rng(seed)
        x = rng.normal(size=(args.rows, args.features))
        weights = np.linspace(-1.5, 1.5, args.features)
        y = (rng.random(args.rows) < 1.0 / (1.0 + np.exp(-(x @ weights)))).astype(float)
        return np.column_stack([x, y])
    day = args.data_dir / f"date={partition_key.split('|')[-1][:10]}"
    hours = sorted(day.glob("hour=*"))
    if not hours:
        raise FileNotFoundError(f"no hourly partitions under {day}")
    frames = []
    for hour in hours:
        if not (hour / "_SUCCESS").exists():
            raise FileNotFoundError(f"partition {hour} has no _SUCCESS marker: it is not finalized")
        frames += [np.loadtxt(part, delimiter=",", ndmin=2) for part in sorted(hour.glob("part-*.csv"))]
    return np.concatenate(frames)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group("gloo")
    rank, world_size = distributed_rank()
    try:
        env = TrainingEnvironment.from_env()
        rows = load_rows(args, env.partition_key)
        if rows.shape[1] != args.features + 1:
            raise ValueError(
                f"data has {rows.shape[1] - 1} feature columns but --features is {args.features}"
            )
    except (ValueError, FileNotFoundError) as err:
        print(f"configuration error: {err}", file=sys.stderr)
        return EXIT_CONFIG_ERROR

    seed_everything(args.seed)
    total_steps = env.smoke_steps if env.is_smoke_run else args.steps
    x = torch.tensor(rows[:, :-1], dtype=torch.float32)
    y = torch.tensor(rows[:, -1], dtype=torch.float32)
    model = MLP(args.features, args.hidden, args.layers)
    ddp = nn.parallel.DistributedDataParallel(model) if world_size > 1 else model
    optimizer = torch.optim.Adam(model.parameters(), lr=args.learning_rate)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=max(1, total_steps // 3), gamma=0.5)
    checkpoints = TorchCheckpointer(env.checkpoint_dir, keep_last=env.checkpoint_keep)
    try:
        resumed = checkpoints.load(model=model, optimizer=optimizer, scheduler=scheduler)
    except CheckpointError as err:  # e.g. a different world size: retrying cannot help
        print(f"configuration error: {err}", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    start_step = resumed.step if resumed else 0
    heartbeat = env.heartbeat()  # per rank under torchrun
    clock = ComputeClock()
    if rank == 0:
        print(
            f"training partition_key={env.partition_key} rows={len(y)} world_size={world_size} "
            f"params={sum(p.numel() for p in model.parameters())} steps={start_step}->{total_steps} "
            f"attempt={env.attempt} smoke={env.is_smoke_run}",
            flush=True,
        )
    heartbeat.beat(start_step, clock.metrics(), force=True)

    loss_value = float("nan")
    with PreemptionGuard() as preemption:
        for step in range(start_step + 1, total_steps + 1):
            # Each (step, rank) has its own batch: a resumed run sees exactly the batches it would have.
            generator = torch.Generator().manual_seed(args.seed * 1_000_003 + step * 1009 + rank)
            batch = torch.randint(0, len(y), (min(args.batch_size, len(y)),), generator=generator)
            with clock:
                loss = nn.functional.binary_cross_entropy_with_logits(ddp(x[batch]), y[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # DDP all-reduces the gradients here
            optimizer.step()
            scheduler.step()
            loss_value = float(loss.item())
            if args.step_seconds:
                with clock:
                    time.sleep(args.step_seconds)
            heartbeat.beat(step, clock.metrics(loss=loss_value))
            position = {"next_step": step + 1}
            if step % env.checkpoint_every == 0 or step == total_steps:
                checkpoints.save(
                    step, model=model, optimizer=optimizer, scheduler=scheduler,
                    data_position=position, metadata={"loss": loss_value},
                )  # fmt: skip
            if preemption_agreed(preemption):
                if step % env.checkpoint_every != 0 and step != total_steps:
                    checkpoints.save(
                        step, model=model, optimizer=optimizer, scheduler=scheduler,
                        data_position=position, metadata={"loss": loss_value},
                    )  # fmt: skip
                if dist.is_initialized():
                    dist.destroy_process_group()
                exit_preempted(
                    f"rank {rank}: preempted at step {step}: checkpoint saved, exiting for a resume"
                )
            if rank == 0 and step % 20 == 0:
                print(f"step {step}/{total_steps} loss={loss_value:.4f}", flush=True)

    with torch.no_grad():
        logits = model(x)
        full_loss = float(nn.functional.binary_cross_entropy_with_logits(logits, y).item())
        accuracy = float(((logits > 0).float() == y).float().mean().item())
    if rank == 0 and not env.is_smoke_run and env.output_dir is not None:
        env.output_dir.mkdir(parents=True, exist_ok=True)
        # safetensors, not torch.save: its bytes depend only on the tensors, so a re-run is comparable
        # by SHA-256 (torch.save embeds a per-call serialization id).
        state = {name: tensor.contiguous() for name, tensor in model.state_dict().items()}
        save_file(state, str(env.output_dir / "model.safetensors"))
        metrics = {"loss": full_loss, "accuracy": accuracy, "steps": total_steps, "rows": len(y)}
        (env.output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    if rank == 0:
        print(f"done: loss={full_loss:.4f} accuracy={accuracy:.3f}", flush=True)
    if dist.is_initialized():
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
