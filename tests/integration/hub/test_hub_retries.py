"""Hub retries (tenacity) for pre-flight's HubHook and promotion's HubModelRegistry, against a
loopback HTTP server speaking the Hub's API through the real ``huggingface_hub`` client."""

from __future__ import annotations

import json
import logging
import re
import traceback
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from airflow_training_guard.hooks.hub import HubHook
from airflow_training_guard.policies.hub_repos import HubAccessError, HubRepoNotFoundError, RepoSpec
from airflow_training_guard.promotion.hub import HubModelRegistry
from airflow_training_guard.promotion.registry import RegistryError

SHA = "c" * 40
TOKEN = "hf_SECRETTOKEN123" + "x" * 20
#: model_info with (promotion) or without (pre-flight, no revision given) a revision.
INFO_PATH = re.compile(r"^/api/models/org/ranker(/revision/main)?$")


@pytest.fixture
def hub_connection(httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(
        "AIRFLOW_CONN_HUB_RETRIES",
        json.dumps(
            {
                "conn_type": "huggingface_hub",
                "host": f"http://127.0.0.1:{httpserver.port}",
                "password": TOKEN,
                "extra": {"retries": 3, "backoff": 0.01, "timeout": 5},
            }
        ),
    )
    return "hub_retries"


def _answers(httpserver: HTTPServer, statuses: list[int]) -> list[Request]:
    """``GET`` model info answers with ``statuses`` in turn (the last one repeats); a missing file
    is the Hub's own 404, so a read that gets through sees an empty registry."""
    seen: list[Request] = []

    def info(request: Request) -> Response:
        seen.append(request)
        status = statuses[min(len(seen), len(statuses)) - 1]
        if status != 200:
            return Response(
                json.dumps({"error": "try again"}), status=status, content_type="application/json"
            )
        body = {"id": "org/ranker", "modelId": "org/ranker", "sha": SHA, "siblings": [], "private": False}
        return Response(json.dumps(body), content_type="application/json")

    httpserver.expect_request(INFO_PATH).respond_with_handler(info)
    httpserver.expect_request(f"/org/ranker/resolve/{SHA}/production.json").respond_with_response(
        Response(
            json.dumps({"error": "Entry not found"}), status=404, headers={"X-Error-Code": "EntryNotFound"}
        )
    )
    return seen


def _all_text(err: BaseException) -> str:
    return "".join(traceback.format_exception(err))


def test_hub_hook_503_twice_then_200_is_three_requests(httpserver: HTTPServer, hub_connection: str) -> None:
    seen = _answers(httpserver, [503, 503, 200])
    assert HubHook(hub_connection).resolve(RepoSpec("org/ranker")).sha == SHA
    assert len(seen) == 3
    assert {r.headers.get("Authorization") for r in seen} == {f"Bearer {TOKEN}"}


def test_hub_hook_401_is_not_retried(
    httpserver: HTTPServer, hub_connection: str, caplog: pytest.LogCaptureFixture
) -> None:
    seen = _answers(httpserver, [401])
    caplog.set_level(logging.DEBUG)
    with pytest.raises((HubAccessError, HubRepoNotFoundError)) as caught:
        HubHook(hub_connection).resolve(RepoSpec("org/ranker"))
    assert len(seen) == 1
    assert TOKEN not in _all_text(caught.value) and TOKEN not in caplog.text


def test_promotion_registry_503_twice_then_200_is_three_requests(
    httpserver: HTTPServer, hub_connection: str, tmp_path: Path
) -> None:
    seen = _answers(httpserver, [503, 503, 200])
    registry = HubModelRegistry(hub_conn_id=hub_connection, cache_dir=tmp_path / "cache")
    observed = registry.read("org/ranker")
    assert observed.pointer is None and observed.token == SHA
    assert len(seen) == 3
    assert {r.headers.get("Authorization") for r in seen} == {f"Bearer {TOKEN}"}


def test_promotion_registry_401_is_not_retried_and_names_no_token(
    httpserver: HTTPServer, hub_connection: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    seen = _answers(httpserver, [401])
    caplog.set_level(logging.DEBUG)
    registry = HubModelRegistry(hub_conn_id=hub_connection, cache_dir=tmp_path / "cache")
    with pytest.raises(RegistryError, match="cannot read model repo 'org/ranker'") as caught:
        registry.read("org/ranker")
    assert len(seen) == 1
    assert TOKEN not in _all_text(caught.value) and TOKEN not in caplog.text


def test_promotion_registry_gives_up_as_unreachable_after_the_connections_retries(
    httpserver: HTTPServer, hub_connection: str, tmp_path: Path
) -> None:
    seen = _answers(httpserver, [503])
    registry = HubModelRegistry(hub_conn_id=hub_connection, cache_dir=tmp_path / "cache")
    with pytest.raises(RegistryError, match=r"unreachable .*HTTP 503 after 4 attempts"):
        registry.read("org/ranker")
    assert len(seen) == 4
