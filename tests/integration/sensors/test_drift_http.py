"""ProductionDriftSensor reads the deployment through HttpHook and a real Airflow ``http``
connection (``AIRFLOW_CONN_...``), against a loopback server (issue 19).

The deployment's credentials (basic auth, or a bearer header in the connection's extra) must not
reach the task log, XCom, the rendered ``endpoint`` or an error text, even when the server echoes
the request's ``Authorization`` header back.
"""

from __future__ import annotations

import base64
import json
import logging
import traceback
from pathlib import Path

import pendulum
import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from airflow_training_guard.promotion.registry import ProductionPointer
from airflow_training_guard.promotion.sql import SqlModelRegistry
from airflow_training_guard.secrets import redact
from airflow_training_guard.sensors.drift import ProductionDriftError, ProductionDriftSensor
from tests.helpers import xcom_value

PASSWORD = "serving-pass-SECRET-42ab"
BEARER = "serving-bearer-SECRET-9f8e7d"
ENDPOINT = "/v1/models/ranker"
BASIC = "Basic " + base64.b64encode(f"svc:{PASSWORD}".encode()).decode()


@pytest.fixture
def registry_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    registry = SqlModelRegistry(url)
    observed = registry.read("ranker")
    registry.compare_and_swap("ranker", observed, ProductionPointer("ranker", 1, "cand-live", "/models/live"))
    return url


def _basic_connection(
    monkeypatch: pytest.MonkeyPatch, httpserver: HTTPServer, conn_id: str = "serving"
) -> str:
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{conn_id.upper()}",
        json.dumps(
            {
                "conn_type": "http",
                "host": "127.0.0.1",
                "port": httpserver.port,
                "schema": "http",
                "login": "svc",
                "password": PASSWORD,
            }
        ),
    )
    return conn_id


def _deployment(httpserver: HTTPServer, serving: str, *, authorization: str) -> list[Request]:
    """Answers ``{"model": {"candidate_id": serving}}`` to the right ``Authorization``; otherwise 401
    with a body that echoes the header it got, as some proxies' error pages do."""
    seen: list[Request] = []

    def handler(request: Request) -> Response:
        seen.append(request)
        if request.headers.get("Authorization") != authorization:
            echo = f"denied; request had Authorization: {request.headers.get('Authorization')}"
            return Response(echo, status=401)
        return Response(json.dumps({"model": {"candidate_id": serving}}), content_type="application/json")

    httpserver.expect_request(ENDPOINT).respond_with_handler(handler)
    return seen


def _sensor(registry_url: str, conn_id: str, **kwargs: object) -> ProductionDriftSensor:
    return ProductionDriftSensor(
        task_id="drift",
        model_name="ranker",
        registry=registry_url,
        http_conn_id=conn_id,
        endpoint=ENDPOINT,
        report_key="model.candidate_id",
        **kwargs,  # type: ignore[arg-type]
    )


def _all_text(err: BaseException) -> str:
    return "".join(traceback.format_exception(err))


def test_no_drift_through_the_http_connection_with_basic_auth(
    httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch, registry_url: str
) -> None:
    seen = _deployment(httpserver, "cand-live", authorization=BASIC)
    result = _sensor(registry_url, _basic_connection(monkeypatch, httpserver)).poke({})
    assert result.is_done
    assert result.xcom_value == {
        "field": "candidate_id",
        "production": "cand-live",
        "deployed": "cand-live",
        "version": 1,
    }
    assert [r.headers.get("Authorization") for r in seen] == [BASIC]


def test_drift_names_both_values_and_the_connection(
    httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch, registry_url: str
) -> None:
    _deployment(httpserver, "cand-old", authorization=BASIC)
    with pytest.raises(
        ProductionDriftError,
        match=r"candidate_id='cand-live', but '/v1/models/ranker' on http connection 'serving' reports "
        r"model.candidate_id='cand-old'",
    ):
        _sensor(registry_url, _basic_connection(monkeypatch, httpserver)).poke({})


def test_refused_request_says_the_status_and_leaks_no_password(
    httpserver: HTTPServer,
    monkeypatch: pytest.MonkeyPatch,
    registry_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The server echoes the Authorization header in its 401 body: HttpHook's own check would log
    that body at ERROR; the sensor checks the status itself and quotes no server text."""
    from airflow.sdk.exceptions import AirflowException

    _deployment(httpserver, "cand-live", authorization="Basic something-else")
    caplog.set_level(logging.INFO)
    with pytest.raises(
        AirflowException, match=r"HTTP 401 UNAUTHORIZED; check the endpoint and the connection"
    ) as caught:
        _sensor(registry_url, _basic_connection(monkeypatch, httpserver)).poke({})
    for secret in (PASSWORD, BASIC.split()[1]):
        assert secret not in _all_text(caught.value)
        assert secret not in caplog.text


def test_bearer_header_from_the_connection_extra_is_sent_and_masked(
    httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch, registry_url: str
) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_SERVING_BEARER",
        json.dumps(
            {
                "conn_type": "http",
                "host": f"http://127.0.0.1:{httpserver.port}",
                "extra": {"Authorization": f"Bearer {BEARER}"},
            }
        ),
    )
    seen = _deployment(httpserver, "cand-live", authorization=f"Bearer {BEARER}")
    assert _sensor(registry_url, "serving_bearer").poke({}).is_done
    assert len(seen) == 1
    assert redact(f"token was {BEARER}") == "token was ***"


def test_unreachable_deployment_is_an_error_naming_the_connection(
    monkeypatch: pytest.MonkeyPatch, registry_url: str
) -> None:
    from airflow.sdk.exceptions import AirflowException

    monkeypatch.setenv(
        "AIRFLOW_CONN_SERVING_DOWN",
        json.dumps(
            {"conn_type": "http", "host": "127.0.0.1", "port": 1, "login": "svc", "password": PASSWORD}
        ),
    )
    with pytest.raises(
        AirflowException, match=r"on http connection 'serving_down': ConnectionError"
    ) as caught:
        _sensor(registry_url, "serving_down", http_timeout=2).poke({})
    assert PASSWORD not in _all_text(caught.value)


def test_sensor_in_a_dag_run_keeps_the_password_out_of_xcom_and_rendered_fields(
    run_dag,  # type: ignore[no-untyped-def]
    httpserver: HTTPServer,
    monkeypatch: pytest.MonkeyPatch,
    registry_url: str,
    capfd: pytest.CaptureFixture[str],
) -> None:
    from airflow.models.renderedtifields import RenderedTaskInstanceFields
    from airflow.sdk import DAG
    from airflow.utils.session import create_session

    _deployment(httpserver, "cand-live", authorization=BASIC)
    conn_id = _basic_connection(monkeypatch, httpserver, "serving_dag")
    with DAG(
        dag_id="tg_drift_http", schedule=None, start_date=pendulum.datetime(2026, 11, 1, tz="UTC")
    ) as dag:
        ProductionDriftSensor(
            task_id="drift",
            model_name="ranker",
            registry=registry_url,
            http_conn_id=conn_id,
            endpoint="/v1/models/{{ params.model }}",
            params={"model": "ranker"},
            report_key="model.candidate_id",
            poke_interval=1,
            timeout=30,
        )
    assert run_dag(dag) == {"drift": "success"}
    assert xcom_value("tg_drift_http", "drift")["deployed"] == "cand-live"
    with create_session() as session:
        rows = session.query(RenderedTaskInstanceFields).filter_by(dag_id="tg_drift_http").all()
        rendered = json.dumps([row.rendered_fields for row in rows])
    assert ENDPOINT in rendered
    printed = capfd.readouterr()
    for text in (rendered, json.dumps(xcom_value("tg_drift_http", "drift")), printed.out + printed.err):
        assert PASSWORD not in text
