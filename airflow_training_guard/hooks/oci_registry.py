"""OCI registry checks: does a pinned digest exist, and what digest does a tag point at right now.

``HEAD /v2/<repository>/manifests/<digest or tag>`` with the Accept headers of OCI indexes and
manifests and Docker v2 manifests and lists (a registry answers 404 for a manifest type the client
did not accept). On ``401`` with ``WWW-Authenticate: Bearer realm=...,service=...,scope=...`` a token
is fetched (anonymously, or with the connection's login and password) and the request retried, as
the distribution token spec describes. ``404`` means the digest is not in the registry; ``429`` and
``5xx`` are retried with backoff and then reported as unreachable or rate-limited.

Credentials go only to the host they belong to (issue 14): the login and password are sent to the
registry's own host, to a token service (``realm``) on that host, or to hosts the user lists in
``credential_hosts`` (Docker Hub's ``auth.docker.io`` is listed for ``registry-1.docker.io``), and
over https only unless the registry is on loopback or configured with ``scheme="http"``. A realm
elsewhere is asked for an anonymous token instead. A redirect to another host (a blob store, a CDN)
is followed without the ``Authorization`` header, as the Docker clients do; urllib's default
redirect handler would copy it.

Standard library only (``urllib``). :class:`OciRegistryClient` needs no Airflow;
:class:`OciRegistryHook` reads credentials from an Airflow connection.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Collection, Mapping
from functools import cached_property
from typing import IO, Any

from airflow_training_guard.exceptions import GuardConfigError, TrainingGuardError
from airflow_training_guard.policies.images import ImageReference, parse_image_reference
from airflow_training_guard.secrets import mask

log = logging.getLogger(__name__)

MANIFEST_MEDIA_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
_LOOPBACK = re.compile(r"^(localhost|127\.\d+\.\d+\.\d+|\[::1\])(:\d+)?$")
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')
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
        self._tokens: dict[tuple[str, str], str] = {}

    def _base(self, ref: ImageReference) -> str:
        host = ref.registry_host
        scheme = self.scheme or ("http" if _LOOPBACK.match(host) else "https")
        return f"{scheme}://{host}"

    def _credentials(self) -> str | None:
        if self.username is None:
            return None
        raw = f"{self.username}:{self.password or ''}".encode()
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
        headers = {}
        credentials = self._credentials()
        withheld = False
        if credentials and self._may_receive_credentials(realm, registry_host):
            headers["Authorization"] = credentials
        elif credentials:
            # A registry (or whoever answers in its name) must not be able to send our password to a
            # host of its choosing: ask that token service anonymously instead.
            withheld = True
            log.warning(
                "image %s: the registry's token service %s is not on the registry's host %s (or not https); "
                "asking it for an anonymous token, without the registry connection's credentials",
                image,
                realm,
                registry_host,
            )
        status, _, body = self._send(
            "GET", url, headers, what=f"a token for {image}", credential_host=registry_host
        )
        if status in (401, 403) and withheld:
            raise RegistryAuthError(
                f"image {image}: the token service {realm} refused anonymous access (HTTP {status}); the "
                f"registry connection's credentials were not sent to it because {_host_port(realm)[1]} is "
                f"not the registry's host {registry_host}"
                + ("" if realm.lower().startswith("https://") else " and the realm is not https"),
                f"if {_host_port(realm)[1]} is the registry's own token service, add it to "
                '"credential_hosts" in the registry connection\'s extra (https only)',
            )
        if status in (401, 403):
            raise RegistryAuthError(
                f"image {image}: the token service {realm} refused "
                + ("the connection's credentials" if credentials else "anonymous access")
                + f" (HTTP {status})",
                "set a login and password (or token) with pull access on the registry connection",
            )
        if status != 200:
            raise RegistryUnreachableError(
                f"image {image}: the token service {realm} answered HTTP {status}", "retry later"
            )
        try:
            data = json.loads(body)
            token = str(data.get("token") or data["access_token"])
        except (ValueError, KeyError, TypeError) as err:
            raise RegistryAuthError(
                f"image {image}: the token service {realm} returned no token",
                "check the registry's auth setup",
            ) from err
        mask(token)
        return token

    def _send(
        self, method: str, url: str, headers: Mapping[str, str], *, what: str, credential_host: str
    ) -> tuple[int, Mapping[str, str], bytes]:
        """Send with retries; redirects keep ``Authorization`` only towards ``credential_host``'s
        allowed hosts (see :meth:`_may_receive_credentials`)."""
        opener = urllib.request.build_opener(
            _CredentialRedirectHandler(lambda target: self._may_receive_credentials(target, credential_host))
        )
        last = ""
        for attempt in range(self.retries + 1):
            wait = self.backoff * 2**attempt
            request = urllib.request.Request(url, method=method, headers=dict(headers))
            try:
                with opener.open(request, timeout=self.timeout) as response:
                    return response.status, dict(response.headers), response.read()
            except urllib.error.HTTPError as err:
                status = err.code
                err_headers = dict(err.headers or {})
                body = err.read() if method != "HEAD" else b""
                if status != 429 and status < 500:
                    return status, err_headers, body
                last = f"HTTP {status}"
                retry_after = err_headers.get("Retry-After", "")
                if retry_after.isdigit():
                    wait = max(wait, min(float(retry_after), 30.0))
            except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as err:
                last = f"{type(err).__name__}: {getattr(err, 'reason', err)}"
            if attempt < self.retries:
                log.warning(
                    "registry %s: %s; retry %d/%d in %.1fs", what, last, attempt + 1, self.retries, wait
                )
                time.sleep(wait)
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
            elif self._credentials() is not None:
                headers["Authorization"] = self._credentials() or ""
            else:
                raise RegistryAuthError(
                    f"image {image}: the registry requires authentication (HTTP 401)",
                    "set a login and password with pull access on the registry connection",
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


class OciRegistryHook:
    """An :class:`OciRegistryClient` configured from an Airflow connection (any type, e.g. ``docker``).

    Reads ``login`` and ``password``, and extra ``{"scheme": "http", "timeout": 10, "retries": 3,
    "backoff": 1.0, "credential_hosts": ["auth.example.com"]}``. ``None`` as the connection id means
    anonymous access. The password is masked before it is first used.

    :param registry_conn_id: the connection id, or ``None``.
    """

    def __init__(self, registry_conn_id: str | None = None, **client_kwargs: Any) -> None:
        self.registry_conn_id = registry_conn_id
        self.client_kwargs = client_kwargs

    @cached_property
    def client(self) -> OciRegistryClient:
        kwargs: dict[str, Any] = {}
        if self.registry_conn_id is not None:
            from airflow.sdk import BaseHook

            conn = BaseHook.get_connection(self.registry_conn_id)
            mask(conn.password)
            kwargs.update(username=conn.login or None, password=conn.password or None)
            extra = conn.extra_dejson
            for name in ("scheme", "timeout", "retries", "backoff", "credential_hosts"):
                if name in extra:
                    kwargs[name] = extra[name]
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
