"""Pre-flight: check everything a training run needs before a GPU is requested.

Pure Python, no Airflow import. :mod:`.checklist` is the model (a :class:`~.checklist.Check` runs
and returns a :class:`~.checklist.CheckResult`; :func:`~.checklist.run_checks` runs them
concurrently within a bounded time and returns a :class:`~.checklist.PreflightReport`);
:mod:`.checks` builds the individual checks; :mod:`.estimates` holds the memory and cost
estimators; :mod:`.artifacts` the Hub repository specs and errors.
"""

from __future__ import annotations

from airflow_training_guard.preflight.checklist import (
    Check,
    CheckResult,
    PreflightReport,
    run_checks,
)

__all__ = ["Check", "CheckResult", "PreflightReport", "run_checks"]
