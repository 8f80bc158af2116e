"""Registry credentials go only to the host they belong to (issue 14).

Two loopback servers on different addresses: the registry on 127.0.0.1 and "another host" on
127.0.0.2, which records what it was sent.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from airflow_training_guard.hooks.oci_registry import (
    OciRegistryClient,
    OciRegistryHook,
    RegistryAuthError,
)
from airflow_training_guard.secrets import redact

DIGEST = "sha256:" + "d" * 64
PASSWORD = "registry-pass-7f3a9c"
BASIC = "Basic " + base64.b64encode(f"robot:{PASSWORD}".encode()).decode()
MANIFEST_PATH = "/v2/ml/train/manifests/v1"


def _server(host: str) -> Iterator[HTTPServer]:
    server = HTTPServer(host=host, port=0)
    server.start()
    try:
        yield server
    finally:
        server.clear()
        server.stop()


@pytest.fixture
def registry() -> Iterator[HTTPServer]:
    yield from _server("127.0.0.1")


@pytest.fixture
def other_host() -> Iterator[HTTPServer]:
    yield from _server("127.0.0.2")


def client(**kwargs: object) -> OciRegistryClient:
    return OciRegistryClient(
        username="robot",
        password=PASSWORD,
        timeout=5,
        retries=0,
        backoff=0.01,
        **kwargs,  # type: ignore[arg-type]
    )


def _image(registry: HTTPServer) -> str:
    return f"127.0.0.1:{registry.port}/ml/train:v1"


def _authorization_headers(server: HTTPServer) -> list[str | None]:
    return [request.headers.get("Authorization") for request, _ in server.log]


def _challenge_to(realm: str, registry: HTTPServer, *, accepted_token: str) -> None:
    def manifests(request: Request) -> Response:
        if request.headers.get("Authorization") != f"Bearer {accepted_token}":
            challenge = f'Bearer realm="{realm}",service="test-registry"'
            return Response(status=401, headers={"WWW-Authenticate": challenge})
        return Response(status=200, headers={"Docker-Content-Digest": DIGEST})

    registry.expect_request(MANIFEST_PATH, method="HEAD").respond_with_handler(manifests)


def _token_service(server: HTTPServer, *, anonymous: bool) -> None:
    def token(request: Request) -> Response:
        if request.headers.get("Authorization") == BASIC:
            return Response(json.dumps({"token": "user-token-1"}), content_type="application/json")
        if anonymous:
            return Response(json.dumps({"token": "anon-token-1"}), content_type="application/json")
        return Response(status=401)

    server.expect_request("/token").respond_with_handler(token)


def test_token_realm_on_another_host_is_asked_anonymously(
    registry: HTTPServer, other_host: HTTPServer
) -> None:
    """Regression: a bearer challenge whose realm was another host got the registry password (Basic)."""
    _challenge_to(other_host.url_for("/token"), registry, accepted_token="anon-token-1")
    _token_service(other_host, anonymous=True)
    assert client().resolve_tag(_image(registry)).digest == DIGEST
    assert [r.path for r, _ in other_host.log] == ["/token"]
    assert _authorization_headers(other_host) == [None]


def test_token_realm_refusing_anonymous_access_says_the_credentials_were_withheld(
    registry: HTTPServer, other_host: HTTPServer
) -> None:
    _challenge_to(other_host.url_for("/token"), registry, accepted_token="user-token-1")
    _token_service(other_host, anonymous=False)
    with pytest.raises(
        RegistryAuthError,
        match=rf"were not sent to it because 127\.0\.0\.2:{other_host.port} is not the registry's host "
        rf"127\.0\.0\.1:{registry.port}.*add it to \"credential_hosts\"",
    ):
        client().resolve_tag(_image(registry))
    assert _authorization_headers(other_host) == [None]


def test_token_realm_listed_in_credential_hosts_receives_the_credentials(
    registry: HTTPServer, other_host: HTTPServer
) -> None:
    _challenge_to(other_host.url_for("/token"), registry, accepted_token="user-token-1")
    _token_service(other_host, anonymous=False)
    allowed = client(credential_hosts=[f"127.0.0.2:{other_host.port}"])
    assert allowed.resolve_tag(_image(registry)).digest == DIGEST
    assert _authorization_headers(other_host) == [BASIC]


def test_token_realm_on_the_registry_host_receives_the_credentials(registry: HTTPServer) -> None:
    _challenge_to(f"http://127.0.0.1:{registry.port}/token", registry, accepted_token="user-token-1")
    _token_service(registry, anonymous=False)
    assert client().resolve_tag(_image(registry)).digest == DIGEST
    token_requests = [r for r, _ in registry.log if r.path == "/token"]
    assert [r.headers.get("Authorization") for r in token_requests] == [BASIC]


def _basic_registry_redirecting_to(location: str, registry: HTTPServer) -> None:
    def manifests(request: Request) -> Response:
        if request.headers.get("Authorization") != BASIC:
            return Response(status=401, headers={"WWW-Authenticate": 'Basic realm="registry"'})
        return Response(status=307, headers={"Location": location})

    registry.expect_request(MANIFEST_PATH, method="HEAD").respond_with_handler(manifests)


def _storage(server: HTTPServer, path: str = "/storage/manifest") -> None:
    server.expect_request(path, method="HEAD").respond_with_response(
        Response(status=200, headers={"Docker-Content-Digest": DIGEST})
    )


def test_redirect_to_another_host_is_followed_without_credentials(
    registry: HTTPServer, other_host: HTTPServer
) -> None:
    """Regression: urllib's redirect handler copied Authorization to the 307 target on another host."""
    _basic_registry_redirecting_to(other_host.url_for("/storage/manifest"), registry)
    _storage(other_host)
    assert client().resolve_tag(_image(registry)).digest == DIGEST
    assert [r.path for r, _ in other_host.log] == ["/storage/manifest"]
    assert _authorization_headers(other_host) == [None]


def test_redirect_after_a_bearer_token_drops_the_token_too(
    registry: HTTPServer, other_host: HTTPServer
) -> None:
    def manifests(request: Request) -> Response:
        if request.headers.get("Authorization") != "Bearer user-token-1":
            realm = f"http://127.0.0.1:{registry.port}/token"
            return Response(status=401, headers={"WWW-Authenticate": f'Bearer realm="{realm}"'})
        return Response(status=307, headers={"Location": other_host.url_for("/storage/manifest")})

    registry.expect_request(MANIFEST_PATH, method="HEAD").respond_with_handler(manifests)
    _token_service(registry, anonymous=False)
    _storage(other_host)
    assert client().resolve_tag(_image(registry)).digest == DIGEST
    assert _authorization_headers(other_host) == [None]


def test_redirect_on_the_registry_host_keeps_the_credentials(registry: HTTPServer) -> None:
    _basic_registry_redirecting_to(f"http://127.0.0.1:{registry.port}/storage/manifest", registry)
    _storage(registry)
    assert client().resolve_tag(_image(registry)).digest == DIGEST
    storage = [r for r, _ in registry.log if r.path == "/storage/manifest"]
    assert [r.headers.get("Authorization") for r in storage] == [BASIC]


def test_redirect_to_a_listed_credential_host_keeps_the_credentials(
    registry: HTTPServer, other_host: HTTPServer
) -> None:
    _basic_registry_redirecting_to(other_host.url_for("/storage/manifest"), registry)
    _storage(other_host)
    allowed = client(credential_hosts=[f"127.0.0.2:{other_host.port}"])
    assert allowed.resolve_tag(_image(registry)).digest == DIGEST
    assert _authorization_headers(other_host) == [BASIC]


@pytest.mark.parametrize(
    ("url", "registry_host", "kwargs", "allowed"),
    [
        ("https://registry.example/token", "registry.example", {}, True),
        ("http://registry.example/token", "registry.example", {}, False),
        ("http://registry.example/token", "registry.example", {"scheme": "http"}, True),
        ("https://registry.example:443/token", "registry.example", {}, True),
        ("https://auth.example/token", "registry.example", {}, False),
        ("https://auth.example/token", "registry.example", {"credential_hosts": ["auth.example"]}, True),
        ("http://auth.example/token", "registry.example", {"credential_hosts": ["auth.example"]}, False),
        ("https://auth.docker.io/token", "registry-1.docker.io", {}, True),
        ("https://auth.docker.io/token", "registry.example", {}, False),
        ("http://127.0.0.1:5000/token", "127.0.0.1:5000", {}, True),
        ("http://127.0.0.1:5001/token", "127.0.0.1:5000", {}, False),
        ("https://registry.example.attacker.test/token", "registry.example", {}, False),
    ],
)
def test_which_urls_may_receive_the_credentials(
    url: str, registry_host: str, kwargs: dict[str, object], allowed: bool
) -> None:
    assert client(**kwargs)._may_receive_credentials(url, registry_host) is allowed


def test_credential_hosts_must_be_a_list_of_names() -> None:
    with pytest.raises(ValueError, match=r"credential_hosts 'auth.example' must be a list of host names"):
        client(credential_hosts="auth.example")


def test_hook_masks_the_password_before_first_use(monkeypatch: pytest.MonkeyPatch) -> None:
    password = "hook-pass-9b8c7d6e"
    monkeypatch.setenv(
        "AIRFLOW_CONN_REGISTRY_MASK_TEST",
        json.dumps({"conn_type": "docker", "login": "robot", "password": password}),
    )
    hook_client = OciRegistryHook("registry_mask_test").client
    assert redact(f"echo {password}") == "echo ***"
    assert hook_client.login("registry.example").password == password
    encoded = base64.b64encode(f"robot:{password}".encode()).decode()
    assert hook_client._credentials("registry.example") == f"Basic {encoded}"
    assert redact(f"x {encoded} y") == "x *** y"
