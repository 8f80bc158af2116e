"""Secrets: mask every credential we read, redact everything we record or quote.

Two functions, one contract:

- :func:`mask` registers a credential (a token, a password) with Airflow's secrets masker, in the
  task process and its supervisor (``airflow.sdk.log.mask_secret``), so task logs show ``***``.
  Call it *before* the credential is first used: a request that fails on its first use puts the
  credential into an exception text, and from there into the log.
- :func:`redact` returns a copy of a value (a string, or dicts/lists/tuples of them, nested) in
  which every secret the masker knows is replaced by ``***``, values under sensitive keys
  (``password``, ``token``, ``authorization`` ...: Airflow's list) are hidden, and credential
  shapes are stripped even when nobody registered them: ``Authorization: ...`` headers,
  ``Bearer <token>``, Hugging Face tokens (``hf_...``) and the password of
  ``scheme://user:password@host`` URLs. Anything recorded from rendered fields (the run manifest,
  XCom, pod specs) and any server text quoted into an exception goes through it.

The failure this prevents (issue 14): a token on the training command line
(``"{{ conn.hub.password }}"``) showed as ``***`` in the task log but in clear in the run
manifest and in XCom, and a Hub that echoed the ``Authorization`` header put ``Bearer hf_...``
into the promotion task's log and into exception texts.

Works without Airflow: then the secrets given to :func:`mask` in this process, and the credential
shapes above, are what :func:`redact` removes.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any, TypeVar

__all__ = ["REPLACEMENT", "RedactedError", "mask", "redact", "redact_text", "redacted_error"]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: What a secret is replaced by; the same as Airflow's masker.
REPLACEMENT = "***"
#: Secrets shorter than this are not registered (Airflow's default ``min_length_masked_secret``):
#: masking ``"ab"`` would shred every log line.
MIN_SECRET_LENGTH = 5

_local_secrets: set[str] = set()
_local_pattern: re.Pattern[str] | None = None

# ``Authorization: Bearer x``, ``"authorization": "Basic x"``, ``Proxy-Authorization=...``: keep the
# name, drop the value up to the end of the line or the closing quote.
_AUTH_HEADER = re.compile(
    r"(?i)\b((?:proxy-)?authorization)(['\"]?\s*[:=]\s*['\"]?)([^'\"\r\n,}]+)",
)
# A bearer token is 8+ token characters with a digit among them, so that prose ("bearer challenge")
# stays readable while real tokens (JWTs, ``hf_...``) go.
_BEARER = re.compile(r"(?i)\b(bearer)(\s+)((?=[\w.~+/=-]*\d)[\w.~+/=-]{8,})")
_HF_TOKEN = re.compile(r"\bhf_[A-Za-z0-9]{20,}")
_URL_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@]+):([^@\s/]+)@")


def mask(secret: str | None, name: str | None = None) -> None:
    """Register ``secret`` with Airflow's secrets masker (task process and supervisor) and locally.

    ``None``, empty and short (< 5 characters) values are ignored. ``name`` is the field it came
    from, for Airflow's bookkeeping; it does not limit masking.
    """
    global _local_pattern
    if not isinstance(secret, str) or len(secret) < MIN_SECRET_LENGTH:
        return
    if secret not in _local_secrets:
        _local_secrets.add(secret)
        _local_pattern = re.compile(
            "|".join(re.escape(s) for s in sorted(_local_secrets, key=len, reverse=True))
        )
    try:
        from airflow.sdk.log import mask_secret
    except ImportError:  # no Airflow here (a training container): the local registry covers it
        return
    try:
        mask_secret(secret)
    except Exception as err:  # masking must never break the task; the local registry still covers it
        log.warning("could not register a secret with Airflow's secrets masker: %s", type(err).__name__)


def _airflow_redact(value: Any) -> Any:
    try:
        from airflow.sdk._shared.secrets_masker import redact as airflow_redact
    except ImportError:
        return value
    return airflow_redact(value)


def redact_text(text: str) -> str:
    """``text`` with registered secrets and credential shapes replaced by ``***`` (no Airflow masker)."""
    if _local_pattern is not None:
        text = _local_pattern.sub(REPLACEMENT, text)
    text = _AUTH_HEADER.sub(lambda m: f"{m.group(1)}{m.group(2)}{REPLACEMENT}", text)
    text = _BEARER.sub(lambda m: f"{m.group(1)}{m.group(2)}{REPLACEMENT}", text)
    text = _HF_TOKEN.sub(REPLACEMENT, text)
    return _URL_PASSWORD.sub(lambda m: f"{m.group(1)}:{REPLACEMENT}@", text)


def _walk(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {key: _walk(item) for key, item in value.items()}
    if isinstance(value, tuple):
        return tuple(_walk(item) for item in value)
    if isinstance(value, list):
        return [_walk(item) for item in value]
    if isinstance(value, (set, frozenset)):
        return [_walk(item) for item in value]
    return value


def redact(value: T) -> T:
    """A copy of ``value`` with every secret replaced by ``***``; see the module docstring.

    Strings, and dicts, lists and tuples of them at any depth, are redacted; dict keys are kept;
    other scalars (numbers, ``None``, booleans) pass unchanged; sets come back as lists. Never
    raises: a value Airflow's masker cannot handle comes back as ``"<redaction-failed>"``, never
    in clear.
    """
    try:
        return _walk(_airflow_redact(value))  # type: ignore[no-any-return]
    except Exception:  # fail closed
        return "<redaction-failed>"  # type: ignore[return-value]


class RedactedError(Exception):
    """Stands in for an exception whose text quoted a server, as the cause of one of ours.

    Its text is the original's type and redacted text; its traceback is the original's, so the task
    log still shows where the call failed, without what the server echoed.
    """


def redacted_error(err: BaseException) -> RedactedError:
    """A :class:`RedactedError` for ``err``, to chain with ``raise ... from redacted_error(err)``."""
    clean = RedactedError(f"{type(err).__module__}.{type(err).__qualname__}: {redact(str(err))}")
    clean.__suppress_context__ = True
    return clean.with_traceback(err.__traceback__)
