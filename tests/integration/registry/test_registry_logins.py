"""Registry logins from an Airflow ``docker`` connection and from the Docker client's config (issue 19).

A real registry (Debian's docker-registry) with htpasswd basic auth; a Docker ``config.json`` in a
temporary ``DOCKER_CONFIG``; a credential helper that is a real executable on ``PATH``; and
loopback HTTP servers for the bearer-token flows (identity tokens) and for retries.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import stat
import traceback
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from airflow_training_guard.hooks.oci_registry import (
    OciRegistryClient,
    OciRegistryHook,
    RegistryAuthError,
    RegistryUnreachableError,
)
from airflow_training_guard.hooks.registry_credentials import from_docker_config
from tests.integration.registry.conftest import LocalRegistry, start_registry, stop_registry

USER = "robot"
PASSWORD = "docker-pass-SECRET-5e1d"
DIGEST = "sha256:" + "e" * 64


@pytest.fixture(scope="module")
def auth_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRegistry]:
    """docker-registry requiring ``robot``/``PASSWORD`` (bcrypt htpasswd, as the registry wants)."""
    root = tmp_path_factory.mktemp("auth-registry")
    htpasswd = root / "htpasswd"
    # What ``htpasswd -Bbn`` writes, without needing apache2-utils on the machine.
    htpasswd.write_text(f"{USER}:{bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt()).decode()}\n")
    process, host = start_registry(root, htpasswd=htpasswd)
    basic = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    registry = LocalRegistry(host=host, authorization=basic)
    registry.push_image("ml/private", "v1")
    try:
        yield registry
    finally:
        stop_registry(process, root)


@pytest.fixture
def docker_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty ``HOME`` and ``DOCKER_CONFIG`` so the developer's own logins never take part."""
    home = tmp_path / "home"
    config_dir = home / ".docker"
    config_dir.mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("DOCKER_CONFIG", str(config_dir))
    return config_dir


def _write_config(config_dir: Path, config: dict[str, object]) -> None:
    (config_dir / "config.json").write_text(json.dumps(config))


def _auth(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def _credential_helper(
    bin_dir: Path, name: str, answers: dict[str, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> Path:
    """A real ``docker-credential-<name>`` on ``PATH``: answers ``get`` from ``answers`` (server ->
    {Username, Secret}), records every stdin it was given, exits 1 with "credentials not found"
    for other servers, as the helper protocol says."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    calls = bin_dir / f"{name}.calls"
    script = bin_dir / f"docker-credential-{name}"
    script.write_text(
        "#!/usr/bin/env python3\n"
        "import json, sys\n"
        f"ANSWERS = {json.dumps(answers)!r}\n"
        "server = sys.stdin.read().strip()\n"
        f"open({str(calls)!r}, 'a').write(sys.argv[1] + ' ' + server + '\\n')\n"
        "answer = json.loads(ANSWERS).get(server)\n"
        "if sys.argv[1] != 'get' or answer is None:\n"
        "    print('credentials not found in native keychain'); sys.exit(1)\n"
        "print(json.dumps({'ServerURL': server, **answer}))\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return calls


def _all_text(err: BaseException) -> str:
    return "".join(traceback.format_exception(err))


# -- the Airflow docker connection --------------------------------------------------------------


def test_docker_connection_logs_in_to_a_real_registry(
    auth_registry: LocalRegistry, docker_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_PRIVATE_REGISTRY",
        json.dumps({"conn_type": "docker", "host": auth_registry.host, "login": USER, "password": PASSWORD}),
    )
    hook = OciRegistryHook("private_registry", retries=0)
    pinned = hook.resolve_tag(f"{auth_registry.host}/ml/private:v1")
    assert pinned.digest is not None and pinned.digest.startswith("sha256:")
    assert hook.digest_exists(pinned) == pinned.digest


def test_without_a_login_the_real_registry_refuses_with_the_fix(
    auth_registry: LocalRegistry, docker_home: Path
) -> None:
    with pytest.raises(RegistryAuthError, match=r"requires authentication \(HTTP 401\).*type docker"):
        OciRegistryHook(None, retries=0).resolve_tag(f"{auth_registry.host}/ml/private:v1")


def test_wrong_password_is_denied_and_the_password_is_nowhere(
    auth_registry: LocalRegistry,
    docker_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    wrong = "wrong-docker-pass-SECRET-77"
    monkeypatch.setenv(
        "AIRFLOW_CONN_WRONG_REGISTRY",
        json.dumps({"conn_type": "docker", "host": auth_registry.host, "login": USER, "password": wrong}),
    )
    caplog.set_level(logging.DEBUG)
    with pytest.raises(RegistryAuthError, match=r"denied access \(HTTP 401\)") as caught:
        OciRegistryHook("wrong_registry", retries=0).resolve_tag(f"{auth_registry.host}/ml/private:v1")
    encoded = _auth(USER, wrong)
    for secret in (wrong, encoded):
        assert secret not in _all_text(caught.value)
        assert secret not in caplog.text


def test_a_connection_for_another_registry_is_not_sent_here(
    auth_registry: LocalRegistry, docker_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The connection's host says which registry its login is for; others get the Docker config's."""
    monkeypatch.setenv(
        "AIRFLOW_CONN_OTHER_REGISTRY",
        json.dumps(
            {
                "conn_type": "docker",
                "host": "https://other.example:5000",
                "login": "x",
                "password": "y-not-here",
            }
        ),
    )
    _write_config(docker_home, {"auths": {auth_registry.host: {"auth": _auth(USER, PASSWORD)}}})
    hook = OciRegistryHook("other_registry", retries=0)
    assert hook.resolve_tag(f"{auth_registry.host}/ml/private:v1").digest
    assert hook.client.login(auth_registry.host).source == "Docker config"
    assert hook.client.login("other.example:5000").username == "x"


# -- the Docker client's config.json ------------------------------------------------------------


def test_docker_config_auths_log_in_to_a_real_registry(
    auth_registry: LocalRegistry, docker_home: Path
) -> None:
    _write_config(docker_home, {"auths": {auth_registry.host: {"auth": _auth(USER, PASSWORD)}}})
    assert OciRegistryHook(None, retries=0).resolve_tag(f"{auth_registry.host}/ml/private:v1").digest


def test_docker_config_can_be_switched_off(
    auth_registry: LocalRegistry, docker_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write_config(docker_home, {"auths": {auth_registry.host: {"auth": _auth(USER, PASSWORD)}}})
    monkeypatch.setenv(
        "AIRFLOW_CONN_NO_DOCKER_CONFIG",
        json.dumps({"conn_type": "docker", "extra": {"docker_config": False}}),
    )
    with pytest.raises(RegistryAuthError, match="requires authentication"):
        OciRegistryHook("no_docker_config", retries=0).resolve_tag(f"{auth_registry.host}/ml/private:v1")


def test_credential_helper_on_path_logs_in_to_a_real_registry(
    auth_registry: LocalRegistry, docker_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ECR/GCR/ACR-style login: ``credHelpers`` names a helper that gets the registry host on stdin."""
    calls = _credential_helper(
        tmp_path / "bin", "fake", {auth_registry.host: {"Username": USER, "Secret": PASSWORD}}, monkeypatch
    )
    _write_config(docker_home, {"credHelpers": {auth_registry.host: "fake"}})
    hook = OciRegistryHook(None, retries=0)
    assert hook.resolve_tag(f"{auth_registry.host}/ml/private:v1").digest
    assert calls.read_text().splitlines() == [f"get {auth_registry.host}"]
    assert hook.client.login(auth_registry.host).source == "Docker credential helper docker-credential-fake"


def test_creds_store_helper_that_has_no_login_falls_back_to_auths(
    auth_registry: LocalRegistry, docker_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _credential_helper(tmp_path / "bin", "empty", {}, monkeypatch)
    _write_config(
        docker_home, {"credsStore": "empty", "auths": {auth_registry.host: {"auth": _auth(USER, PASSWORD)}}}
    )
    assert OciRegistryHook(None, retries=0).resolve_tag(f"{auth_registry.host}/ml/private:v1").digest


def test_missing_credential_helper_is_a_registry_auth_error_naming_it(
    docker_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write_config(docker_home, {"credHelpers": {"registry.example": "not-installed-anywhere"}})
    with pytest.raises(
        RegistryAuthError,
        match=r"docker-credential-not-installed-anywhere failed for registry registry.example",
    ):
        OciRegistryHook(None, retries=0).client.login("registry.example")


def test_docker_hub_login_is_found_under_its_index_url(docker_home: Path) -> None:
    _write_config(
        docker_home, {"auths": {"https://index.docker.io/v1/": {"auth": _auth("hubuser", "hubpass1")}}}
    )
    login = from_docker_config("registry-1.docker.io")
    assert (login.username, login.password) == ("hubuser", "hubpass1")


# -- token auth: identity tokens exchanged at the token service ----------------------------------


def _token_registry(httpserver: HTTPServer, *, refresh_token: str) -> list[Request]:
    """A registry whose token service only accepts an OAuth2 refresh-token exchange (ACR-style)."""
    seen: list[Request] = []
    realm = f"http://127.0.0.1:{httpserver.port}/oauth2/token"

    def manifests(request: Request) -> Response:
        seen.append(request)
        if request.headers.get("Authorization") != "Bearer access-from-refresh":
            challenge = f'Bearer realm="{realm}",service="test-registry"'
            return Response(status=401, headers={"WWW-Authenticate": challenge})
        return Response(status=200, headers={"Docker-Content-Digest": DIGEST})

    def token(request: Request) -> Response:
        seen.append(request)
        form = request.form
        if (
            request.method == "POST"
            and form.get("grant_type") == "refresh_token"
            and form.get("refresh_token") == refresh_token
            and form.get("service") == "test-registry"
            and form.get("scope") == "repository:ml/train:pull"
        ):
            return Response(
                json.dumps({"access_token": "access-from-refresh"}), content_type="application/json"
            )
        return Response(json.dumps({"error": "invalid_grant"}), status=400, content_type="application/json")

    httpserver.expect_request("/v2/ml/train/manifests/v1", method="HEAD").respond_with_handler(manifests)
    httpserver.expect_request("/oauth2/token").respond_with_handler(token)
    return seen


def test_identity_token_in_docker_config_is_exchanged_for_an_access_token(
    httpserver: HTTPServer, docker_home: Path
) -> None:
    identity = "identity-token-SECRET-a1b2"
    seen = _token_registry(httpserver, refresh_token=identity)
    host = f"127.0.0.1:{httpserver.port}"
    _write_config(docker_home, {"auths": {host: {"identitytoken": identity}}})
    assert OciRegistryHook(None, retries=0).resolve_tag(f"{host}/ml/train:v1").digest == DIGEST
    assert [(r.method, r.path) for r in seen] == [
        ("HEAD", "/v2/ml/train/manifests/v1"),
        ("POST", "/oauth2/token"),
        ("HEAD", "/v2/ml/train/manifests/v1"),
    ]


def test_credential_helper_token_username_means_identity_token(
    httpserver: HTTPServer, docker_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    identity = "helper-identity-SECRET-c3d4"
    _token_registry(httpserver, refresh_token=identity)
    host = f"127.0.0.1:{httpserver.port}"
    _credential_helper(
        tmp_path / "bin", "acr", {host: {"Username": "<token>", "Secret": identity}}, monkeypatch
    )
    _write_config(docker_home, {"credHelpers": {host: "acr"}})
    assert OciRegistryHook(None, retries=0).resolve_tag(f"{host}/ml/train:v1").digest == DIGEST


def test_refused_identity_token_is_an_auth_error_without_the_token(
    httpserver: HTTPServer, docker_home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    stale = "stale-identity-SECRET-e5f6"
    _token_registry(httpserver, refresh_token="the-current-one")
    host = f"127.0.0.1:{httpserver.port}"
    _write_config(docker_home, {"auths": {host: {"identitytoken": stale}}})
    caplog.set_level(logging.DEBUG)
    with pytest.raises(
        RegistryAuthError, match=r"refused the credentials from Docker config \(HTTP 400\)"
    ) as caught:
        OciRegistryHook(None, retries=0).resolve_tag(f"{host}/ml/train:v1")
    assert stale not in _all_text(caught.value)
    assert stale not in caplog.text


# -- retries (tenacity) ---------------------------------------------------------------------------


def _client() -> OciRegistryClient:
    return OciRegistryClient(username=USER, password=PASSWORD, timeout=5, retries=3, backoff=0.01)


def test_503_twice_then_200_is_three_requests(httpserver: HTTPServer) -> None:
    statuses = iter([503, 503, 200])

    def manifests(request: Request) -> Response:
        status = next(statuses)
        return Response(status=status, headers={"Docker-Content-Digest": DIGEST} if status == 200 else {})

    httpserver.expect_request("/v2/ml/train/manifests/v1", method="HEAD").respond_with_handler(manifests)
    assert _client().resolve_tag(f"127.0.0.1:{httpserver.port}/ml/train:v1").digest == DIGEST
    assert len(httpserver.log) == 3


def test_401_is_not_retried(httpserver: HTTPServer, caplog: pytest.LogCaptureFixture) -> None:
    httpserver.expect_request("/v2/ml/train/manifests/v1", method="HEAD").respond_with_response(
        Response(status=401, headers={"WWW-Authenticate": 'Basic realm="r"'})
    )
    caplog.set_level(logging.DEBUG)
    with pytest.raises(RegistryAuthError, match=r"denied access \(HTTP 401\)") as caught:
        _client().resolve_tag(f"127.0.0.1:{httpserver.port}/ml/train:v1")
    # One anonymous request, one with the login: the 401 itself is never repeated.
    assert len(httpserver.log) == 2
    assert PASSWORD not in _all_text(caught.value) and PASSWORD not in caplog.text


def test_503_every_time_is_unreachable_after_the_configured_attempts(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/v2/ml/train/manifests/v1", method="HEAD").respond_with_response(
        Response(status=503)
    )
    with pytest.raises(RegistryUnreachableError, match=r"HTTP 503 after 4 attempts"):
        _client().resolve_tag(f"127.0.0.1:{httpserver.port}/ml/train:v1")
    assert len(httpserver.log) == 4


# -- pre-flight in a DAG run ----------------------------------------------------------------------


@pytest.mark.parametrize("source", ["connection", "credential helper"])
def test_preflight_pins_a_private_image_and_the_password_is_in_no_record(
    run_dag,  # type: ignore[no-untyped-def]
    source: str,
    auth_registry: LocalRegistry,
    docker_home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """The login reaches the registry from either source; the password is in neither XCom, the
    rendered fields nor what the task printed (dag.test() prints unmasked: TESTING-NOTES)."""
    import pendulum
    from airflow.models.renderedtifields import RenderedTaskInstanceFields
    from airflow.sdk import DAG
    from airflow.utils.session import create_session

    from airflow_training_guard.operators.preflight import PreflightOperator
    from tests.helpers import xcom_value

    conn_id = None
    if source == "connection":
        conn_id = "preflight_registry"
        monkeypatch.setenv(
            "AIRFLOW_CONN_PREFLIGHT_REGISTRY",
            json.dumps(
                {"conn_type": "docker", "host": auth_registry.host, "login": USER, "password": PASSWORD}
            ),
        )
    else:
        _credential_helper(
            tmp_path / "bin", "pf", {auth_registry.host: {"Username": USER, "Secret": PASSWORD}}, monkeypatch
        )
        _write_config(docker_home, {"credHelpers": {auth_registry.host: "pf"}})
    dag_id = f"tg_preflight_private_{source.replace(' ', '_')}"
    with DAG(dag_id=dag_id, schedule=None, start_date=pendulum.datetime(2026, 11, 1, tz="UTC")) as dag:
        PreflightOperator(
            task_id="preflight",
            hub_conn_id=None,
            image=f"{auth_registry.host}/ml/private:v1",
            resolve_image_tag=True,
            registry_conn_id=conn_id,
        )
    assert run_dag(dag) == {"preflight": "success"}
    report = json.dumps(xcom_value(dag_id, "preflight"))
    assert "sha256:" in report
    with create_session() as session:
        rows = session.query(RenderedTaskInstanceFields).filter_by(dag_id=dag_id).all()
        rendered = json.dumps([row.rendered_fields for row in rows])
    assert "ml/private:v1" in rendered
    printed = capfd.readouterr()
    encoded = _auth(USER, PASSWORD)
    for text in (report, rendered, printed.out + printed.err):
        assert PASSWORD not in text and encoded not in text
