"""What the coverage page knows about a pipeline, read from Airflow's serialized DAGs (no DAG code runs).

A pipeline built by :func:`~airflow_training_guard.backfill.factory.build_dags` has a backfill DAG
``<name>_backfill`` tagged ``training-guard`` and ``backfill``. Its serialized form carries what the
page needs to validate a request exactly like the DAG's own ``validate_request`` task:

- the dimensions and their known values: every ``type: array`` param with ``items.enum``;
- the oldest date allowed: the DAG's ``start_date``;
- the longest range: the ``start_date`` param's description (``At most N days per backfill``);
- the ledger's ``stale_after``: twice the ``train_partition`` task's ``execution_timeout``, as
  ``TrainingPipeline.ledger()`` sets it.

The ledger is resolved like the workers resolve it: ``$TRAINING_GUARD_LEDGER_URL`` (an Airflow
connection id or a SQLAlchemy URL), else SQLite under ``$AIRFLOW_HOME/training-guard/ledger.db``. A pipeline built with an explicit ``ledger_url``
needs the same URL in the API server's environment.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, select

from airflow_training_guard.backfill.validation import (
    END_FIELD,
    REPROCESS_FIELD,
    START_FIELD,
    BackfillRequest,
    Dimension,
    require_splittable,
    validate_request,
)
from airflow_training_guard.hooks.sql import engine_for
from airflow_training_guard.partitions.ledger import metadata
from airflow_training_guard.settings import default_ledger_url

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

BACKFILL_SUFFIX = "_backfill"
DAILY_SUFFIX = "_daily"
PIPELINE_TAGS = frozenset({"training-guard", "backfill"})
MAPPED_TASK = "train_partition"
#: ``TrainingPipeline.max_backfill_days``' default, used when a DAG's form does not state its limit.
DEFAULT_MAX_DAYS = 90
_MAX_DAYS = re.compile(r"At most (\d+) days")


@dataclass(frozen=True)
class PipelineInfo:
    """One pipeline as the coverage page sees it.

    :param name: the pipeline's name, also its ledger namespace.
    :param dimensions: the categorical dimensions before the date, with their known values.
    :param earliest: the oldest date a backfill may cover (the DAG's start date).
    :param max_days: the longest range one backfill may cover.
    :param stale_after: a claim older than this is shown as superseded.
    """

    name: str
    dimensions: tuple[Dimension, ...]
    earliest: dt.date | None
    max_days: int
    stale_after: dt.timedelta

    @property
    def backfill_dag_id(self) -> str:
        return f"{self.name}{BACKFILL_SUFFIX}"

    @property
    def daily_dag_id(self) -> str:
        return f"{self.name}{DAILY_SUFFIX}"

    def validate(self, form: Mapping[str, object]) -> BackfillRequest:
        """Validate a backfill form exactly as the pipeline's backfill DAG will, before any run exists.

        The same :func:`validate_request` as the DAG's first task, then the same part-run limit
        (:func:`require_splittable` with ``[core] max_map_length``).

        :raises BackfillRequestError: listing every problem.
        """
        from airflow.configuration import conf

        request = validate_request(
            form, dimensions=self.dimensions, max_days=self.max_days, earliest=self.earliest
        )
        require_splittable(request, conf.getint("core", "max_map_length", fallback=1024))
        return request

    def to_payload(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "backfill_dag_id": self.backfill_dag_id,
            "daily_dag_id": self.daily_dag_id,
            "dimensions": [{"name": d.name, "values": list(d.values)} for d in self.dimensions],
            "earliest": self.earliest.isoformat() if self.earliest else None,
            "max_days": self.max_days,
            "stale_after_seconds": int(self.stale_after.total_seconds()),
        }


def pipeline_from_dag(dag: Any) -> PipelineInfo:
    """Build a :class:`PipelineInfo` from a (serialized) backfill DAG."""
    dimensions: list[Dimension] = []
    max_days = DEFAULT_MAX_DAYS
    for name, param in dag.params.items():
        schema: Mapping[str, Any] = getattr(param, "schema", {}) or {}
        if name == START_FIELD:
            found = _MAX_DAYS.search(str(getattr(param, "description", "") or ""))
            if found:
                max_days = int(found.group(1))
        elif name not in (END_FIELD, REPROCESS_FIELD) and schema.get("type") == "array":
            values = (schema.get("items") or {}).get("enum")
            if values:
                dimensions.append(Dimension(name, tuple(str(value) for value in values)))
    timeout = None
    if dag.has_task(MAPPED_TASK):
        timeout = dag.get_task(MAPPED_TASK).execution_timeout
    start = dag.start_date
    return PipelineInfo(
        name=dag.dag_id.removesuffix(BACKFILL_SUFFIX),
        dimensions=tuple(dimensions),
        earliest=start.date() if start is not None else None,
        max_days=max_days,
        stale_after=timeout * 2 if timeout else dt.timedelta(hours=6),
    )


def pipeline_dag_ids(session: Session) -> list[str]:
    """Ids of every backfill DAG built by the factory (tagged ``training-guard`` and ``backfill``)."""
    from airflow.models.dag import DagModel, DagTag

    rows = session.execute(
        select(DagTag.dag_id, DagTag.name)
        .join(DagModel, DagModel.dag_id == DagTag.dag_id)
        .where(DagTag.name.in_(PIPELINE_TAGS), DagModel.is_stale.is_(False))
    ).all()
    tags: dict[str, set[str]] = {}
    for dag_id, tag in rows:
        tags.setdefault(dag_id, set()).add(tag)
    return sorted(
        dag_id
        for dag_id, found in tags.items()
        if found >= PIPELINE_TAGS and dag_id.endswith(BACKFILL_SUFFIX)
    )


def load_pipeline(name: str, session: Session) -> PipelineInfo | None:
    """The pipeline called ``name``, or None when no such backfill DAG is serialized."""
    from airflow.models.serialized_dag import SerializedDagModel

    dag_id = f"{name}{BACKFILL_SUFFIX}"
    if dag_id not in pipeline_dag_ids(session):
        return None
    dag = SerializedDagModel.get_dag(dag_id, session=session)
    return pipeline_from_dag(dag) if dag is not None else None


def ledger_url() -> str:
    """The ledger URL (or connection id) the workers use by default (see the module docstring)."""
    return default_ledger_url()


def ledger_engine() -> Engine:
    """The ledger's pooled engine (a connection id or a URL, :func:`~..hooks.sql.engine_for`); tables created once."""
    url = ledger_url()
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = engine_for(url)
    if url not in _TABLES_CHECKED:
        metadata.create_all(engine, checkfirst=True)
        _TABLES_CHECKED.add(url)
    return engine


_TABLES_CHECKED: set[str] = set()
