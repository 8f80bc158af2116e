"""Provider metadata for Airflow's ProvidersManager.

Registered through the ``apache_airflow_provider`` entry point in ``pyproject.toml``. Airflow
validates the returned dict against ``airflow/provider_info.schema.json``; a test does the same and
checks that every module listed here imports.
"""

from __future__ import annotations

from typing import Any

from airflow_training_guard import __version__
from airflow_training_guard.settings import (
    CONFIG_SECTION,
    OPTION_BACKFILL_POLICY_ENABLED,
    OPTION_BACKFILL_POOL,
    OPTION_BACKFILL_POOL_SLOTS,
    OPTION_BACKFILL_PRIORITY_WEIGHT,
    OPTION_FORBID_UNPINNED_IMAGES,
    OPTION_GPU_NODE_LABEL_SELECTOR,
    OPTION_SLA_POOL,
    OPTION_SLA_POOL_SLOTS,
)

INTEGRATION = "Training Guard"


def _option(
    description: str, *, type_: str, default: str, example: str | None, version_added: str = "0.1.0"
) -> dict[str, Any]:
    """One option as ``provider.yaml``'s ``config`` schema wants it (every value a string)."""
    return {
        "description": description,
        "version_added": version_added,
        "type": type_,
        "example": example,
        "default": default,
    }


#: The ``[training_guard]`` section: Airflow loads these defaults, so ``airflow config get-value
#: training_guard <option>`` and ``airflow config list`` know every option (docs/configuration.md).
#: The defaults equal the code's fallbacks; a test reads the code and checks both.
CONFIG: dict[str, Any] = {
    CONFIG_SECTION: {
        "description": (
            "Settings of the airflow-training-guard provider, for the whole deployment. Set them for "
            "the scheduler, the DAG processor, the workers and the triggerer alike (airflow.cfg, or "
            "AIRFLOW__TRAINING_GUARD__<OPTION> environment variables).\n"
        ),
        "options": {
            OPTION_FORBID_UNPINNED_IMAGES: _option(
                "Refuse allow_unpinned_image=True on every training operator when the DAG is parsed, "
                "so no DAG of this deployment can train on a moving image tag.\n",
                type_="boolean",
                default="False",
                example="True",
            ),
            OPTION_GPU_NODE_LABEL_SELECTOR: _option(
                "Kubernetes label selector of the GPU nodes that the inventory hook, the GPU fit check "
                "of pre-flight and the capacity report look at, when a task passes none. Empty: every "
                "node.\n",
                type_="string",
                default="",
                example="nvidia.com/gpu.present=true",
            ),
            OPTION_BACKFILL_POLICY_ENABLED: _option(
                "Turn on the cluster policy that puts every task instance of a backfill run (of any "
                "DAG) into backfill_pool at backfill_priority_weight. Enable it only after the pools "
                "exist (airflow training-guard pools sync); restart the scheduler after changing it.\n",
                type_="boolean",
                default="False",
                example="True",
            ),
            OPTION_BACKFILL_POOL: _option(
                "The pool of backfill runs: the cluster policy routes backfill task instances to it, "
                "and airflow training-guard pools sync creates it. Must differ from sla_pool.\n",
                type_="string",
                default="training_backfill",
                example="training_backfill",
            ),
            OPTION_BACKFILL_PRIORITY_WEIGHT: _option(
                "The priority weight the cluster policy gives backfill task instances (1 is the lowest, "
                "so the daily runs go first).\n",
                type_="integer",
                default="1",
                example="1",
            ),
            OPTION_BACKFILL_POOL_SLOTS: _option(
                "Slots of backfill_pool that airflow training-guard pools sync creates it with or grows "
                "it to; it never shrinks a pool with more slots unless run with --force.\n",
                type_="integer",
                default="2",
                example="4",
            ),
            OPTION_SLA_POOL: _option(
                "The pool of the daily, SLA-bound training runs that airflow training-guard pools sync "
                "creates. The backfill factory's DAGs default to training_sla; pass sla_pool= to the "
                "factory when you change it. Must differ from backfill_pool.\n",
                type_="string",
                default="training_sla",
                example="training_sla",
            ),
            OPTION_SLA_POOL_SLOTS: _option(
                "Slots of sla_pool that airflow training-guard pools sync creates it with or grows it "
                "to; it never shrinks a pool with more slots unless run with --force.\n",
                type_="integer",
                default="4",
                example="8",
            ),
        },
    }
}


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
        "config": CONFIG,
        "connection-types": [
            {
                "hook-class-name": "airflow_training_guard.hooks.hub.HubHook",
                "connection-type": "huggingface_hub",
            }
        ],
    }
