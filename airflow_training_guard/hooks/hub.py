"""HubHook: the Hugging Face Hub as an Airflow connection, for pre-flight checks and pinning.

Resolves a model or dataset at a branch, tag or commit to its commit SHA, checks named files exist
there, reads the model's parameter count, and on a miss suggests the closest existing names
(``dataset 'org/Datset' not found; did you mean 'org/dataset'?``). A Hub that times out or answers
5xx/429 is retried with exponential backoff (``tenacity``) and then reported as unreachable, never as "not found".

The connection (type ``huggingface_hub``): ``host`` is the endpoint (default
``https://huggingface.co``), ``password`` the access token (masked before its first use; error
texts quoted from the Hub are redacted, see :mod:`airflow_training_guard.secrets`), extra
``{"timeout": 10, "retries": 3, "backoff": 1.0}``.

``huggingface_hub`` is imported inside the methods, so importing this module stays light.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeVar

from airflow.sdk import BaseHook

from airflow_training_guard.exceptions import GuardConfigError
from airflow_training_guard.policies.hub_repos import (
    HubAccessError,
    HubRepoNotFoundError,
    HubRevisionNotFoundError,
    HubUnreachableError,
    RepoSpec,
    ResolvedRepo,
    closest_names,
    format_suggestions,
)
from airflow_training_guard.secrets import mask, redact, redacted_error

if TYPE_CHECKING:
    from huggingface_hub import HfApi

log = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "https://huggingface.co"
DEFAULT_TIMEOUT = 10.0
DEFAULT_RETRIES = 3
DEFAULT_BACKOFF = 1.0
#: How many of the author's repositories are read to suggest a close name.
SUGGESTION_SCAN_LIMIT = 500
#: Statuses a repeated request may turn into an answer; anything else (401, 403, 404, ...) is final.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
#: Longest wait between two attempts, seconds.
MAX_WAIT = 60.0

T = TypeVar("T")


class HubHook(BaseHook):
    """Read repositories on a Hugging Face Hub (huggingface.co or a private Hub endpoint).

    :param hub_conn_id: the ``huggingface_hub`` connection; ``None`` to use ``endpoint``/``token``.
    :param endpoint: overrides the connection's host.
    :param token: overrides the connection's token. Masked in logs.
    :param timeout: seconds per request.
    :param retries: attempts after the first one for timeouts, connection errors, 429 and 5xx.
    :param backoff: first wait between attempts, seconds; doubles each time.
    """

    conn_name_attr = "hub_conn_id"
    default_conn_name = "huggingface_hub_default"
    conn_type = "huggingface_hub"
    hook_name = "Hugging Face Hub"

    def __init__(
        self,
        hub_conn_id: str | None = default_conn_name,
        *,
        endpoint: str | None = None,
        token: str | None = None,
        timeout: float | None = None,
        retries: int | None = None,
        backoff: float | None = None,
    ) -> None:
        super().__init__()
        self.hub_conn_id = hub_conn_id
        self._endpoint = endpoint
        self._token = token
        self._timeout = timeout
        self._retries = retries
        self._backoff = backoff

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Show only what the hook reads: endpoint (host), token (password) and extra."""
        return {
            "hidden_fields": ["schema", "port", "login"],
            "relabeling": {"host": "Endpoint", "password": "Access token"},
            "placeholders": {
                "host": DEFAULT_ENDPOINT,
                "password": "hf_... (read access is enough)",
                "extra": '{"timeout": 10, "retries": 3, "backoff": 1.0}',
            },
        }

    @cached_property
    def settings(self) -> dict[str, Any]:
        """Endpoint, token, timeout, retries and backoff from the arguments, else the connection."""
        extra: dict[str, Any] = {}
        host = password = None
        if self.hub_conn_id is not None:
            from airflow.sdk.exceptions import AirflowNotFoundException

            try:
                conn = self.get_connection(self.hub_conn_id)
            except AirflowNotFoundException:
                raise GuardConfigError(
                    f"the Hub connection {self.hub_conn_id!r} does not exist; create it with type "
                    "huggingface_hub, the access token as password and the endpoint as host (empty for "
                    f"huggingface.co), e.g. AIRFLOW_CONN_{self.hub_conn_id.upper()}="
                    '\'{"conn_type": "huggingface_hub", "password": "hf_..."}\', or pass hub_conn_id=None '
                    "for anonymous access"
                ) from None
            host, password = conn.host, conn.password
            extra = conn.extra_dejson
        endpoint = (self._endpoint or host or DEFAULT_ENDPOINT).rstrip("/")
        if not endpoint.startswith(("http://", "https://")):
            endpoint = f"https://{endpoint}"
        token = self._token or password or None
        mask(token)  # before its first use: a failing first request quotes it into errors
        try:
            timeout = float(
                self._timeout if self._timeout is not None else extra.get("timeout", DEFAULT_TIMEOUT)
            )
            retries = int(
                self._retries if self._retries is not None else extra.get("retries", DEFAULT_RETRIES)
            )
            backoff = float(
                self._backoff if self._backoff is not None else extra.get("backoff", DEFAULT_BACKOFF)
            )
        except (TypeError, ValueError) as err:
            raise GuardConfigError(
                f"hub connection {self.hub_conn_id!r}: timeout, retries and backoff must be numbers: {err}"
            ) from err
        if timeout <= 0 or retries < 0 or backoff < 0:
            raise GuardConfigError(
                f"hub connection {self.hub_conn_id!r}: timeout must be > 0, retries and backoff >= 0"
            )
        return {
            "endpoint": endpoint,
            "token": token,
            "timeout": timeout,
            "retries": retries,
            "backoff": backoff,
        }

    @cached_property
    def api(self) -> HfApi:
        """The ``huggingface_hub`` client for the endpoint; ``token=False`` when no token is configured,
        so a token saved on the worker by ``hf auth login`` is never used by accident."""
        from huggingface_hub import HfApi

        settings = self.settings
        return HfApi(endpoint=settings["endpoint"], token=settings["token"] or False)

    @property
    def has_token(self) -> bool:
        """Whether a token is configured."""
        return bool(self.settings["token"])

    def with_retries(self, what: str, func: Callable[[], T]) -> T:
        """Run ``func`` (a read against :attr:`api`) with retries (tenacity) on timeouts, connection
        errors, 429 and 5xx, as the connection's ``retries``/``backoff`` say; then
        :class:`HubUnreachableError`. Other errors (401, 404, ...) pass through at once: retrying
        cannot change the answer. Promotion's registry reads go through it too.
        """
        from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

        retries, backoff = self.settings["retries"], self.settings["backoff"]
        retrying = Retrying(
            retry=retry_if_exception(is_transient_hub_error),
            stop=stop_after_attempt(retries + 1),
            wait=wait_exponential(multiplier=backoff, max=MAX_WAIT),
            before_sleep=lambda state: log.warning(
                "Hub %s: %s; retry %d/%d in %.1fs",
                what,
                _describe(state.outcome.exception() if state.outcome else None),
                state.attempt_number,
                retries,
                state.upcoming_sleep,
            ),
            reraise=True,
        )
        try:
            return retrying(func)
        except Exception as err:
            if not is_transient_hub_error(err):
                raise
            endpoint = self.settings["endpoint"]
            raise HubUnreachableError(
                f"the Hub at {endpoint} was unreachable while reading {what} ({_describe(err)} after "
                f"{retries + 1} attempts); nothing is known about whether it exists",
                "retry later, or check the Hub's status and the worker's network/proxy; this is not a naming problem",
            ) from redacted_error(err)

    def resolve(self, spec: RepoSpec) -> ResolvedRepo:
        """Resolve ``spec`` to its commit SHA, check its files, and read the parameter count (models).

        :raises HubRepoNotFoundError: with the closest existing names of the same author.
        :raises HubRevisionNotFoundError: with the repository's branches and tags.
        :raises HubAccessError: for gated or private repositories the token cannot read.
        :raises HubUnreachableError: when the Hub timed out or answered 5xx/429 after every retry.
        """
        from huggingface_hub.errors import (
            GatedRepoError,
            HfHubHTTPError,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )

        what = spec.describe()
        try:
            info = self.with_retries(
                what,
                lambda: self.api.repo_info(
                    spec.repo_id,
                    repo_type=spec.repo_type,
                    revision=spec.revision,
                    timeout=self.settings["timeout"],
                ),
            )
        except GatedRepoError as err:
            raise self._access_error(spec, gated=True) from err
        except RevisionNotFoundError as err:
            raise self._revision_error(spec) from err
        except RepositoryNotFoundError as err:
            raise self._repo_error(spec) from err
        except HfHubHTTPError as err:
            status = err.response.status_code if err.response is not None else None
            if status in (401, 403):
                raise self._access_error(spec, gated=False) from err
            raise HubRepoNotFoundError(
                f"{what}: the Hub answered HTTP {status}: {redact(str(err))}",
                "check the repo id and the hub connection",
            ) from redacted_error(err)
        sha = getattr(info, "sha", None)
        if not isinstance(sha, str) or not sha:
            raise HubRevisionNotFoundError(
                f"{what}: the Hub returned no commit SHA for the revision",
                "pass an explicit commit SHA as the revision",
            )
        siblings = getattr(info, "siblings", None) or []
        existing = tuple(s.rfilename for s in siblings)
        missing = tuple(path for path in spec.files if path not in set(existing))
        parameters = None
        safetensors = getattr(info, "safetensors", None)
        if safetensors is not None and getattr(safetensors, "total", None):
            parameters = int(safetensors.total)
        return ResolvedRepo(
            spec=spec, sha=sha, missing_files=missing, parameters=parameters, existing_files=existing
        )

    def resolve_revision(self, repo_id: str, revision: str | None = None, *, repo_type: str = "model") -> str:
        """The commit SHA that ``revision`` (branch, tag or SHA; ``None``: ``main``) points at now."""
        return self.resolve(RepoSpec(repo_id=repo_id, repo_type=repo_type, revision=revision)).sha

    def suggest(self, repo_id: str, *, repo_type: str = "model") -> list[str]:
        """Existing repositories of the same author closest to ``repo_id`` (empty when none or on error)."""
        author, slash, name = repo_id.rpartition("/")
        search_kwargs: dict[str, Any] = {"author": author} if slash else {"search": name}

        def scan() -> list[str]:
            from itertools import islice

            listing: Iterable[Any] = (
                self.api.list_datasets(**search_kwargs, limit=SUGGESTION_SCAN_LIMIT)
                if repo_type == "dataset"
                else self.api.list_models(**search_kwargs, limit=SUGGESTION_SCAN_LIMIT)
            )
            return [item.id for item in islice(listing, SUGGESTION_SCAN_LIMIT)]

        try:
            candidates = self.with_retries(f"the {repo_type}s of {author or name!r}", scan)
        except Exception as err:  # a suggestion is a courtesy: never hide the real error behind it
            log.info("no suggestions for %s %r: %s", repo_type, repo_id, redact(str(err)))
            return []
        return closest_names(repo_id, candidates)

    def refs(self, repo_id: str, *, repo_type: str = "model") -> dict[str, str]:
        """Branches and tags of a repository: ``{name: commit sha}``."""
        refs = self.with_retries(
            f"the refs of {repo_type} {repo_id!r}",
            lambda: self.api.list_repo_refs(repo_id, repo_type=repo_type),
        )
        return {ref.name: ref.target_commit for ref in [*refs.branches, *refs.tags]}

    def _repo_error(self, spec: RepoSpec) -> HubRepoNotFoundError | HubAccessError:
        suggestions = format_suggestions(self.suggest(spec.repo_id, repo_type=spec.repo_type))
        problem = f"{spec.repo_type} {spec.repo_id!r} not found"
        if suggestions:
            problem += f"; {suggestions}"
        if not self.has_token:
            return HubRepoNotFoundError(
                problem + " (no token is configured, so a private repository also looks missing)",
                "fix the repo id; if the repository is private, set an access token on the hub connection",
            )
        return HubRepoNotFoundError(
            problem, "fix the repo id, or give the token of the hub connection read access if it is private"
        )

    def _revision_error(self, spec: RepoSpec) -> HubRevisionNotFoundError:
        try:
            refs = self.refs(spec.repo_id, repo_type=spec.repo_type)
        except Exception:
            refs = {}
        known = ", ".join(sorted(refs)) or "unknown"
        close = difflib_close(spec.revision or "main", refs)
        hint = f"; {format_suggestions(close)}" if close else ""
        return HubRevisionNotFoundError(
            f"{spec.repo_type} {spec.repo_id!r}: revision {spec.revision!r} not found{hint} (branches and tags: {known})",
            "use an existing branch, tag or full commit SHA",
        )

    def _access_error(self, spec: RepoSpec, *, gated: bool) -> HubAccessError:
        kind = "gated" if gated else "private or access-restricted"
        if not self.has_token:
            return HubAccessError(
                f"{spec.repo_type} {spec.repo_id!r} is {kind} and no token is configured",
                f"set an access token on the hub connection {self.hub_conn_id!r}"
                + (" and accept the repository's conditions on its Hub page" if gated else ""),
            )
        return HubAccessError(
            f"{spec.repo_type} {spec.repo_id!r} is {kind} and the configured token cannot read it",
            "request access on the repository's Hub page with the token's account, or use a token that has it",
        )


def is_transient_hub_error(err: BaseException | None) -> bool:
    """Whether a Hub call that raised ``err`` may succeed when repeated: a timeout, a dropped
    connection, HTTP 429 or 5xx. Shared by pre-flight and promotion (``HubModelRegistry``)."""
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    if isinstance(err, HfHubHTTPError):
        return (err.response.status_code if err.response is not None else None) in RETRY_STATUSES
    if isinstance(err, LocalEntryNotFoundError):
        # hf_hub_download wraps a failed metadata request in this; its cause tells why.
        return err.__cause__ is not err and is_transient_hub_error(err.__cause__)
    return isinstance(err, (httpx2.TimeoutException, httpx2.NetworkError, httpx2.RemoteProtocolError))


def _describe(err: BaseException | None) -> str:
    """``HTTP 503`` or the (redacted) transport error, for retry logs and the final error."""
    from huggingface_hub.errors import HfHubHTTPError

    if err is None:
        return "no answer"
    if isinstance(err, HfHubHTTPError) and err.response is not None:
        return f"HTTP {err.response.status_code}"
    return f"{type(err).__name__}: {redact(str(err))}" if str(err) else type(err).__name__


def difflib_close(name: str, candidates: Any) -> list[str]:
    """Close names for a revision (plain difflib on the whole name)."""
    import difflib

    return difflib.get_close_matches(name, list(candidates), n=2, cutoff=0.5)


__all__ = ["DEFAULT_ENDPOINT", "RETRY_STATUSES", "HubHook", "is_transient_hub_error"]
