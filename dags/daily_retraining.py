"""Daily retraining of the example click model, on the embedded default launcher.

Every day at 02:00 UTC: wait until all 24 of yesterday's hourly partitions are present and
finalized, train on them with the local launcher (checkpoint/resume, deadline and stall
detection), evaluate the model and refuse one whose accuracy is below the bar, then promote it
with a compare-and-swap on the production pointer if it beats production.

Paths come from the environment so the same file runs in the demo, in tests and in docker-compose:
``TRAINING_GUARD_DATA_ROOT`` (hourly partitions), ``TRAINING_GUARD_CHECKPOINT_ROOT`` and
``TRAINING_GUARD_OUTPUT_ROOT``; each defaults to a folder under ``$AIRFLOW_HOME/training-guard``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pendulum
from airflow.sdk import DAG, task
from airflow.sdk.exceptions import AirflowFailException

from airflow_training_guard.operators.local import LocalTrainingOperator
from airflow_training_guard.operators.promotion import PromoteModelOperator
from airflow_training_guard.partitions import HoursOfDay, ObjectStorageSource
from airflow_training_guard.sensors.completeness import PartitionCompletenessSensor

EXAMPLES = Path(
    os.environ.get("TRAINING_GUARD_EXAMPLES_DIR", Path(__file__).resolve().parent.parent / "examples")
)
DATA_ROOT = os.environ.get(
    "TRAINING_GUARD_DATA_ROOT",
    str(Path(os.environ.get("AIRFLOW_HOME", "~/airflow")).expanduser() / "training-guard" / "data"),
)
MIN_ACCURACY = 0.70
# The model registry: SQL compare-and-swap on the embedded SQLite by default; set
# TRAINING_GUARD_REGISTRY_URL to postgresql+psycopg://... or hf://... in production.
REGISTRY_URL = os.environ.get(
    "TRAINING_GUARD_REGISTRY_URL",
    "sqlite:///"
    + str(Path(os.environ.get("AIRFLOW_HOME", "~/airflow")).expanduser() / "training-guard" / "registry.db"),
)

with DAG(
    dag_id="daily_retraining",
    description="Train yesterday's click model, checkpointed and time-boxed, then evaluate it",
    schedule="0 2 * * *",
    start_date=pendulum.datetime(2026, 11, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["training-guard", "example"],
    doc_md=__doc__,
) as dag:
    wait_for_partitions = PartitionCompletenessSensor(
        task_id="wait_for_partitions",
        # Yesterday's 24 hourly partitions (UTC): the same day `train` reads.
        expected=HoursOfDay("{{ macros.ds_add(ds, -1) }}", timezone="UTC"),
        # The layout examples/training/sample_data.py writes: date=YYYY-MM-DD/hour=HH/part-0.csv + _SUCCESS.
        source=ObjectStorageSource(DATA_ROOT + "/date={date}/hour={hour}"),
        poke_interval="5m",
        mode="reschedule",
        grace_period="6h",
        timeout="12h",
        doc_md=(
            "Blocks `train` until all of yesterday's hourly partitions are present and finalized "
            "(`_SUCCESS` and non-empty data); the log and the failure list the missing hours. "
            "See docs/partition-completeness.md."
        ),
    )

    train = LocalTrainingOperator(
        task_id="train",
        # Yesterday's events: the run at 02:00 on day D trains on the 24 hours of D-1.
        partition_key="{{ macros.ds_add(ds, -1) }}",
        command=[
            sys.executable,
            str(EXAMPLES / "training" / "train.py"),
            "--data-dir",
            DATA_ROOT,
            "--steps",
            "300",
        ],
        expected_runtime="10m",
        stall_after="2m",
        startup_timeout="2m",
        poll_interval="1s",
        profile="safe",
        doc_md=(
            "Runs `examples/training/train.py` as a guarded subprocess: resumes from the newest valid "
            "checkpoint on retry, killed at expected_runtime + 30% or after 2 minutes without progress."
        ),
    )

    @task(doc_md="Read the model's metrics and fail the run if accuracy is below the bar.")
    def evaluate(result: dict) -> dict:
        metrics_file = Path(result["output_dir"]) / "metrics.json"
        metrics = json.loads(metrics_file.read_text())
        if metrics["accuracy"] < MIN_ACCURACY:
            raise AirflowFailException(
                f"model for partition_key={result['partition_key']} has accuracy {metrics['accuracy']:.3f} "
                f"< {MIN_ACCURACY}; not promoting it. Metrics: {metrics_file}"
            )
        return {"partition_key": result["partition_key"], **metrics}

    promote = PromoteModelOperator(
        task_id="promote",
        model_name="click-model",
        registry=REGISTRY_URL,
        # The manifest the train task wrote next to the model: the candidate, its metrics, its provenance.
        manifest_path="{{ ti.xcom_pull(task_ids='train')['manifest_path'] }}",
        metric="accuracy",
        direction="max",
        doc_md=(
            "Compare-and-swap the production pointer to this model if it beats production on accuracy "
            "and its run manifest is complete. See docs/model-promotion.md."
        ),
    )

    wait_for_partitions >> train
    evaluate(train.output) >> promote
