"""Pre-flight's pool check in Airflow 3: tasks have no database access, so pools are read over REST.

The API server is a loopback HTTP server speaking the two endpoints the hook uses
(``POST /auth/token``, ``GET /api/v2/pools/{name}``) as Airflow 3.3's simple auth manager and
public API answer them; the blocked-ORM case runs Airflow's own ``block_orm_access()`` in a child
process, as the task runner does. The end-to-end stack checks the same path against a real
api-server (tests/e2e/test_daily_retraining_e2e.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from airflow_training_guard.hooks.airflow_api import AirflowApiError, AirflowApiHook
from airflow_training_guard.operators.preflight import PreflightOperator

CONN_ID = "airflow_api_test"
PASSWORD = "s3cret-api-password"
TOKEN = "jwt-for-admin"


@pytest.fixture
def api(httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch) -> HTTPServer:
    """An API server with pool ``training_sla``; it requires the token issued for admin/PASSWORD."""

    def token(request: Request) -> Response:
        body = json.loads(request.data or b"{}")
        if body != {"username": "admin", "password": PASSWORD}:
            return Response(json.dumps({"detail": "Invalid credentials"}), status=401)
        return Response(json.dumps({"access_token": TOKEN}), status=201, content_type="application/json")

    def pool(request: Request) -> Response:
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return Response(json.dumps({"detail": "Not authenticated"}), status=401)
        name = request.path.rsplit("/", 1)[-1]
        if name == "training_sla":
            return Response(json.dumps({"name": name, "slots": 4}), content_type="application/json")
        return Response(json.dumps({"detail": f"The Pool with name: `{name}` was not found"}), status=404)

    httpserver.expect_request("/auth/token", method="POST").respond_with_handler(token)
    httpserver.expect_request("/api/v2/pools/training_sla", method="GET").respond_with_handler(pool)
    httpserver.expect_request("/api/v2/pools/training_missing", method="GET").respond_with_handler(pool)
    conn = {
        "conn_type": "http",
        "host": "127.0.0.1",
        "port": httpserver.port,
        "login": "admin",
        "password": PASSWORD,
    }
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(conn))
    return httpserver


def test_hook_logs_in_and_reads_existing_and_missing_pools(api: HTTPServer) -> None:
    hook = AirflowApiHook(CONN_ID)
    assert hook.base_url == f"http://127.0.0.1:{api.port}"
    assert hook.pool_exists("training_sla") is True
    assert hook.pool_exists("training_missing") is False


def test_wrong_password_is_reported_without_the_password(
    api: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn = {
        "conn_type": "http",
        "host": "127.0.0.1",
        "port": api.port,
        "login": "admin",
        "password": "wrong-pw",
    }
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(conn))
    with pytest.raises(
        AirflowApiError, match=r"refused the login of 'admin' .*HTTP 401.*check the user"
    ) as err:
        AirflowApiHook(CONN_ID).pool_exists("training_sla")
    assert "wrong-pw" not in str(err.value)


def test_unreachable_api_server_is_an_error_not_a_missing_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{CONN_ID.upper()}",
        json.dumps({"conn_type": "http", "host": "127.0.0.1", "port": port}),
    )
    with pytest.raises(AirflowApiError, match=rf"Airflow API at http://127.0.0.1:{port} is unreachable"):
        AirflowApiHook(CONN_ID, timeout=2).pool_exists("training_sla")


def test_preflight_with_api_connection_passes_existing_pool_and_fails_missing_one(api: HTTPServer) -> None:
    op = PreflightOperator(
        task_id="preflight", pools=["training_sla", "training_missing"], api_conn_id=CONN_ID, hub_conn_id=None
    )
    report = op.run_preflight()
    assert [(r.name, r.passed) for r in report.results] == [
        ("pool training_sla", True),
        ("pool training_missing", False),
    ]
    assert "pool 'training_missing' does not exist" in report.failure_message()
    assert PASSWORD not in report.format() + report.failure_message()


def test_in_a_task_runner_without_database_access_the_pool_check_fails_naming_api_conn_id(tmp_path) -> None:
    """What a real Airflow 3 worker does: the ORM is blocked; the check must fail with the fix, not pass."""
    script = textwrap.dedent(
        """
        from airflow.sdk.execution_time.supervisor import block_orm_access
        block_orm_access()
        from airflow_training_guard.operators.preflight import PreflightOperator
        report = PreflightOperator(task_id="preflight", pools=["training_sla"], hub_conn_id=None).run_preflight()
        print(report.failure_message())
        """
    )
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120, check=True
    )
    assert (
        "1. pool training_sla: pools cannot be read from a task in Airflow 3 without the REST API"
        in proc.stdout
    )
    assert "Direct database access via the ORM is not allowed" in proc.stdout
    assert "fix: set api_conn_id to a connection to the Airflow API server" in proc.stdout
