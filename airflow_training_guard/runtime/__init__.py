"""What a training program imports to follow the training-guard contract (standard library only).

This package runs inside training containers, which have neither Airflow nor any other
dependency of the provider: every module here uses the standard library alone.

- :class:`TrainingEnvironment` reads what the launcher passed in environment variables
  (partition, checkpoint directory, resume point, heartbeat file, smoke run); the exit codes
  :data:`EXIT_OK`, :data:`EXIT_PREEMPTED` (75) and :data:`EXIT_CONFIG_ERROR` (78) tell the launcher
  whether to succeed, retry and resume, or fail without retrying.
- :class:`Checkpointer` saves atomic, checksummed checkpoints and finds the newest valid one, so a
  job killed mid-save never resumes from a torn checkpoint or from step 0.
- :class:`Heartbeat` writes the progress file the launcher watches to detect hung jobs.
- :class:`PreemptionGuard` and :func:`exit_preempted` turn SIGTERM into "save, then exit 75".

The full contract is in ``docs/checkpoint-contract.md``.
"""

from __future__ import annotations

from airflow_training_guard.exceptions import CheckpointError, NoValidCheckpointError
from airflow_training_guard.runtime.checkpoint import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_FORMAT_VERSION,
    Checkpoint,
    Checkpointer,
    CheckpointScan,
    UnknownCheckpointFileError,
)
from airflow_training_guard.runtime.contract import (
    ENV_ATTEMPT,
    ENV_CHECKPOINT_DIR,
    ENV_CHECKPOINT_EVERY,
    ENV_CHECKPOINT_KEEP,
    ENV_HEARTBEAT_FILE,
    ENV_HEARTBEAT_LOG_INTERVAL,
    ENV_OUTPUT_DIR,
    ENV_PARTITION_KEY,
    ENV_PINS,
    ENV_RESUME_FROM,
    ENV_RESUME_STEP,
    ENV_SMOKE_STEPS,
    EXIT_CONFIG_ERROR,
    EXIT_OK,
    EXIT_PREEMPTED,
    TrainingEnvironment,
)
from airflow_training_guard.runtime.heartbeat import (
    COMPUTE_SECONDS_METRIC,
    ENV_NODE_NAME,
    HEARTBEAT_FORMAT_VERSION,
    HEARTBEAT_LINE_PREFIX,
    Heartbeat,
    HeartbeatRecord,
    format_heartbeat_line,
    last_heartbeat_in,
    parse_heartbeat_line,
    rank_heartbeat_path,
    read_heartbeat,
    read_rank_heartbeats,
    slowest_rank,
)
from airflow_training_guard.runtime.preemption import PreemptionGuard, exit_preempted

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_FORMAT_VERSION",
    "COMPUTE_SECONDS_METRIC",
    "ENV_ATTEMPT",
    "ENV_CHECKPOINT_DIR",
    "ENV_CHECKPOINT_EVERY",
    "ENV_CHECKPOINT_KEEP",
    "ENV_HEARTBEAT_FILE",
    "ENV_HEARTBEAT_LOG_INTERVAL",
    "ENV_NODE_NAME",
    "ENV_OUTPUT_DIR",
    "ENV_PARTITION_KEY",
    "ENV_PINS",
    "ENV_RESUME_FROM",
    "ENV_RESUME_STEP",
    "ENV_SMOKE_STEPS",
    "EXIT_CONFIG_ERROR",
    "EXIT_OK",
    "EXIT_PREEMPTED",
    "HEARTBEAT_FORMAT_VERSION",
    "HEARTBEAT_LINE_PREFIX",
    "Checkpoint",
    "CheckpointError",
    "CheckpointScan",
    "Checkpointer",
    "Heartbeat",
    "HeartbeatRecord",
    "NoValidCheckpointError",
    "PreemptionGuard",
    "TrainingEnvironment",
    "UnknownCheckpointFileError",
    "exit_preempted",
    "format_heartbeat_line",
    "last_heartbeat_in",
    "parse_heartbeat_line",
    "rank_heartbeat_path",
    "read_heartbeat",
    "read_rank_heartbeats",
    "slowest_rank",
]
