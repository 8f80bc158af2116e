"""The Hub token used for promotion stays out of exception texts and logs (issue 14).

The loopback Hub answers with an error page that quotes the request's ``Authorization`` header,
as some proxies do; the token must be registered with the secrets masker before the first request
and the quoted server text redacted.
"""

from __future__ import annotations

import traceback
import uuid
from pathlib import Path

import pendulum
import pytest

from airflow_training_guard.promotion.hub import HubModelRegistry
from airflow_training_guard.promotion.registry import RegistryError
from tests.integration.hub.hub_server import LocalHub


def _token() -> str:
    return "hf_" + uuid.uuid4().hex + "Q7"


@pytest.fixture
def echoing_hub() -> tuple[LocalHub, str]:
    token = _token()
    with LocalHub(token=token) as hub:
        hub.add("org/ranker", files={".gitattributes": b""})
        hub.echo_authorization = True
        yield hub, token


def _all_text(err: BaseException) -> str:
    return "".join(traceback.format_exception(err))


def test_hub_token_is_masked_before_the_first_request(echoing_hub: tuple[LocalHub, str]) -> None:
    """Regression: the promotion registry never registered its token with the secrets masker."""
    from airflow.sdk._shared.secrets_masker import redact as airflow_redact

    hub, token = echoing_hub
    HubModelRegistry(endpoint=hub.url, token=token)
    assert hub.requests == []
    assert airflow_redact(f"Bearer {token}") == "Bearer ***"


def test_read_error_that_echoes_the_authorization_header_is_redacted(
    echoing_hub: tuple[LocalHub, str], tmp_path: Path
) -> None:
    """Regression: ``Bearer hf_...`` echoed by the Hub went into the promotion's exception text."""
    hub, token = echoing_hub
    registry = HubModelRegistry(endpoint=hub.url, token=token, cache_dir=tmp_path / "cache")
    hub.fail_next(5, 400, path_contains="/api/models/")
    with pytest.raises(
        RegistryError, match=r"upstream trouble; request had Authorization: \*\*\*$"
    ) as caught:
        registry.read("org/ranker")
    assert token not in _all_text(caught.value)


def test_commit_error_that_echoes_the_authorization_header_is_redacted(
    echoing_hub: tuple[LocalHub, str], tmp_path: Path
) -> None:
    """Regression: the same echo on the compare-and-swap commit."""
    from airflow_training_guard.promotion.registry import ProductionPointer

    hub, token = echoing_hub
    registry = HubModelRegistry(endpoint=hub.url, token=token, cache_dir=tmp_path / "cache")
    observed = registry.read("org/ranker")
    pointer = ProductionPointer(
        model_name="org/ranker",
        version=observed.next_version,
        candidate_id="run-1",
        artifact_uri=str(tmp_path),
        metrics={"ndcg": 0.5},
        promoted_by="test",
        promoted_at=pendulum.now("UTC").isoformat(),
    )
    hub.fail_next(5, 400, path_contains="/commit/")
    with pytest.raises(
        RegistryError, match=r"upstream trouble; request had Authorization: \*\*\*$"
    ) as caught:
        registry.compare_and_swap("org/ranker", observed, pointer)
    assert token not in _all_text(caught.value)
