"""Policies of the guard: durations, time limits, checkpoint layout and named profiles.

Everything here validates user configuration when a DAG is parsed and raises
:class:`~airflow_training_guard.exceptions.GuardConfigError` (a ``ValueError``) with a message that
names the bad value and the fix, so mistakes surface in the DAG import errors instead of at 3 a.m.

- :mod:`.durations`: :func:`parse_duration` / :func:`format_duration` (``"1h30m"``, ``"PT2H"``, seconds).
- :mod:`.timeouts`: :class:`TimeoutPolicy`, hard deadline = expected runtime + buffer (30% default),
  startup timeout and stall detection.
- :mod:`.checkpoints`: :class:`CheckpointPolicy`, one private directory per (DAG, task,
  partition_key), injectively encoded and always under the root.
- :mod:`.profiles`: the ``"safe"`` (default) and ``"fast"`` presets.
- :mod:`.images`: OCI image references and digest pinning (``require_pinned``).
- :mod:`.gpus`: GPU node shapes, the fit check, fragmentation and the packing report.
- :mod:`.diagnostics`: classify a failed pod (OOMKilled, Unschedulable, ...) into a reason, a
  hint and whether a retry can help.

The last three are imported from their modules (``airflow_training_guard.policies.images`` ...).

Pure Python, standard library only, no Airflow import: the package is tested without Airflow and
launchers translate these policies into their own settings. See ``docs/timeouts-and-profiles.md``.
"""

from __future__ import annotations

from airflow_training_guard.policies.checkpoints import TEMPLATE_FIELDS, CheckpointPolicy
from airflow_training_guard.policies.durations import DurationLike, format_duration, parse_duration
from airflow_training_guard.policies.paths import MAX_SEGMENT_LENGTH, path_segment
from airflow_training_guard.policies.profiles import (
    DEFAULT_PROFILE,
    FAST,
    ON_CORRUPT_CHOICES,
    PROFILES,
    SAFE,
    GuardProfile,
    get_profile,
)
from airflow_training_guard.policies.timeouts import DEFAULT_BUFFER, MAX_BUFFER, TimeoutPolicy

__all__ = [
    "DEFAULT_BUFFER",
    "DEFAULT_PROFILE",
    "FAST",
    "MAX_BUFFER",
    "MAX_SEGMENT_LENGTH",
    "ON_CORRUPT_CHOICES",
    "PROFILES",
    "SAFE",
    "TEMPLATE_FIELDS",
    "CheckpointPolicy",
    "DurationLike",
    "GuardProfile",
    "TimeoutPolicy",
    "format_duration",
    "get_profile",
    "parse_duration",
    "path_segment",
]
