"""Provider metadata for Airflow's ProvidersManager.

Registered through the ``apache_airflow_provider`` entry point in ``pyproject.toml``. Airflow
validates the returned dict against ``airflow/provider_info.schema.json``; a test does the same and
checks that every module listed here imports.
"""

from __future__ import annotations

from typing import Any

from airflow_training_guard import __version__

INTEGRATION = "Training Guard"


def get_provider_info() -> dict[str, Any]:
    """Describe this provider: its modules, versions and integrations."""
    return {
        "package-name": "airflow-training-guard",
        "name": "Training Guard",
        "description": (
            "Guards for ML training pipelines: digest-pinned images, GPU shapes that fit, "
            "checkpoint/resume, timeout and stall policies, partition completeness, exactly-once "
            "backfills and atomic model promotion."
        ),
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": INTEGRATION,
                "external-doc-url": (
                    "https://github.com/airflow-training-guard/airflow-training-guard/tree/main/docs"
                ),
                "tags": ["software"],
            }
        ],
        "operators": [
            {
                "integration-name": INTEGRATION,
                "python-modules": [
                    "airflow_training_guard.operators.local",
                    "airflow_training_guard.operators.training_pod",
                    "airflow_training_guard.operators.training_job",
                    "airflow_training_guard.operators.promotion",
                    "airflow_training_guard.operators.preflight",
                ],
            }
        ],
        "sensors": [
            {
                "integration-name": INTEGRATION,
                "python-modules": [
                    "airflow_training_guard.sensors.completeness",
                    "airflow_training_guard.sensors.drift",
                ],
            }
        ],
        "triggers": [
            {
                "integration-name": INTEGRATION,
                "python-modules": [
                    "airflow_training_guard.triggers.completeness",
                    "airflow_training_guard.triggers.training_pod",
                ],
            }
        ],
        "hooks": [
            {
                "integration-name": INTEGRATION,
                "python-modules": [
                    "airflow_training_guard.hooks.kubernetes_inventory",
                    "airflow_training_guard.hooks.hub",
                    "airflow_training_guard.hooks.oci_registry",
                    "airflow_training_guard.hooks.airflow_api",
                ],
            }
        ],
        "cli": ["airflow_training_guard.cli.definition.get_training_guard_cli_commands"],
        "connection-types": [
            {
                "hook-class-name": "airflow_training_guard.hooks.hub.HubHook",
                "connection-type": "huggingface_hub",
            }
        ],
    }
