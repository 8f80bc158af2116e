"""The launcher <-> training program contract: environment variables and exit codes.

Every launcher (the local subprocess launcher, the Kubernetes pod launcher) sets the same
environment variables, and every training program that uses :mod:`airflow_training_guard.runtime`
reads them. One training program therefore runs unchanged under both launchers.

This module is imported inside training containers: standard library only, no Airflow.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from airflow_training_guard.runtime.heartbeat import Heartbeat

#: The partition this attempt trains on, e.g. ``2026-11-01`` or ``berlin|2026-11-01``.
ENV_PARTITION_KEY = "TRAINING_GUARD_PARTITION_KEY"
#: Directory that holds this partition's checkpoints; private to (dag, task, partition_key).
ENV_CHECKPOINT_DIR = "TRAINING_GUARD_CHECKPOINT_DIR"
#: Save a checkpoint every this many steps.
ENV_CHECKPOINT_EVERY = "TRAINING_GUARD_CHECKPOINT_EVERY"
#: Keep this many newest valid checkpoints; older ones are pruned.
ENV_CHECKPOINT_KEEP = "TRAINING_GUARD_CHECKPOINT_KEEP"
#: Path of the newest valid checkpoint the launcher found, or unset for a fresh start.
ENV_RESUME_FROM = "TRAINING_GUARD_RESUME_FROM"
#: Step of that checkpoint (``0`` for a fresh start).
ENV_RESUME_STEP = "TRAINING_GUARD_RESUME_STEP"
#: File the program rewrites with its progress (step, metrics, time); the launcher reads it.
ENV_HEARTBEAT_FILE = "TRAINING_GUARD_HEARTBEAT_FILE"
#: When set (seconds), the program also prints heartbeat marker lines to stdout at most this
#: often; pod launchers read them from the log stream because they cannot read the file.
ENV_HEARTBEAT_LOG_INTERVAL = "TRAINING_GUARD_HEARTBEAT_LOG_INTERVAL"
#: JSON ``{"datasets": {repo_id: sha}, "models": {repo_id: sha}}``: the exact revisions pre-flight
#: resolved. The program loads these SHAs, never the moving branch or tag names.
ENV_PINS = "TRAINING_GUARD_PINS"
#: Directory where the program writes its final artifact (the model).
ENV_OUTPUT_DIR = "TRAINING_GUARD_OUTPUT_DIR"
#: When set to N > 0, this is a smoke run: train N steps on a small sample, write nothing durable.
ENV_SMOKE_STEPS = "TRAINING_GUARD_SMOKE_STEPS"
#: Which attempt of the Airflow task this is (1-based), for logs.
ENV_ATTEMPT = "TRAINING_GUARD_ATTEMPT"
#: Multi-node jobs (the Job operator): how many ranks the job has, and this pod's rank (its completion index).
ENV_NUM_RANKS = "TRAINING_GUARD_NUM_RANKS"
ENV_RANK = "TRAINING_GUARD_RANK"

#: Clean success.
EXIT_OK = 0
#: "Preempted, resumable": the program saved a checkpoint after SIGTERM and exited on purpose.
#: (75 is ``EX_TEMPFAIL`` from sysexits.h: a temporary failure, try again.)
EXIT_PREEMPTED = 75
#: "Bad configuration or input": retrying cannot help. (78 is ``EX_CONFIG`` from sysexits.h.)
EXIT_CONFIG_ERROR = 78


@dataclass(frozen=True)
class TrainingEnvironment:
    """What a launcher told the training program, parsed from the environment.

    :param partition_key: the partition this attempt trains on.
    :param checkpoint_dir: where this partition's checkpoints live.
    :param checkpoint_every: save every this many steps.
    :param checkpoint_keep: keep this many newest valid checkpoints.
    :param resume_from: newest valid checkpoint found by the launcher, if any.
    :param resume_step: step of ``resume_from`` (0 for a fresh start).
    :param heartbeat_file: where progress is written, if the launcher watches it.
    :param output_dir: where the final artifact goes.
    :param smoke_steps: number of steps of a smoke run, or 0 for the real run.
    :param attempt: 1-based attempt number.
    :param heartbeat_log_interval: seconds between heartbeat marker lines on stdout, or None.
    :param pins: ``{"datasets": {repo_id: sha}, "models": {repo_id: sha}}`` resolved at pre-flight.
    """

    partition_key: str
    checkpoint_dir: Path
    checkpoint_every: int = 100
    checkpoint_keep: int = 3
    resume_from: Path | None = None
    resume_step: int = 0
    heartbeat_file: Path | None = None
    output_dir: Path | None = None
    smoke_steps: int = 0
    attempt: int = 1
    heartbeat_log_interval: float | None = None
    pins: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    @property
    def is_smoke_run(self) -> bool:
        return self.smoke_steps > 0

    def heartbeat(self) -> Heartbeat:
        """The heartbeat writer this launcher asked for (file, log lines, or both).

        In a multi-rank job (``RANK`` and ``WORLD_SIZE`` set by ``torchrun``) each rank writes its
        own file (``heartbeat.rank-00001.json``) with its rank and node, for stall and straggler
        detection.
        """
        try:
            rank = int(os.environ.get("RANK", "0") or 0)
            world_size = int(os.environ.get("WORLD_SIZE", "1") or 1)
        except ValueError:
            rank, world_size = 0, 1
        return Heartbeat.for_rank(
            self.heartbeat_file, max(rank, 0), world_size, log_interval=self.heartbeat_log_interval
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> TrainingEnvironment:
        """Read the contract from ``environ`` (default: ``os.environ``).

        Raises :class:`ValueError` naming the variable when a required one is missing or a
        number does not parse; a training program should exit with :data:`EXIT_CONFIG_ERROR`.
        """
        env = os.environ if environ is None else environ

        def required(name: str) -> str:
            value = env.get(name, "")
            if not value:
                raise ValueError(
                    f"environment variable {name} is not set; run this program through a "
                    "training-guard launcher (LocalTrainingOperator or "
                    "GuardedTrainingPodOperator), or set it by hand for a local try"
                )
            return value

        def integer(name: str, default: int) -> int:
            raw = env.get(name, "")
            if raw == "":
                return default
            try:
                value = int(raw)
            except ValueError:
                raise ValueError(f"environment variable {name}={raw!r} is not an integer") from None
            if value < 0:
                raise ValueError(f"environment variable {name}={raw!r} must be >= 0")
            return value

        def optional_seconds(name: str) -> float | None:
            raw = env.get(name, "")
            if raw == "":
                return None
            try:
                value = float(raw)
            except ValueError:
                raise ValueError(f"environment variable {name}={raw!r} is not a number of seconds") from None
            if not value >= 0:
                raise ValueError(f"environment variable {name}={raw!r} must be >= 0")
            return value

        def pins(name: str) -> dict[str, dict[str, str]]:
            raw = env.get(name, "")
            if raw == "":
                return {}
            try:
                value = json.loads(raw)
                return {
                    kind: {str(k): str(v) for k, v in dict(value.get(kind) or {}).items()}
                    for kind in ("datasets", "models")
                }
            except (ValueError, TypeError, AttributeError):
                raise ValueError(
                    f"environment variable {name} is not JSON of the form "
                    '{"datasets": {"org/name": "<sha>"}, "models": {...}}'
                ) from None

        def optional_path(name: str) -> Path | None:
            raw = env.get(name, "")
            return Path(raw) if raw else None

        return cls(
            partition_key=required(ENV_PARTITION_KEY),
            checkpoint_dir=Path(required(ENV_CHECKPOINT_DIR)),
            checkpoint_every=max(1, integer(ENV_CHECKPOINT_EVERY, 100)),
            checkpoint_keep=max(1, integer(ENV_CHECKPOINT_KEEP, 3)),
            resume_from=optional_path(ENV_RESUME_FROM),
            resume_step=integer(ENV_RESUME_STEP, 0),
            heartbeat_file=optional_path(ENV_HEARTBEAT_FILE),
            output_dir=optional_path(ENV_OUTPUT_DIR),
            smoke_steps=integer(ENV_SMOKE_STEPS, 0),
            attempt=max(1, integer(ENV_ATTEMPT, 1)),
            heartbeat_log_interval=optional_seconds(ENV_HEARTBEAT_LOG_INTERVAL),
            pins=pins(ENV_PINS),
        )

    def to_env(self) -> dict[str, str]:
        """The environment variables a launcher sets for this configuration."""
        env = {
            ENV_PARTITION_KEY: self.partition_key,
            ENV_CHECKPOINT_DIR: str(self.checkpoint_dir),
            ENV_CHECKPOINT_EVERY: str(self.checkpoint_every),
            ENV_CHECKPOINT_KEEP: str(self.checkpoint_keep),
            ENV_RESUME_STEP: str(self.resume_step),
            ENV_SMOKE_STEPS: str(self.smoke_steps),
            ENV_ATTEMPT: str(self.attempt),
        }
        if self.resume_from is not None:
            env[ENV_RESUME_FROM] = str(self.resume_from)
        if self.heartbeat_file is not None:
            env[ENV_HEARTBEAT_FILE] = str(self.heartbeat_file)
        if self.output_dir is not None:
            env[ENV_OUTPUT_DIR] = str(self.output_dir)
        if self.heartbeat_log_interval is not None:
            env[ENV_HEARTBEAT_LOG_INTERVAL] = f"{self.heartbeat_log_interval:g}"
        if self.pins:
            env[ENV_PINS] = json.dumps({k: dict(v) for k, v in self.pins.items()}, sort_keys=True)
        return env
