"""Promotion to the Hub takes its endpoint and write token from the ``huggingface_hub`` connection,
the one pre-flight reads (issue 19), and the token never reaches logs, XCom, rendered fields or
error texts. ``HF_TOKEN`` is not a fallback."""

from __future__ import annotations

import json
import logging
import traceback
import uuid
from pathlib import Path

import pendulum
import pytest

from airflow_training_guard.manifest import RunManifest
from airflow_training_guard.promotion import registry_from_url
from airflow_training_guard.promotion.registry import RegistryError
from tests.helpers import xcom_value
from tests.integration.hub.hub_server import LocalHub


def _token() -> str:
    return "hf_SECRETTOKEN123" + uuid.uuid4().hex


@pytest.fixture
def private_hub() -> tuple[LocalHub, str]:
    token = _token()
    with LocalHub(token=token) as hub:
        hub.add("org/ranker", files={".gitattributes": b""}, private=True)
        yield hub, token


def _connection(monkeypatch: pytest.MonkeyPatch, conn_id: str, hub: LocalHub, token: str | None) -> None:
    conn: dict[str, object] = {"conn_type": "huggingface_hub", "host": hub.url, "extra": {"retries": 0}}
    if token is not None:
        conn["password"] = token
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))


def _manifest(directory: Path, ndcg: float = 0.8) -> Path:
    artifact = directory / "model"
    artifact.mkdir(parents=True, exist_ok=True)
    (artifact / "model.bin").write_bytes(b"weights")
    return RunManifest(
        dag_id="train_ranker",
        run_id="run-1",
        task_id="train",
        partition_key="2026-11-01",
        image_digest=None,
        datasets={},
        models={},
        params={},
        code={"package_version": "0.1.0", "dag_file_sha256": "ab" * 32},
        python_env={"python": "3.11", "distributions_sha256": "cd" * 32},
        checkpoints=(),
        artifact_uri=str(artifact),
        metrics={"ndcg": ndcg},
        created_at="2026-11-01T03:00:00+00:00",
    ).write(directory)


def test_hf_url_reads_endpoint_and_token_from_the_connection(
    private_hub: tuple[LocalHub, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    hub, token = private_hub
    _connection(monkeypatch, "hub_promote", hub, token)
    monkeypatch.setenv("HF_TOKEN", "hf_WRONGTOKEN" + "z" * 20)
    registry = registry_from_url("hf://", hub_conn_id="hub_promote")
    registry.cache_dir = str(tmp_path / "cache")  # type: ignore[attr-defined]
    assert registry.read("org/ranker").pointer is None  # private repo: only the connection's token reads it


def test_hf_token_is_not_a_fallback(
    private_hub: tuple[LocalHub, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A worker's HF_TOKEN (or hf auth login) must not promote when the connection has no token."""
    hub, token = private_hub
    _connection(monkeypatch, "hub_no_token", hub, None)
    monkeypatch.setenv("HF_TOKEN", token)
    registry = registry_from_url("hf://", hub_conn_id="hub_no_token")
    with pytest.raises(RegistryError, match="cannot read model repo 'org/ranker'"):
        registry.read("org/ranker")


def test_missing_connection_says_how_to_create_it() -> None:
    registry = registry_from_url("hf://", hub_conn_id="no_such_hub_connection")
    with pytest.raises(
        ValueError, match=r"'no_such_hub_connection' does not exist; create it with type huggingface_hub"
    ):
        registry.read("org/ranker")


def _promote_dag(dag_id: str, manifest_dir: Path, conn_id: str):  # type: ignore[no-untyped-def]
    from airflow.sdk import DAG

    from airflow_training_guard.operators.promotion import PromoteModelOperator

    with DAG(dag_id=dag_id, schedule=None, start_date=pendulum.datetime(2026, 11, 1, tz="UTC")) as dag:
        PromoteModelOperator(
            task_id="promote",
            model_name="org/ranker",
            registry="hf://",
            hub_conn_id=conn_id,
            manifest_path=str(manifest_dir),
            metric="ndcg",
            max_attempts=1,
            retries=0,
        )
    return dag


def _rendered_fields(dag_id: str, task_id: str) -> str:
    from airflow.models.renderedtifields import RenderedTaskInstanceFields
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(RenderedTaskInstanceFields).filter_by(dag_id=dag_id, task_id=task_id).all()
        assert rows, f"no rendered fields stored for {dag_id}.{task_id}"
        return json.dumps([row.rendered_fields for row in rows])


def test_promote_task_uses_the_connection_and_the_token_is_in_no_record(
    run_dag,  # type: ignore[no-untyped-def]
    private_hub: tuple[LocalHub, str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    hub, token = private_hub
    _connection(monkeypatch, "hub_promote_dag", hub, token)
    _manifest(tmp_path / "run-1")
    caplog.set_level(logging.DEBUG)
    assert run_dag(_promote_dag("tg_hub_conn_promote", tmp_path / "run-1", "hub_promote_dag")) == {
        "promote": "success"
    }
    result = xcom_value("tg_hub_conn_promote", "promote")
    assert result["outcome"] == "promoted" and result["current"]["version"] == 1
    assert hub.commits_accepted == 1
    assert token not in json.dumps(result)
    assert token not in _rendered_fields("tg_hub_conn_promote", "promote")
    assert token not in caplog.text


def test_failing_promotion_that_echoes_the_authorization_header_leaks_no_token(
    run_dag,  # type: ignore[no-untyped-def]
    private_hub: tuple[LocalHub, str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """dag.test() prints the task's log, exception included, unmasked (TESTING-NOTES): so what is
    printed is exactly what the operator produced, and must hold no token."""
    hub, token = private_hub
    _connection(monkeypatch, "hub_promote_echo", hub, token)
    hub.echo_authorization = True
    hub.fail_next(50, 400, path_contains="/api/models/")
    _manifest(tmp_path / "run-1")
    # INFO, Airflow's default: at DEBUG, httpcore's wire trace prints raw response headers, which
    # only Airflow's masker (the token is registered with it) cleans, and caplog has no masker.
    caplog.set_level(logging.INFO)
    assert run_dag(_promote_dag("tg_hub_conn_echo", tmp_path / "run-1", "hub_promote_echo")) == {
        "promote": "failed"
    }
    printed = capfd.readouterr()
    task_output = printed.out + printed.err
    assert "request had Authorization: ***" in task_output  # the echoed header, redacted
    assert token not in task_output
    assert token not in caplog.text
    assert token not in _rendered_fields("tg_hub_conn_echo", "promote")


def test_registry_error_text_has_no_token(
    private_hub: tuple[LocalHub, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    hub, token = private_hub
    _connection(monkeypatch, "hub_error_text", hub, token)
    hub.echo_authorization = True
    hub.fail_next(5, 400, path_contains="/api/models/")
    with pytest.raises(RegistryError) as caught:
        registry_from_url("hf://", hub_conn_id="hub_error_text").read("org/ranker")
    assert token not in "".join(traceback.format_exception(caught.value))
