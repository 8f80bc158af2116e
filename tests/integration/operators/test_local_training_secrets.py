"""LocalTrainingOperator records no secret: a connection token on the command line stays out of
the run manifest and XCom (real DAG run with dag.test(), real Airflow connection)."""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path

import pendulum
import pytest

from tests.helpers import xcom_value

PROGRAM = "import sys; print('training with', len(sys.argv), 'args')"


def test_connection_token_on_the_command_line_is_masked_in_manifest_and_xcom(
    run_dag, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression (issue 14): ``--hub-token {{ conn.hub.password }}`` showed as *** in the task log
    but was stored in clear in run-manifest.json and in the task's XCom return value."""
    from airflow.sdk import DAG

    from airflow_training_guard.operators.local import LocalTrainingOperator

    token = f"hf_secretlocal{uuid.uuid4().hex}"
    monkeypatch.setenv(
        "AIRFLOW_CONN_HUB_SECRETS_TEST",
        json.dumps({"conn_type": "huggingface_hub", "host": "https://hub.example", "password": token}),
    )
    output = tmp_path / "models"
    with DAG(
        dag_id="tg_local_secrets", schedule=None, start_date=pendulum.datetime(2026, 11, 1, tz="UTC")
    ) as dag:
        LocalTrainingOperator(
            task_id="train",
            command=[
                sys.executable,
                "-c",
                PROGRAM,
                "--hub-token",
                "{{ conn.hub_secrets_test.password }}",
            ],
            partition_key="2026-11-01",
            expected_runtime="1m",
            poll_interval="0.2s",
            watch_heartbeat=False,
            smoke_run_steps=0,
            checkpoint_root=str(tmp_path / "ckpt"),
            output_dir=str(output),
        )
    assert run_dag(dag, logical_date=pendulum.datetime(2026, 11, 2, tz="UTC")) == {"train": "success"}

    manifest_text = (output / "run-manifest.json").read_text()
    assert token not in manifest_text
    assert json.loads(manifest_text)["params"]["command"][-2:] == ["--hub-token", "***"]
    result = xcom_value("tg_local_secrets", "train")
    assert token not in json.dumps(result)
    assert result["manifest"]["params"]["command"][-1] == "***"
