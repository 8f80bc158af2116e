"""Exceptions of airflow-training-guard.

Bad arguments are :class:`ValueError` subclasses, raised when a DAG is parsed. Failures at run
time use Airflow's own classes in the operators: ``AirflowFailException`` when a retry cannot help,
``AirflowException`` when it may. This module has no Airflow import so pure modules can use it.
"""

from __future__ import annotations


class TrainingGuardError(Exception):
    """Base class of every error this package raises itself."""


class GuardConfigError(TrainingGuardError, ValueError):
    """A parameter is invalid. The message names the value and how to fix it."""


class CheckpointError(TrainingGuardError):
    """Checkpoints cannot be read or written; the message says which path and why."""


class NoValidCheckpointError(CheckpointError):
    """A checkpoint directory holds checkpoints, but none of them verifies."""
