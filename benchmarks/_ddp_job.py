"""Shared by the trainer benchmarks: run the 2-rank DDP example as the local launcher does, with retries.

Each attempt is the real ``torchrun`` job of ``examples/training/train_ddp.py`` under the real
:class:`ProcessSupervisor` (deadline, heartbeats, straggler rule), with the same environment
contract ``LocalTrainingOperator`` sets; a failed, retryable attempt is retried at once (Airflow's
``retry_delay`` and scheduling latency are configuration, the same in every mode), and each retry
resumes from the newest valid checkpoint the program finds.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from airflow_training_guard.launchers.process import (
    Outcome,
    ProcessSupervisor,
    SupervisionLimits,
    torchrun_command,
)
from airflow_training_guard.policies.stragglers import StragglerPolicy
from airflow_training_guard.runtime import TrainingEnvironment

REPO = Path(__file__).resolve().parent.parent
TRAIN_DDP = REPO / "examples" / "training" / "train_ddp.py"


@dataclass
class JobResult:
    wall_seconds: float
    attempts: list[Outcome] = field(default_factory=list)

    @property
    def succeeded(self) -> bool:
        return bool(self.attempts) and self.attempts[-1].succeeded


def run_job(
    work: Path,
    program_args: list[str],
    *,
    checkpoint_every: int,
    straggler: StragglerPolicy | None = None,
    on_attempt_start: Callable[[int, ProcessSupervisor, Path], None] | None = None,
    max_attempts: int = 8,
    poll_interval: float = 0.5,
    deadline: float = 3600.0,
) -> JobResult:
    """Run the job to success (or ``max_attempts``); ``on_attempt_start(attempt, supervisor, heartbeat)``
    is called in a thread-safe way before each attempt starts (benchmarks start their saboteurs there)."""
    checkpoint_dir, output_dir = work / "checkpoints", work / "output"
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    output_dir.mkdir(parents=True, exist_ok=True)
    heartbeat = checkpoint_dir / "heartbeat.json"
    command = torchrun_command([sys.executable, str(TRAIN_DDP), *program_args], 2, python=sys.executable)
    result = JobResult(wall_seconds=0.0)
    started = time.monotonic()
    for attempt in range(1, max_attempts + 1):
        for stale in checkpoint_dir.glob("heartbeat*.json"):
            stale.unlink()
        environment = TrainingEnvironment(
            partition_key="2026-11-01",
            checkpoint_dir=checkpoint_dir,
            checkpoint_every=checkpoint_every,
            checkpoint_keep=2,
            heartbeat_file=heartbeat,
            output_dir=output_dir,
            attempt=attempt,
        )
        supervisor = ProcessSupervisor(
            command=command,
            env={**os.environ, **environment.to_env(), "PYTHONUNBUFFERED": "1"},
            limits=SupervisionLimits(
                deadline=deadline,
                startup_timeout=deadline,
                stall_after=None,
                poll_interval=poll_interval,
                termination_grace=10,
                straggler=straggler,
            ),
            heartbeat_file=heartbeat,
            on_line=lambda line: None,
            multi_rank=True,
        )
        if on_attempt_start is not None:
            on_attempt_start(attempt, supervisor, heartbeat)
        outcome = supervisor.run()
        result.attempts.append(outcome)
        if outcome.succeeded or not outcome.retryable:
            break
    result.wall_seconds = time.monotonic() - started
    return result
