"""Airflow local settings for the docker-compose stack: the training-guard backfill policy.

Importing the hook here is what makes Airflow 3.3 call it when task instances are created (an
entry point alone is not enough). It only acts with
AIRFLOW__TRAINING_GUARD__BACKFILL_POLICY_ENABLED=True, after the pools exist.
"""

from __future__ import annotations

from airflow_training_guard.backfill.policy import task_instance_mutation_hook  # noqa: F401
