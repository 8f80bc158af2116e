"""Which registry a docker connection is for, and Docker config parsing (no servers)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from airflow_training_guard.hooks.registry_credentials import (
    DockerConfigError,
    RegistryCredentials,
    connection_host,
    from_docker_config,
    same_registry,
)
from airflow_training_guard.secrets import redact


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("registry.example.com", "https://registry.example.com", True),
        ("Registry.Example.com:443", "registry.example.com", True),
        ("registry.example.com:5000", "registry.example.com", False),
        ("docker.io", "registry-1.docker.io", True),
        ("https://index.docker.io/v1/", "registry-1.docker.io", True),
        ("registry.example.com.attacker.test", "registry.example.com", False),
        ("127.0.0.1:5000", "http://127.0.0.1:5000", True),
    ],
)
def test_same_registry_compares_hosts_not_spellings(a: str, b: str, same: bool) -> None:
    assert same_registry(a, b) is same


@pytest.mark.parametrize(
    ("host", "port", "expected"),
    [
        (None, None, None),
        ("  ", 5000, None),
        ("registry.example.com", None, "registry.example.com"),
        ("registry.example.com", 5000, "registry.example.com:5000"),
        ("https://registry.example.com:6000", 5000, "registry.example.com:6000"),
        ("index.docker.io", None, "registry-1.docker.io"),
    ],
)
def test_connection_host_is_the_registry_the_login_is_for(
    host: str | None, port: int | None, expected: str | None
) -> None:
    assert connection_host(host, port) == expected


def test_credentials_are_masked_and_kept_out_of_repr() -> None:
    login = RegistryCredentials(username="u", password="repr-pass-SECRET-1", identity_token="id-tok-SECRET-2")
    assert "SECRET" not in repr(login)
    assert redact("repr-pass-SECRET-1 id-tok-SECRET-2") == "*** ***"


def test_config_auths_decode_and_missing_entries_are_anonymous(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    auth = base64.b64encode(b"robot:unit-pass-1").decode()
    config.write_text(json.dumps({"auths": {"registry.example.com": {"auth": auth}}}))
    login = from_docker_config("registry.example.com", str(config))
    assert (login.username, login.password, login.source) == ("robot", "unit-pass-1", "Docker config")
    assert from_docker_config("other.example.com", str(config)).anonymous


def test_malformed_config_names_the_file_and_the_fix(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"auths": {"registry.example.com": "not-an-object"}}))
    with pytest.raises(DockerConfigError, match=r"is not valid.*\"docker_config\": false"):
        from_docker_config("registry.example.com", str(config))
