"""Model promotion: compare-and-swap on the production pointer, with history and rollback.

See ``docs/model-promotion.md``. Backends: :class:`~.sql.SqlModelRegistry` (SQLite, PostgreSQL)
and :class:`~.hub.HubModelRegistry` (Hugging Face Hub). No Airflow import when this package is
imported; the Hub backend loads its hook (``hooks.hub.HubHook``) when it first talks to the Hub.
"""

from __future__ import annotations

from airflow_training_guard.exceptions import GuardConfigError
from airflow_training_guard.promotion.policy import Decision, PromotionPolicy
from airflow_training_guard.promotion.promote import Backoff, default_artifact_exists, promote, rollback
from airflow_training_guard.promotion.registry import (
    Candidate,
    HistoryEntry,
    ModelRegistry,
    Observed,
    ProductionPointer,
    PromotionOutcome,
    PromotionResult,
    RegistryError,
    UnknownVersionError,
)

__all__ = [
    "DEFAULT_HUB_CONN_ID",
    "Backoff",
    "Candidate",
    "Decision",
    "HistoryEntry",
    "ModelRegistry",
    "Observed",
    "ProductionPointer",
    "PromotionOutcome",
    "PromotionPolicy",
    "PromotionResult",
    "RegistryError",
    "UnknownVersionError",
    "check_registry_url",
    "default_artifact_exists",
    "promote",
    "registry_from_url",
    "rollback",
]

_HUB_SCHEMES = ("hf://", "hf+http://", "hf+https://")


def check_registry_url(url: str) -> None:
    """Reject a registry this package cannot open, with the accepted forms in the message.

    A SQL registry is an Airflow connection id (its password stays in the connection) or a
    SQLAlchemy URL; see :mod:`airflow_training_guard.hooks.sql`.
    """
    from airflow_training_guard.hooks.sql import is_connection_id, safe_database_name

    if not isinstance(url, str) or not (
        url.startswith(("sqlite:", "postgresql", "mysql"))
        or url.startswith(_HUB_SCHEMES)
        or is_connection_id(url)
    ):
        shown = safe_database_name(url) if isinstance(url, str) else url
        raise GuardConfigError(
            f"registry {shown!r} is not a registry URL; use 'sqlite:////abs/path/registry.db', "
            "'postgresql+psycopg://user@host/db', the id of an Airflow SQL connection ('registry_db'), "
            "'hf://' (the Hub: endpoint and token from the huggingface_hub connection) or "
            "'hf+https://hub.example.com' (that endpoint, the token from the connection)"
        )


#: The Hub connection promotion reads by default: the same as pre-flight's (``HubHook``).
DEFAULT_HUB_CONN_ID = "huggingface_hub_default"


def registry_from_url(url: str, *, hub_conn_id: str | None = DEFAULT_HUB_CONN_ID) -> ModelRegistry:
    """Open a registry: an Airflow SQL connection id, a SQLAlchemy URL, ``hf://`` or ``hf+https://<endpoint>``.

    For the Hub, ``hub_conn_id`` names the ``huggingface_hub`` Airflow connection that gives the
    write token (password) and, for ``hf://``, the endpoint (host; default huggingface.co);
    ``hf+https://<endpoint>`` overrides the endpoint. ``None``: no connection, anonymous.
    """
    check_registry_url(url)
    if url.startswith(_HUB_SCHEMES):
        from airflow_training_guard.promotion.hub import HubModelRegistry

        endpoint = None if url.startswith("hf://") else url.removeprefix("hf+")
        return HubModelRegistry(hub_conn_id=hub_conn_id, endpoint=endpoint or None)
    from airflow_training_guard.promotion.sql import SqlModelRegistry

    return SqlModelRegistry(url)
