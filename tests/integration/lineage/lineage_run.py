"""Run a real train -> promote DAG with dag.test() in a fresh interpreter (OpenLineage configured by env).

Used by test_openlineage_events.py: the OpenLineage provider reads its transport once per process,
so the run gets its own process with ``AIRFLOW__OPENLINEAGE__TRANSPORT`` set to a file transport.

argv: dag_id, data_dir, day_dir, data_pin, checkpoint_root, models_dir, registry_url
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pendulum
from airflow.dag_processing.bundles.manager import DagBundlesManager
from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db
from airflow.sdk import DAG

from airflow_training_guard.operators.local import LocalTrainingOperator
from airflow_training_guard.operators.promotion import PromoteModelOperator

REPO = Path(__file__).resolve().parents[3]
BASE_MODEL = "acme/click-base"
BASE_MODEL_SHA = "0123456789abcdef0123456789abcdef01234567"


def main() -> None:
    dag_id, data_dir, day_dir, data_pin, checkpoint_root, models_dir, registry_url = sys.argv[1:8]
    with DAG(dag_id=dag_id, schedule=None, start_date=pendulum.datetime(2026, 11, 1, tz="UTC")) as dag:
        train = LocalTrainingOperator(
            task_id="train",
            command=[
                sys.executable,
                str(REPO / "examples" / "training" / "train.py"),
                "--data-dir",
                data_dir,
                "--steps",
                "40",
            ],
            partition_key="2026-11-01",
            expected_runtime="2m",
            poll_interval="0.2s",
            checkpoint_root=checkpoint_root,
            output_dir=models_dir,
            pins={"datasets": {day_dir: data_pin}, "models": {BASE_MODEL: BASE_MODEL_SHA}},
        )
        promote = PromoteModelOperator(
            task_id="promote",
            model_name="click-model",
            registry=registry_url,
            manifest_path="{{ ti.xcom_pull(task_ids='train')['manifest_path'] }}",
            metric="accuracy",
        )
        train >> promote
    DagBundlesManager().sync_bundles_to_db()
    bag = DagBag(dag_folder=os.devnull, collect_dags=False)
    bag.bag_dag(dag)
    sync_bag_to_db(bag, "dags-folder", None)
    dag.test(logical_date=pendulum.datetime(2026, 11, 2, tz="UTC"))


if __name__ == "__main__":
    main()
