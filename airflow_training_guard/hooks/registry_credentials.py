"""Registry credentials: from an Airflow ``docker`` connection, or from the Docker client's config.

Two places users already keep registry logins, read the way the Docker CLI reads them:

- an Airflow connection of the ``docker`` type (the docker provider's): ``host`` is the registry
  (``registry.example.com``, ``https://registry.example.com``, with ``port`` if not in the host),
  ``login`` and ``password``. A connection without a host applies to every registry.
- the Docker client's ``config.json`` (``$DOCKER_CONFIG/config.json``, else
  ``~/.docker/config.json``): ``auths`` entries with a base64 ``auth`` (``user:password``) or an
  ``identitytoken``; ``credHelpers`` (per registry) and ``credsStore`` (default) credential
  helpers, run as ``docker-credential-<helper> get`` with the registry host on stdin (how ECR, GCR,
  ACR and desktop keychains log in). A helper's ``Username: "<token>"`` means its ``Secret`` is an
  identity token.

Reading ``config.json`` and running the helpers is done by ``docker.auth`` of the Docker SDK
(``docker`` on PyPI, maintained by Docker; the docker provider depends on it too), not by hand:
it knows the file's legacy forms, Docker Hub's many names and the helper protocol's quirks.

Every secret found is given to the secrets masker before it is used (:func:`mask`).
"""

from __future__ import annotations

import urllib.parse
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_training_guard.exceptions import GuardConfigError
from airflow_training_guard.policies.images import DOCKER_HUB_ALIASES, DOCKER_HUB_HOST
from airflow_training_guard.secrets import mask, redact

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "ANONYMOUS",
    "DockerConfigError",
    "RegistryCredentials",
    "connection_host",
    "from_docker_config",
    "same_registry",
]


class DockerConfigError(GuardConfigError):
    """The Docker config or one of its credential helpers could not give credentials."""

    def __init__(self, problem: str, fix: str) -> None:
        super().__init__(f"{problem}; {fix}")
        self.problem = problem
        self.fix = fix


@dataclass(frozen=True)
class RegistryCredentials:
    """A login for one registry: ``username``/``password``, or an ``identity_token`` (an OAuth2
    refresh token, exchanged at the registry's token service), or nothing (anonymous).

    ``source`` says where it came from, for logs and error texts; it never holds a secret.
    """

    username: str | None = None
    password: str | None = field(default=None, repr=False)
    identity_token: str | None = field(default=None, repr=False)
    source: str = "anonymous"

    def __post_init__(self) -> None:
        mask(self.password)
        mask(self.identity_token)

    @property
    def anonymous(self) -> bool:
        """Whether there is nothing to send."""
        return self.username is None and self.identity_token is None


ANONYMOUS = RegistryCredentials()


def _host_of(value: str) -> str:
    """``https://Registry.Example:5000/v1/`` -> ``registry.example:5000``; Docker Hub's names -> its API host."""
    text = value.strip()
    parts = urllib.parse.urlsplit(text if "://" in text else f"//{text}")
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    if parts.port is not None and parts.port != 443:
        host = f"{host}:{parts.port}"
    return DOCKER_HUB_HOST if host in DOCKER_HUB_ALIASES else host


def same_registry(a: str, b: str) -> bool:
    """Whether two spellings (host, ``host:port``, URL, Docker Hub alias) name one registry."""
    return _host_of(a) == _host_of(b)


def connection_host(host: str | None, port: int | None) -> str | None:
    """The registry a ``docker`` connection is for (``host`` plus ``port`` when the host has none)."""
    if not host or not host.strip():
        return None
    if port and not _host_of(host).rsplit("]", 1)[-1].count(":"):
        return _host_of(f"{_host_of(host)}:{port}")
    return _host_of(host)


def _docker_hub(registry_host: str) -> bool:
    return _host_of(registry_host) == DOCKER_HUB_HOST


def from_docker_config(registry_host: str, config_path: str | None = None) -> RegistryCredentials:
    """The Docker client's credentials for ``registry_host`` (``host[:port]``); anonymous when none.

    :param config_path: a ``config.json`` to read; ``None``: ``$DOCKER_CONFIG/config.json``, else
        ``~/.docker/config.json`` (the Docker CLI's order).
    :raises DockerConfigError: the file is malformed, or a credential helper is missing or failed.
    """
    from docker import auth, errors

    try:
        config = auth.load_config(config_path=config_path)
    except errors.DockerException as err:
        raise DockerConfigError(
            f"the Docker config {config_path or '($DOCKER_CONFIG or ~/.docker)/config.json'} is not valid: "
            f"{redact(str(err))}",
            "fix the file ('docker login' rewrites it) or set \"docker_config\": false in the registry "
            "connection's extra",
        ) from None
    if config.is_empty:
        return ANONYMOUS
    # docker.auth names Docker Hub "docker.io" (None); every other registry by its host[:port].
    lookup = None if _docker_hub(registry_host) else registry_host
    helper = config.get_credential_store(lookup)
    try:
        with warnings.catch_warnings():  # "helper not on PATH" warns, then fails: the error below says it
            warnings.simplefilter("ignore", UserWarning)
            entry: Mapping[str, Any] | None = config.resolve_authconfig(lookup)
    except errors.DockerException as err:
        raise DockerConfigError(
            f"the Docker credential helper docker-credential-{helper} failed for registry {registry_host}: "
            f"{redact(str(err))}",
            f"check it is on the worker's PATH and logged in (run 'echo {registry_host} | "
            f"docker-credential-{helper} get' as the worker's user), or set credentials on the registry "
            "connection",
        ) from None
    if not entry:
        return ANONYMOUS
    where = (
        f"Docker credential helper docker-credential-{helper}"
        if "ServerAddress" in entry
        else "Docker config"
    )
    token = entry.get("IdentityToken")
    if token:
        return RegistryCredentials(identity_token=str(token), source=where)
    username = entry.get("Username") or entry.get("username")
    password = entry.get("Password") or entry.get("password")
    if not username:
        return ANONYMOUS
    return RegistryCredentials(username=str(username), password=str(password or ""), source=where)
