"""OCI registry checks: does a pinned digest exist, and what digest does a tag point at right now.

``HEAD /v2/<repository>/manifests/<digest or tag>`` with the Accept headers of OCI indexes and
manifests and Docker v2 manifests and lists (a registry answers 404 for a manifest type the client
did not accept). On ``401`` with ``WWW-Authenticate: Bearer realm=...,service=...,scope=...`` a token
is fetched (anonymously, with a login and password, or by exchanging an identity token) and the
request retried, as the distribution token spec describes. ``404`` means the digest is not in the registry; ``429`` and
``5xx`` are retried with exponential backoff (``tenacity``) and then reported as unreachable or
rate-limited.

Credentials go only to the host they belong to (issue 14): the login and password are sent to the
registry's own host, to a token service (``realm``) on that host, or to hosts the user lists in
``credential_hosts`` (Docker Hub's ``auth.docker.io`` is listed for ``registry-1.docker.io``), and
over https only unless the registry is on loopback or configured with ``scheme="http"``. A realm
elsewhere is asked for an anonymous token instead. A redirect to another host (a blob store, a CDN)
is followed without the ``Authorization`` header, as the Docker clients do; urllib's default
redirect handler would copy it.

The registry protocol is spoken with ``urllib`` on purpose: the credential routing above (per host,
per redirect, per token realm) is the point of this module, and neither ``oras`` nor the Docker
SDK (which talks to a Docker daemon) lets a caller decide it. Logins come from an Airflow
``docker`` connection and from the Docker client's config and credential helpers, read by the
Docker SDK's ``docker.auth`` (:mod:`~airflow_training_guard.hooks.registry_credentials`).
:class:`OciRegistryHook` is the Airflow hook; :class:`OciRegistryClient` takes the logins directly.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Collection, Mapping
from functools import cached_property
from typing import IO, TYPE_CHECKING, Any

from airflow.sdk import BaseHook

from airflow_training_guard.exceptions import GuardConfigError, TrainingGuardError
from airflow_training_guard.hooks.registry_credentials import (
    ANONYMOUS,
    DockerConfigError,
    RegistryCredentials,
    connection_host,
    from_docker_config,
    same_registry,
)
from airflow_training_guard.policies.images import ImageReference, parse_image_reference
from airflow_training_guard.secrets import mask

if TYPE_CHECKING:
    from tenacity import RetryCallState

log = logging.getLogger(__name__)

MANIFEST_MEDIA_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
_LOOPBACK = re.compile(r"^(localhost|127\.\d+\.\d+\.\d+|\[::1\])(:\d+)?$")
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')
#: Longest wait between two attempts, seconds.
MAX_WAIT = 60.0
#: ``client_id`` sent with an identity-token (OAuth2 refresh token) exchange.
OAUTH_CLIENT_ID = "airflow-training-guard"
#: Token services known to belong to a registry on another host: credentials may go there.
DEFAULT_CREDENTIAL_HOSTS: Mapping[str, tuple[str, ...]] = {"registry-1.docker.io": ("auth.docker.io",)}


def _host_port(url: str) -> tuple[str, str]:
    """``(scheme, host[:port])`` of ``url``, lowercased, default ports dropped."""
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    if port is not None and (scheme, port) not in (("http", 80), ("https", 443)):
        host = f"{host}:{port}"
    return scheme, host


def _normalise_host(host: str) -> str:
    return _host_port(host if "://" in host else f"https://{host}")[1]


class _CredentialRedirectHandler(urllib.request.HTTPRedirectHandler):
    """Follow redirects, dropping ``Authorization`` when the target may not receive credentials.

    urllib's own handler copies every header to the new URL, so a registry answering a manifest
    request with ``307 Location: https://storage.example/...`` sent the registry password there.
    """

    def __init__(self, may_receive: Callable[[str], bool]) -> None:
        self.may_receive = may_receive

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: Any,
        newurl: str,
    ) -> urllib.request.Request | None:
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is None:
            return None
        if req.get_method() == "HEAD":
            # urllib turns a redirected HEAD into a GET (a whole blob download); keep the method.
            new = urllib.request.Request(
                new.full_url,
                headers=dict(new.header_items()),
                origin_req_host=new.origin_req_host,
                unverifiable=True,
                method="HEAD",
            )
        if not self.may_receive(newurl):
            new.remove_header("Authorization")
            log.info(
                "registry redirected to %s: following it without credentials (not the registry's host)",
                _host_port(newurl)[1],
            )
        return new


class _Transient(Exception):
    """One attempt failed in a way a later attempt may not: a timeout, a refused connection, 429, 5xx."""

    def __init__(self, reason: str, retry_after: float = 0.0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class RegistryError(TrainingGuardError):
    """A registry check failed. ``problem`` and ``fix`` feed the pre-flight report."""

    def __init__(self, problem: str, fix: str) -> None:
        super().__init__(f"{problem}; {fix}")
        self.problem = problem
        self.fix = fix


class DigestNotFoundError(RegistryError):
    """The registry does not have the manifest (digest or tag)."""


class RegistryAuthError(RegistryError):
    """The registry refused the credentials (401/403 after authenticating)."""


class RegistryUnreachableError(RegistryError):
    """The registry timed out, refused the connection, or answered 429/5xx after every retry."""


def parse_bearer_challenge(header: str) -> dict[str, str] | None:
    """``Bearer realm="...",service="...",scope="..."`` -> its parameters; ``None`` for other schemes."""
    scheme, _, rest = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return dict(_CHALLENGE_PARAM.findall(rest))


class OciRegistryClient:
    """Talk to one or more OCI registries over the distribution HTTP API (v2).

    :param username: login for the token service or basic auth (``None``: anonymous).
    :param password: password or token.
    :param scheme: ``"https"`` or ``"http"``; ``None`` picks ``http`` for loopback hosts, else ``https``.
    :param timeout: seconds per request.
    :param retries: attempts after the first for timeouts, connection errors, 429 and 5xx.
    :param backoff: first wait between attempts, seconds; doubles (``Retry-After`` wins when larger).
    :param credential_hosts: hosts (``host`` or ``host:port``) besides the registry's own that may
        receive the credentials: a token service or a mirror on another host. Redirects and token
        realms anywhere else get no credentials.
    :param credentials: ``registry_host -> RegistryCredentials``, asked once per registry when no
        ``username`` is given (the hook passes the connection's and the Docker config's logins).
    """

    def __init__(
        self,
        *,
        username: str | None = None,
        password: str | None = None,
        scheme: str | None = None,
        timeout: float = 10.0,
        retries: int = 3,
        backoff: float = 1.0,
        credential_hosts: Collection[str] = (),
        credentials: Callable[[str], RegistryCredentials] | None = None,
    ) -> None:
        if scheme not in (None, "http", "https"):
            raise TrainingGuardError(f"scheme {scheme!r} must be 'http', 'https' or None")
        if isinstance(credential_hosts, str) or not all(
            isinstance(host, str) and host for host in credential_hosts
        ):
            raise GuardConfigError(
                f"credential_hosts {credential_hosts!r} must be a list of host names, e.g. ['auth.example.com']"
            )
        mask(password)
        self.username = username
        self.password = password
        self.scheme = scheme
        self.credential_hosts = frozenset(_normalise_host(host) for host in credential_hosts)
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.credential_source = credentials
        self._logins: dict[str, RegistryCredentials] = {}
        self._tokens: dict[tuple[str, str], str] = {}

    def _base(self, ref: ImageReference) -> str:
        host = ref.registry_host
        scheme = self.scheme or ("http" if _LOOPBACK.match(host) else "https")
        return f"{scheme}://{host}"

    def login(self, registry_host: str) -> RegistryCredentials:
        """The credentials for ``registry_host``: ``username``/``password`` when given, else what the
        ``credentials`` callable finds (asked once per registry), else anonymous."""
        if self.username is not None:
            return RegistryCredentials(username=self.username, password=self.password, source="arguments")
        if self.credential_source is None:
            return ANONYMOUS
        if registry_host not in self._logins:
            self._logins[registry_host] = self.credential_source(registry_host)
        return self._logins[registry_host]

    def _credentials(self, registry_host: str) -> str | None:
        """``Basic <base64>`` for the registry's login; ``None`` when anonymous or a token login."""
        login = self.login(registry_host)
        if login.username is None:
            return None
        raw = f"{login.username}:{login.password or ''}".encode()
        encoded = base64.b64encode(raw).decode()
        mask(encoded)
        return "Basic " + encoded

    def _may_receive_credentials(self, url: str, registry_host: str) -> bool:
        """Whether ``url`` may be sent the credentials of the registry at ``registry_host``.

        Its host must be the registry's, or listed in ``credential_hosts`` (or
        :data:`DEFAULT_CREDENTIAL_HOSTS`), and the scheme https, unless the registry is on loopback
        or configured with ``scheme="http"`` (explicitly insecure).
        """
        scheme, host = _host_port(url)
        registry = _normalise_host(registry_host)
        allowed = {registry, *self.credential_hosts}
        allowed.update(_normalise_host(h) for h in DEFAULT_CREDENTIAL_HOSTS.get(registry, ()))
        if host not in allowed:
            return False
        insecure_ok = self.scheme == "http" or bool(_LOOPBACK.match(registry_host))
        return scheme == "https" or (scheme == "http" and insecure_ok)

    def _fetch_token(self, challenge: Mapping[str, str], image: str, registry_host: str) -> str:
        realm = challenge.get("realm")
        if not realm:
            raise RegistryAuthError(
                f"image {image}: the registry asked for a bearer token without a realm", "check the registry"
            )
        query = {k: v for k, v in challenge.items() if k in ("service", "scope")}
        url = realm + ("&" if "?" in realm else "?") + urllib.parse.urlencode(query)
        login = self.login(registry_host)
        headers: dict[str, str] = {}
        data: bytes | None = None
        method = "GET"
        credentials = self._credentials(registry_host)
        withheld = False
        may_receive = self._may_receive_credentials(realm, registry_host)
        if login.identity_token and may_receive:
            # An identity token is an OAuth2 refresh token (docker login to ACR, some ECR/GCR setups):
            # exchanged by POST at the token service, as the distribution token spec describes.
            method, url = "POST", realm
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            data = urllib.parse.urlencode(
                {
                    **query,
                    "grant_type": "refresh_token",
                    "client_id": OAUTH_CLIENT_ID,
                    "refresh_token": login.identity_token,
                }
            ).encode()
        elif credentials and may_receive:
            headers["Authorization"] = credentials
        elif not login.anonymous:
            # A registry (or whoever answers in its name) must not be able to send our password to a
            # host of its choosing: ask that token service anonymously instead.
            withheld = True
            log.warning(
                "image %s: the registry's token service %s is not on the registry's host %s (or not https); "
                "asking it for an anonymous token, without the credentials from %s",
                image,
                realm,
                registry_host,
                login.source,
            )
        status, _, body = self._send(
            method, url, headers, what=f"a token for {image}", credential_host=registry_host, data=data
        )
        if status in (401, 403) and withheld:
            raise RegistryAuthError(
                f"image {image}: the token service {realm} refused anonymous access (HTTP {status}); the "
                f"credentials from {login.source} were not sent to it because {_host_port(realm)[1]} is "
                f"not the registry's host {registry_host}"
                + ("" if realm.lower().startswith("https://") else " and the realm is not https"),
                f"if {_host_port(realm)[1]} is the registry's own token service, add it to "
                '"credential_hosts" in the registry connection\'s extra (https only)',
            )
        if status in (401, 403) or (method == "POST" and status == 400):  # 400: invalid_grant
            raise RegistryAuthError(
                f"image {image}: the token service {realm} refused "
                + (f"the credentials from {login.source}" if not login.anonymous else "anonymous access")
                + f" (HTTP {status})",
                "set a login and password (or token) with pull access on the registry connection, or "
                "'docker login' the worker's user to the registry",
            )
        if status != 200:
            raise RegistryUnreachableError(
                f"image {image}: the token service {realm} answered HTTP {status}", "retry later"
            )
        try:
            answer = json.loads(body)
            token = str(answer.get("token") or answer["access_token"])
        except (ValueError, KeyError, TypeError) as err:
            raise RegistryAuthError(
                f"image {image}: the token service {realm} returned no token",
                "check the registry's auth setup",
            ) from err
        mask(token)
        return token

    def _send(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        *,
        what: str,
        credential_host: str,
        data: bytes | None = None,
    ) -> tuple[int, Mapping[str, str], bytes]:
        """Send, retrying (tenacity) timeouts, connection errors, 429 and 5xx with exponential backoff
        (``Retry-After`` wins when larger, up to 30 s); any other status is returned at once.
        Redirects keep ``Authorization`` only towards ``credential_host``'s allowed hosts (see
        :meth:`_may_receive_credentials`)."""
        from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

        opener = urllib.request.build_opener(
            _CredentialRedirectHandler(lambda target: self._may_receive_credentials(target, credential_host))
        )

        def attempt() -> tuple[int, Mapping[str, str], bytes]:
            request = urllib.request.Request(url, data=data, method=method, headers=dict(headers))
            try:
                with opener.open(request, timeout=self.timeout) as response:
                    return response.status, dict(response.headers), response.read()
            except urllib.error.HTTPError as err:
                err_headers = dict(err.headers or {})
                body = err.read() if method != "HEAD" else b""
                if err.code != 429 and err.code < 500:
                    return err.code, err_headers, body
                retry_after = err_headers.get("Retry-After", "")
                raise _Transient(
                    f"HTTP {err.code}", min(float(retry_after), 30.0) if retry_after.isdigit() else 0.0
                ) from None
            except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as err:
                raise _Transient(f"{type(err).__name__}: {getattr(err, 'reason', err)}") from None

        exponential = wait_exponential(multiplier=self.backoff, max=MAX_WAIT)

        def wait(state: RetryCallState) -> float:
            err = state.outcome.exception() if state.outcome else None
            return max(exponential(state), err.retry_after if isinstance(err, _Transient) else 0.0)

        retrying = Retrying(
            retry=retry_if_exception_type(_Transient),
            stop=stop_after_attempt(self.retries + 1),
            wait=wait,
            before_sleep=lambda state: log.warning(
                "registry %s: %s; retry %d/%d in %.1fs",
                what,
                state.outcome.exception() if state.outcome else "no answer",
                state.attempt_number,
                self.retries,
                state.upcoming_sleep,
            ),
            reraise=True,
        )
        try:
            return retrying(attempt)
        except _Transient as err:
            last = err.reason
        rate_limited = last == "HTTP 429"
        raise RegistryUnreachableError(
            f"registry {'rate-limited' if rate_limited else 'unreachable'} while reading {what} "
            f"({last} after {self.retries + 1} attempts); nothing is known about whether it exists",
            "retry later"
            + (
                ", or authenticate (set credentials on the registry connection) for a higher limit"
                if rate_limited
                else ""
            )
            + "; check the registry's status and the worker's network",
        )

    def _head_manifest(self, ref: ImageReference, reference: str) -> tuple[int, Mapping[str, str]]:
        url = f"{self._base(ref)}/v2/{ref.api_repository}/manifests/{reference}"
        image = f"{ref.name}{'@' if reference.startswith('sha256:') else ':'}{reference}"
        headers = {"Accept": ", ".join(MANIFEST_MEDIA_TYPES)}
        key = (ref.registry_host, ref.api_repository)
        if key in self._tokens:
            headers["Authorization"] = f"Bearer {self._tokens[key]}"
        status, response_headers, _ = self._send(
            "HEAD", url, headers, what=image, credential_host=ref.registry_host
        )
        if status == 401:
            lowered = {k.lower(): v for k, v in response_headers.items()}
            challenge = parse_bearer_challenge(lowered.get("www-authenticate", ""))
            if challenge is not None:
                challenge.setdefault("scope", f"repository:{ref.api_repository}:pull")
                self._tokens[key] = self._fetch_token(challenge, image, ref.registry_host)
                headers["Authorization"] = f"Bearer {self._tokens[key]}"
            elif (basic := self._credentials(ref.registry_host)) is not None:
                headers["Authorization"] = basic
            else:
                login = self.login(ref.registry_host)
                raise RegistryAuthError(
                    f"image {image}: the registry requires authentication (HTTP 401)"
                    + (
                        ""
                        if login.anonymous
                        else f"; the identity token from {login.source} needs a bearer "
                        "token service, and this registry offers basic auth only"
                    ),
                    "set a login and password with pull access on the registry connection (type docker, "
                    "host = the registry), or 'docker login' the worker's user to the registry",
                )
            status, response_headers, _ = self._send(
                "HEAD", url, headers, what=image, credential_host=ref.registry_host
            )
        if status in (401, 403):
            raise RegistryAuthError(
                f"image {image}: the registry denied access (HTTP {status})",
                "give the registry connection's credentials pull access to the repository",
            )
        return status, response_headers

    def digest_exists(self, image: str | ImageReference) -> str:
        """Check the pinned digest of ``image`` exists; return it.

        :raises DigestNotFoundError: on 404.
        :raises RegistryAuthError: on 401/403 after authenticating.
        :raises RegistryUnreachableError: on timeouts, connection errors, 429/5xx after retries.
        """
        ref = parse_image_reference(image) if isinstance(image, str) else image
        if ref.digest is None:
            raise DigestNotFoundError(
                f"image {ref} is not pinned by digest",
                "pin it ('<image>@sha256:<digest>') or resolve its tag",
            )
        status, _ = self._head_manifest(ref, ref.digest)
        if status == 404:
            raise DigestNotFoundError(
                f"image digest {ref.digest} not found in registry {ref.registry_host} repository {ref.api_repository}",
                "check the digest was pushed to this repository (crane digest <image>:<tag>), or that the "
                "repository name is right",
            )
        if status != 200:
            raise RegistryUnreachableError(f"image {ref}: the registry answered HTTP {status}", "retry later")
        return ref.digest

    def resolve_tag(self, image: str | ImageReference) -> ImageReference:
        """Resolve the tag of ``image`` to the digest it points at now; return the pinned reference.

        Call it once, at pre-flight, and run with the returned reference: a tag that moves later
        does not change the run.
        """
        ref = parse_image_reference(image) if isinstance(image, str) else image
        if ref.digest is not None:
            self.digest_exists(ref)
            return ref
        tag = ref.tag or "latest"
        status, headers = self._head_manifest(ref, tag)
        if status == 404:
            raise DigestNotFoundError(
                f"image tag {ref.name}:{tag} not found in registry {ref.registry_host}",
                "check the tag was pushed, and the repository name",
            )
        if status != 200:
            raise RegistryUnreachableError(f"image {ref}: the registry answered HTTP {status}", "retry later")
        lowered = {k.lower(): v for k, v in headers.items()}
        digest = lowered.get("docker-content-digest")
        if not digest:
            raise RegistryError(
                f"image {ref.name}:{tag}: the registry returned no Docker-Content-Digest header",
                "pin the image by digest yourself (crane digest <image>)",
            )
        return ImageReference(registry=ref.registry, repository=ref.repository, tag=tag).pinned(digest)


class OciRegistryHook(BaseHook):
    """:class:`OciRegistryClient` with credentials from an Airflow ``docker`` connection and the
    Docker client's config (``~/.docker/config.json``, its credential helpers).

    For each registry an image is on, the first of these that has a login is used:

    1. the connection (type ``docker``, as the docker provider defines it): ``login`` and
       ``password``, for the registry in ``host`` (and ``port``); a connection without a host
       applies to every registry. Extra: ``{"scheme": "http", "timeout": 10, "retries": 3,
       "backoff": 1.0, "credential_hosts": ["auth.example.com"], "docker_config": true}``.
    2. the Docker config (``docker_config``: ``true``/absent = ``$DOCKER_CONFIG/config.json`` or
       ``~/.docker/config.json``; a path; ``false`` = never read it), see
       :mod:`~airflow_training_guard.hooks.registry_credentials`.
    3. anonymous.

    Every secret is masked before it is first used.

    :param registry_conn_id: the connection id; ``None``: no connection (Docker config, else anonymous).
    :param docker_config: overrides the connection's ``docker_config``.
    :param client_kwargs: override the connection's settings (``scheme``, ``timeout``, ``retries``,
        ``backoff``, ``credential_hosts``, ``username``, ``password``).
    """

    conn_name_attr = "registry_conn_id"
    default_conn_name = "docker_default"
    conn_type = "docker"
    hook_name = "OCI registry (Docker connection)"

    def __init__(
        self,
        registry_conn_id: str | None = None,
        *,
        docker_config: str | bool | None = None,
        **client_kwargs: Any,
    ) -> None:
        super().__init__()
        self.registry_conn_id = registry_conn_id
        self.docker_config = docker_config
        self.client_kwargs = client_kwargs

    @cached_property
    def client(self) -> OciRegistryClient:
        """The client, configured from the connection (read once, here)."""
        kwargs: dict[str, Any] = {}
        conn_login: RegistryCredentials | None = None
        conn_registry: str | None = None
        docker_config: Any = None
        if self.registry_conn_id is not None:
            conn = self.get_connection(self.registry_conn_id)
            mask(conn.password)
            if conn.login:
                conn_login = RegistryCredentials(
                    username=conn.login,
                    password=conn.password or None,
                    source=f"the Airflow connection {self.registry_conn_id!r}",
                )
            conn_registry = connection_host(conn.host, conn.port)
            extra = conn.extra_dejson
            for name in ("scheme", "timeout", "retries", "backoff", "credential_hosts"):
                if name in extra:
                    kwargs[name] = extra[name]
            docker_config = extra.get("docker_config")
        if self.docker_config is not None:
            docker_config = self.docker_config
        if docker_config is not None and not isinstance(docker_config, (bool, str)):
            raise GuardConfigError(
                f"docker_config {docker_config!r} of registry connection {self.registry_conn_id!r} must be "
                "true (the Docker CLI's config.json), false (never read it) or the path of a config.json"
            )
        config_path = docker_config if isinstance(docker_config, str) else None
        read_config = docker_config is not False

        def credentials(registry_host: str) -> RegistryCredentials:
            if conn_login is not None and (
                conn_registry is None or same_registry(conn_registry, registry_host)
            ):
                return conn_login
            if read_config:
                try:
                    found = from_docker_config(registry_host, config_path)
                except DockerConfigError as err:
                    raise RegistryAuthError(err.problem, err.fix) from None
                if not found.anonymous:
                    log.info("registry %s: using the login from the %s", registry_host, found.source)
                return found
            return ANONYMOUS

        kwargs["credentials"] = credentials
        kwargs.update(self.client_kwargs)
        return OciRegistryClient(**kwargs)

    def digest_exists(self, image: str | ImageReference) -> str:
        """See :meth:`OciRegistryClient.digest_exists`."""
        return self.client.digest_exists(image)

    def resolve_tag(self, image: str | ImageReference) -> ImageReference:
        """See :meth:`OciRegistryClient.resolve_tag`."""
        return self.client.resolve_tag(image)


__all__ = [
    "DEFAULT_CREDENTIAL_HOSTS",
    "MANIFEST_MEDIA_TYPES",
    "DigestNotFoundError",
    "OciRegistryClient",
    "OciRegistryHook",
    "RegistryAuthError",
    "RegistryError",
    "RegistryUnreachableError",
    "parse_bearer_challenge",
]
