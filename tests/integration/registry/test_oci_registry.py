"""OCI registry checks against a real registry (Debian's docker-registry) and scripted HTTP faults."""

from __future__ import annotations

import json

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from airflow_training_guard.hooks.oci_registry import (
    DigestNotFoundError,
    OciRegistryClient,
    RegistryAuthError,
    RegistryUnreachableError,
    parse_bearer_challenge,
)
from tests.integration.registry.conftest import LocalRegistry

MISSING = "sha256:" + "0" * 64


def client(**kwargs: object) -> OciRegistryClient:
    return OciRegistryClient(timeout=5, retries=2, backoff=0.01, **kwargs)  # type: ignore[arg-type]


def test_tag_resolves_to_pushed_digest(oci_registry: LocalRegistry) -> None:
    digest = oci_registry.push_image("ml/train", "2026.11")
    pinned = client().resolve_tag(f"{oci_registry.host}/ml/train:2026.11")
    assert pinned.digest == digest
    assert str(pinned) == f"{oci_registry.host}/ml/train:2026.11@{digest}"


def test_pinned_digest_exists(oci_registry: LocalRegistry) -> None:
    digest = oci_registry.push_image("ml/exists", "v1")
    assert client().digest_exists(f"{oci_registry.host}/ml/exists@{digest}") == digest


def test_missing_digest(oci_registry: LocalRegistry) -> None:
    oci_registry.push_image("ml/missing", "v1")
    with pytest.raises(DigestNotFoundError, match=rf"image digest {MISSING} not found in registry"):
        client().digest_exists(f"{oci_registry.host}/ml/missing@{MISSING}")


def test_moved_tag_does_not_change_the_pin(oci_registry: LocalRegistry) -> None:
    """A tag that moves after pre-flight must not change what the run uses: the pin is the digest."""
    first = oci_registry.push_image("ml/moving", "latest", label="one")
    pinned = client().resolve_tag(f"{oci_registry.host}/ml/moving:latest")
    second = oci_registry.push_image("ml/moving", "latest", label="two")
    assert first != second
    assert pinned.digest == first
    assert client().digest_exists(pinned) == first
    assert client().resolve_tag(f"{oci_registry.host}/ml/moving:latest").digest == second


def test_unknown_tag(oci_registry: LocalRegistry) -> None:
    with pytest.raises(DigestNotFoundError, match=r"image tag .*:nope not found"):
        client().resolve_tag(f"{oci_registry.host}/ml/none:nope")


def test_bearer_challenge_parsing() -> None:
    header = (
        'Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull"'
    )
    assert parse_bearer_challenge(header) == {
        "realm": "https://auth.example/token",
        "service": "registry.example",
        "scope": "repository:a/b:pull",
    }
    assert parse_bearer_challenge('Basic realm="x"') is None


def _bearer_registry(
    httpserver: HTTPServer, digest: str, *, accept_credentials: bool = True
) -> list[Request]:
    seen: list[Request] = []
    realm = f"http://127.0.0.1:{httpserver.port}/token"

    def manifests(request: Request) -> Response:
        seen.append(request)
        if request.headers.get("Authorization") != "Bearer good-token":
            challenge = f'Bearer realm="{realm}",service="test-registry",scope="repository:ml/train:pull"'
            return Response(status=401, headers={"WWW-Authenticate": challenge})
        assert "application/vnd.oci.image.index.v1+json" in request.headers["Accept"]
        return Response(status=200, headers={"Docker-Content-Digest": digest})

    def token(request: Request) -> Response:
        seen.append(request)
        assert request.args["service"] == "test-registry"
        assert request.args["scope"] == "repository:ml/train:pull"
        if not accept_credentials:
            return Response(status=401)
        return Response(json.dumps({"token": "good-token"}), content_type="application/json")

    httpserver.expect_request("/v2/ml/train/manifests/v1", method="HEAD").respond_with_handler(manifests)
    httpserver.expect_request("/token").respond_with_handler(token)
    return seen


def test_bearer_token_flow(httpserver: HTTPServer) -> None:
    digest = "sha256:" + "a" * 64
    seen = _bearer_registry(httpserver, digest)
    host = f"127.0.0.1:{httpserver.port}"
    pinned = client(username="robot", password="secret").resolve_tag(f"{host}/ml/train:v1")
    assert pinned.digest == digest
    assert [r.path for r in seen] == ["/v2/ml/train/manifests/v1", "/token", "/v2/ml/train/manifests/v1"]
    assert seen[1].headers["Authorization"].startswith("Basic ")


def test_token_refused_is_auth_error(httpserver: HTTPServer) -> None:
    _bearer_registry(httpserver, "sha256:" + "a" * 64, accept_credentials=False)
    with pytest.raises(RegistryAuthError, match="refused anonymous access"):
        client().resolve_tag(f"127.0.0.1:{httpserver.port}/ml/train:v1")


def test_429_is_retried_then_rate_limited(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/v2/ml/train/manifests/v1", method="HEAD").respond_with_response(
        Response(status=429, headers={"Retry-After": "0"})
    )
    with pytest.raises(RegistryUnreachableError, match=r"registry rate-limited .*HTTP 429 after 3 attempts"):
        client().resolve_tag(f"127.0.0.1:{httpserver.port}/ml/train:v1")
    assert len(httpserver.log) == 3


def test_connection_refused_is_unreachable() -> None:
    with pytest.raises(RegistryUnreachableError, match="registry unreachable"):
        client().digest_exists(f"127.0.0.1:1/ml/train@{MISSING}")
