"""No secret in anything a run writes, on a real Airflow deployment (issue 14).

A private stack (``tests/e2e/airflow_stack.py``) whose only DAG uses one recognisable Hub token,
kept in an Airflow connection (``AIRFLOW_CONN_HUB_SECRETS``; also in ``HF_TOKEN``, which nothing
should read), three ways:

- ``train``: ``LocalTrainingOperator`` with ``--hub-token {{ conn.hub_secrets.password }}`` on the
  command line; the program prints its arguments (so the token reaches the task log as output);
  ``train_fails`` does the same and exits 3, so its last output lines go into the exception text;
- ``preflight``: ``PreflightOperator`` reads the connection and asks a loopback Hub for a dataset;
- ``promote``: ``PromoteModelOperator`` on ``hf://`` with the endpoint and token of the same
  connection (``hub_conn_id``, issue 19).

The loopback Hub answers every API request with HTTP 400 and an error text that quotes the request's
``Authorization`` header (``Bearer hf_...``), so pre-flight and promotion fail with the server's
text in their exceptions. Then every file under the stack's ``AIRFLOW_HOME`` (task and process logs,
the SQLite metadata database with XCom and rendered_task_instance_fields, run manifests, models)
and what the REST API serves (task logs, XCom, rendered fields) is searched for the token.

Why on a real stack: ``dag.test()`` console output applies no masking at all (TESTING-NOTES), and
only a deployment has the supervisor that masks task logs and the database that stores XCom and
rendered fields.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import textwrap
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.airflow_stack import REPO_ROOT, AirflowStack
from tests.integration.hub.hub_server import LocalHub

pytestmark = pytest.mark.e2e

DAG_ID = "secrets_probe"
RUN_TIMEOUT = 300
TASK_IDS = ("train", "train_fails", "preflight", "promote")
PROBE_DAG = textwrap.dedent(
    '''
    """Uses one Hub token three ways; tests/e2e/test_secrets_e2e.py searches what the run writes."""
    from __future__ import annotations

    import datetime as dt
    import os
    import sys

    from airflow.sdk import DAG

    from airflow_training_guard.operators.local import LocalTrainingOperator
    from airflow_training_guard.operators.preflight import PreflightOperator
    from airflow_training_guard.operators.promotion import PromoteModelOperator

    PROGRAM = (
        "import json, os, sys; print('training with arguments', sys.argv[1:]); "
        "json.dump({'accuracy': 0.9}, open(os.path.join(os.environ['TRAINING_GUARD_OUTPUT_DIR'], "
        "'metrics.json'), 'w'))"
    )

    with DAG(
        "secrets_probe",
        schedule=None,
        start_date=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
        default_args={"retries": 0},
    ):
        train = LocalTrainingOperator(
            task_id="train",
            command=[sys.executable, "-c", PROGRAM, "--hub-token", "{{ conn.hub_secrets.password }}"],
            partition_key="2026-11-01",
            expected_runtime="2m",
            poll_interval="0.2s",
            watch_heartbeat=False,
            smoke_run_steps=0,
            retries=0,
        )
        LocalTrainingOperator(
            task_id="train_fails",
            command=[
                sys.executable,
                "-c",
                "import sys; print('failing with arguments', sys.argv[1:]); sys.exit(3)",
                "--hub-token",
                "{{ conn.hub_secrets.password }}",
            ],
            partition_key="2026-11-01",
            expected_runtime="2m",
            poll_interval="0.2s",
            watch_heartbeat=False,
            smoke_run_steps=0,
            retries=0,
        )
        PreflightOperator(task_id="preflight", datasets=["org/data"], hub_conn_id="hub_secrets")
        promote = PromoteModelOperator(
            task_id="promote",
            model_name="org/ranker",
            registry="hf://",
            hub_conn_id="hub_secrets",
            manifest_path="{{ ti.xcom_pull(task_ids='train')['output_dir'] }}",
            metric="accuracy",
            max_attempts=1,
        )
        train >> promote
    '''
)


@dataclass
class SecretsRun:
    stack: AirflowStack
    hub: LocalHub
    token: str
    run_id: str
    states: dict[str, str]


@pytest.fixture(scope="module")
def secrets_run() -> Iterator[SecretsRun]:
    token = f"hf_e2eSecret{uuid.uuid4().hex}"
    hub = LocalHub(token=token).start()
    hub.add("org/ranker", files={".gitattributes": b""})
    hub.add("org/data", repo_type="dataset", files=["data/train.parquet"])
    hub.echo_authorization = True
    hub.fail_next(1000, 400, path_contains="/api/")
    home = Path(tempfile.mkdtemp(prefix="training-guard-secrets-e2e-"))
    dags = home / "dags"
    dags.mkdir()
    (dags / f"{DAG_ID}.py").write_text(PROBE_DAG)
    stack = AirflowStack(
        home / "home",
        extra_env={
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW_CONN_HUB_SECRETS": json.dumps(
                {"conn_type": "huggingface_hub", "host": hub.url, "password": token, "extra": {"retries": 0}}
            ),
            "HF_TOKEN": token,
            "HF_HUB_DISABLE_TELEMETRY": "1",
            # On a loaded 2-core machine the execution API answers slowly: wait for it, run fewer at once.
            "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": "120",
            "AIRFLOW__CORE__PARALLELISM": "2",
            "SECRETS_PROBE_HUB_URL": hub.url,
            # The processes run this checkout's package, not whatever the venv's editable install points at.
            "PYTHONPATH": str(REPO_ROOT),
        },
    )
    try:
        stack.start(timeout=420, wait_for_dags=(DAG_ID,))  # generous: the CI machine may be loaded
        stack.api("PATCH", f"/dags/{DAG_ID}", json={"is_paused": False})
        run = stack.api("POST", f"/dags/{DAG_ID}/dagRuns", json={"logical_date": None})
        run_id = run["dag_run_id"]
        deadline = time.monotonic() + RUN_TIMEOUT
        while time.monotonic() < deadline:
            try:
                run = stack.api("GET", f"/dags/{DAG_ID}/dagRuns/{run_id}")
            except httpx.TransportError:  # a loaded CI machine: the api-server answers late, not never
                continue
            if run["state"] in ("success", "failed"):
                break
            time.sleep(2)
        else:
            raise AssertionError(f"run {run_id} not finished in {RUN_TIMEOUT}s\n{stack.logs(40)}")
        tis = stack.api("GET", f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances")["task_instances"]
        states = {ti["task_id"]: ti["state"] for ti in tis}
        yield SecretsRun(stack, hub, token, run_id, states)
    finally:
        stack.stop()
        hub.stop()
        if os.environ.get("TRAINING_GUARD_E2E_KEEP") != "1":
            shutil.rmtree(home, ignore_errors=True)


def _ti_path(run: SecretsRun, task_id: str) -> str:
    return f"/dags/{DAG_ID}/dagRuns/{run.run_id}/taskInstances/{task_id}"


def _task_log(run: SecretsRun, task_id: str) -> str:
    body = run.stack.api("GET", f"{_ti_path(run, task_id)}/logs/1")
    return json.dumps(body["content"])


def test_the_run_used_the_token_everywhere_the_test_searches(secrets_run: SecretsRun) -> None:
    """The searches below mean something only if the token was really used: each channel shows ***."""
    run = secrets_run
    expected = {"train": "success", "train_fails": "failed", "preflight": "failed", "promote": "failed"}
    assert run.states == expected, f"{run.states}\n{run.stack.task_logs()}"
    assert "training with arguments ['--hub-token', '***']" in _task_log(run, "train")
    failed = _task_log(run, "train_fails")
    assert "Last output lines" in failed and "failing with arguments ['--hub-token', '***']" in failed
    for task_id in ("preflight", "promote"):
        log = _task_log(run, task_id)
        assert "request had Authorization: ***" in log, log[-3000:]
    assert any("/api/models/org/ranker" in path for path in run.hub.requests)
    assert any("/api/datasets/org/data" in path for path in run.hub.requests)


def test_no_file_the_deployment_wrote_contains_the_token(secrets_run: SecretsRun) -> None:
    """Regression: the run manifest and XCom held the command-line token in clear, and the Hub's
    echoed ``Bearer hf_...`` reached the promotion task log and the exception texts."""
    run = secrets_run
    needle = run.token.encode()
    searched: list[str] = []
    leaks: list[str] = []
    for path in sorted(run.stack.home.rglob("*")):
        if not path.is_file():
            continue
        searched.append(str(path.relative_to(run.stack.home)))
        if needle in path.read_bytes():
            leaks.append(searched[-1])
    assert leaks == [], f"the token is in {leaks}"
    # What was searched: task logs of every task, the metadata database, the manifest.
    for task_id in TASK_IDS:
        assert any(f"task_id={task_id}" in name for name in searched), searched
    assert "airflow.db" in searched
    assert any(name.endswith("run-manifest.json") for name in searched), searched


def test_xcom_rendered_fields_and_logs_served_by_the_api_hold_no_token(secrets_run: SecretsRun) -> None:
    run = secrets_run
    served: dict[str, Any] = {}
    for task_id in TASK_IDS:
        ti = run.stack.api("GET", _ti_path(run, task_id))
        served[f"{task_id} rendered_fields"] = ti["rendered_fields"]
        served[f"{task_id} log"] = _task_log(run, task_id)
    xcom = run.stack.api(
        "GET", f"{_ti_path(run, 'train')}/xcomEntries/return_value", params={"deserialize": "true"}
    )
    served["train xcom"] = xcom["value"]
    text = json.dumps(served)
    assert run.token not in text
    manifest = json.loads(xcom["value"]) if isinstance(xcom["value"], str) else xcom["value"]
    assert manifest["manifest"]["params"]["command"][-2:] == ["--hub-token", "***"]
    assert served["train rendered_fields"]["command"][-1] == "***"
