"""SQL engines for the ledger and the model registry: from an Airflow connection id or a SQLAlchemy URL.

The failure this prevents: ``TRAINING_GUARD_LEDGER_URL=postgresql+psycopg://ledger:<password>@db/ml``
put the database password into an environment variable, a DAG file, ``docker-compose.yaml`` and,
through a connect error, into task logs. An Airflow connection keeps it in the secrets backend
(masked in logs) and lets it be rotated without touching a DAG.

:func:`engine_for` takes either:

- a **connection id** (``ledger_db``: letters, digits, ``_``, ``-``, ``.``): any connection whose
  hook is a ``common.sql`` ``DbApiHook`` that can give a SQLAlchemy URL (``postgres``, ``mysql``,
  ``sqlite`` ...). The connection comes from wherever Airflow finds connections: an
  ``AIRFLOW_CONN_<ID>`` environment variable, a secrets backend, the metadata database;
- a **SQLAlchemy URL** (``sqlite:////var/lib/tg/ledger.db``, ``postgresql+psycopg://user@host/db``),
  kept for the embedded SQLite default and for tests.

One pooled engine per value and process (a new engine per task cost ~31 ms against ~10 ms, issue
17); a forked child drops the parent's pooled connections. SQLite waits for its file lock instead
of failing with "database is locked". The password never appears in what this module logs or
raises: it is registered with the secrets masker when read, and every message quotes the value
through :func:`airflow_training_guard.secrets.redact`.

Airflow is imported only when a connection id is resolved, so a URL works without it.
"""

from __future__ import annotations

import os
import re
import threading
from typing import TYPE_CHECKING, Any

from sqlalchemy import create_engine
from sqlalchemy.exc import ArgumentError

from airflow_training_guard.exceptions import GuardConfigError
from airflow_training_guard.secrets import mask, redact

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from sqlalchemy.engine import URL

__all__ = ["SqlConnectionError", "engine_for", "is_connection_id", "safe_database_name"]

#: Airflow's connection ids: what ``AIRFLOW_CONN_<ID>`` and the UI accept.
_CONN_ID = re.compile(r"[A-Za-z0-9_.-]+")
_USERINFO_PASSWORD = re.compile(r"(:)[^@/\s]*@")
#: A pooled connection idle longer than this is replaced when next checked out (servers and
#: firewalls drop idle connections; a key's work can run for hours between claim and publish).
POOL_RECYCLE_SECONDS = 300
#: Seconds SQLite waits for the file lock of a concurrent writer.
SQLITE_LOCK_TIMEOUT = 60

_ENGINES: dict[str, Engine] = {}
_ENGINES_LOCK = threading.Lock()


class SqlConnectionError(GuardConfigError):
    """A connection id or URL cannot give a SQLAlchemy engine; the message says why and what to do."""


def is_connection_id(value: str) -> bool:
    """Whether ``value`` names an Airflow connection rather than being a SQLAlchemy URL."""
    return bool(_CONN_ID.fullmatch(value)) and not value.startswith("sqlite")


def safe_database_name(value: str) -> str:
    """``value`` as it may appear in a log line or an error: the password of a URL replaced by ``***``."""
    if is_connection_id(value):
        return f"connection {value!r}"
    try:
        from sqlalchemy.engine import make_url

        return make_url(value).render_as_string(hide_password=True)
    except ArgumentError:
        # Not even a URL ("postgres//user:pw@db"): still hide whatever sits between ':' and '@'.
        return _USERINFO_PASSWORD.sub(r"\1***@", str(redact(value)))


def engine_for(conn_id_or_url: str) -> Engine:
    """A pooled SQLAlchemy engine for an Airflow connection id or a SQLAlchemy URL (see the module doc).

    :raises SqlConnectionError: the connection does not exist, its hook is not a SQL hook, or the
        URL is malformed; the message names the value (password hidden) and the fix.
    """
    if not isinstance(conn_id_or_url, str) or not conn_id_or_url.strip():
        raise SqlConnectionError(
            f"{conn_id_or_url!r} is neither an Airflow connection id (e.g. 'ledger_db') nor a SQLAlchemy "
            "URL (e.g. 'sqlite:////var/lib/training-guard/ledger.db')"
        )
    key = conn_id_or_url.strip()
    engine = _ENGINES.get(key)
    if engine is not None:
        return engine
    with _ENGINES_LOCK:
        engine = _ENGINES.get(key)
        if engine is None:
            engine = _connection_engine(key) if is_connection_id(key) else _url_engine(key)
            _ENGINES[key] = engine
    return engine


def _engine_kwargs(url: URL) -> dict[str, Any]:
    if url.get_backend_name() == "sqlite":
        return {"connect_args": {"timeout": SQLITE_LOCK_TIMEOUT, "check_same_thread": False}}
    return {"pool_recycle": POOL_RECYCLE_SECONDS}


def _url_engine(value: str) -> Engine:
    from sqlalchemy.engine import make_url

    try:
        url = make_url(value)
        if url.password:
            mask(str(url.password))
        return create_engine(url, **_engine_kwargs(url))
    except (ArgumentError, ValueError) as err:
        raise SqlConnectionError(
            f"{safe_database_name(value)} is not a SQLAlchemy URL this machine can open "
            f"({type(err).__name__}); use 'postgresql+psycopg://user@host:5432/db', "
            "'sqlite:////absolute/path.db', or the id of an Airflow connection"
        ) from None
    except ImportError as err:
        raise SqlConnectionError(
            f"the database driver of {safe_database_name(value)} is not installed: {err.name}; install it "
            "(e.g. pip install 'psycopg[binary]') or use a connection whose provider brings one"
        ) from None


def _get_connection(conn_id: str) -> Any:
    """The connection, wherever Airflow keeps it.

    Tasks get it through the execution API and the API server from its secrets backends and the
    metadata database (the Task SDK's lookup). Other processes, such as the ``airflow
    training-guard`` commands, see only environment variables and external backends there, so the
    metadata database is asked too.
    """
    from airflow.sdk import BaseHook

    try:
        return BaseHook.get_connection(conn_id)
    except Exception as not_found:
        try:
            from airflow.models.connection import Connection

            return Connection.get_connection_from_secrets(conn_id)
        except Exception:
            raise not_found from None


def _connection_engine(conn_id: str) -> Engine:
    from airflow.providers.common.sql.hooks.sql import DbApiHook

    try:
        connection = _get_connection(conn_id)
    except Exception as err:
        raise SqlConnectionError(
            f"connection {conn_id!r} is not defined ({type(err).__name__}); create it (UI, `airflow "
            f"connections add {conn_id} --conn-uri ...`, or AIRFLOW_CONN_{conn_id.upper()}) or pass a "
            "SQLAlchemy URL"
        ) from None
    if connection.password:
        mask(connection.password)
    try:
        hook = connection.get_hook()
    except Exception as err:
        raise SqlConnectionError(
            f"connection {conn_id!r} of type {connection.conn_type!r} has no usable hook "
            f"({type(err).__name__}: {redact(str(err))}); install the provider of that type "
            "(e.g. apache-airflow-providers-postgres)"
        ) from None
    if not isinstance(hook, DbApiHook):
        raise SqlConnectionError(
            f"connection {conn_id!r} is of type {connection.conn_type!r}, whose hook "
            f"{type(hook).__name__} is not a SQL hook; use a postgres, mysql or sqlite connection"
        )
    if getattr(hook, "_connection", None) is None:
        # The hook would look the connection up again, in the Task SDK's backends only (no metadata
        # database outside tasks and servers): give it the one found. common.sql's own cache slot.
        setattr(hook, "_connection", connection)  # noqa: B010
    try:
        url: URL = hook.sqlalchemy_url
    except NotImplementedError:
        # Hooks that only know a URI string: the hook builds the engine from it.
        return hook.get_sqlalchemy_engine(engine_kwargs={"pool_recycle": POOL_RECYCLE_SECONDS})
    return create_engine(url, **_engine_kwargs(url))


def _forget_engines_after_fork() -> None:
    # A connection must never be used by two processes: the child leaves the parent's sockets to the
    # parent (close=False) and builds its own engines on first use.
    for engine in _ENGINES.values():
        engine.dispose(close=False)
    _ENGINES.clear()
    global _ENGINES_LOCK
    _ENGINES_LOCK = threading.Lock()


os.register_at_fork(after_in_child=_forget_engines_after_fork)
