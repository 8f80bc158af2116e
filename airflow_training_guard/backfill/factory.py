"""One description of a training pipeline, two DAGs: the daily SLA run and its UI-triggered backfill.

:class:`TrainingPipeline` says what one unit of work does (``work``), over which partitions
(categorical :class:`~airflow_training_guard.backfill.validation.Dimension` s x dates), in which pools
and within which limits. :func:`build_dags` turns it into (:func:`build_daily_dag` and
:func:`build_backfill_dag` build one each)

- ``<name>_daily``: scheduled (periodic, so Airflow's native Backfill dialog is offered too), today's
  partitions for every known value, in the SLA pool at normal priority;
- ``<name>_backfill``: triggered from the UI with a form (date range, a multi-select per dimension,
  reprocess mode), validated by its first task, every key in the backfill pool at the lowest priority.

Each DAG's tasks queue in one :class:`Lane` (pool, priority weight, weight rule): the SLA lane or
the backfill lane, so no task of one DAG can end up in the other's pool.

In both, each partition key is one mapped task instance whose map index shows the key
(``berlin|2026-11-01``), claims the key in the :class:`~airflow_training_guard.partitions.ledger.PartitionLedger`,
writes into a staging directory and commits atomically: overlapping backfills and reruns give exactly
one committed output per key. The DAG's shape does not depend on the range (keys are mapped at run
time), so parsing costs the same for 1 or 365 days.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
from collections.abc import Callable, Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import quote

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import DAG, task
from airflow.sdk.exceptions import AirflowFailException

from airflow_training_guard import telemetry
from airflow_training_guard.backfill.params import backfill_params
from airflow_training_guard.backfill.policy import is_backfill_run
from airflow_training_guard.backfill.pools import BACKFILL_POOL, SLA_POOL, configured_pool_names
from airflow_training_guard.backfill.validation import (
    REPROCESS_FIELD,
    BackfillRequest,
    BackfillRequestError,
    Dimension,
    require_splittable,
    validate_request,
)
from airflow_training_guard.exceptions import GuardConfigError
from airflow_training_guard.hooks.airflow_api import AirflowApiError, AirflowApiHook
from airflow_training_guard.hooks.sql import engine_for
from airflow_training_guard.partitions.keys import PartitionKey, format_key
from airflow_training_guard.partitions.ledger import PartitionLedger, ReprocessMode, StaleClaimError
from airflow_training_guard.policies.checkpoints import CheckpointPolicy
from airflow_training_guard.policies.durations import DurationLike, parse_duration
from airflow_training_guard.settings import (
    ENV_AIRFLOW_API_CONN_ID,
    ENV_CHECKPOINT_ROOT,
    ENV_OUTPUT_ROOT,
    default_ledger_url,
    default_root,
)
from airflow_training_guard.sla import sla_deadline_alert

#: XCom key under which ``plan_partitions`` hands the run's reprocess mode to every mapped task.
REPROCESS_XCOM_KEY = "reprocess_mode"
#: XCom key of ``validate_request``'s part runs (``part_runs`` returns them to map ``start_part_runs``).
PARTS_XCOM_KEY = "part_runs"

_NAME = re.compile(r"[a-z][a-z0-9_]{0,59}")
#: Context variable and mapped argument holding a mapped task's partition key. Not ``partition_key``:
#: Airflow reserves that context variable for the run's key and refuses to map over it.
MAP_INDEX_FIELD = "unit_partition_key"
#: Weight rule of every task: ``absolute``, so a task's priority is its own weight, not the sum over
#: its downstream tasks (which would let a long backfill outrank the daily run).
WEIGHT_RULE = "absolute"


@dataclass(frozen=True)
class Lane:
    """Where a DAG's tasks queue: one pool at one priority (the SLA lane or the backfill lane).

    :param pool: the Airflow pool of every task in the lane.
    :param priority_weight: the priority of every task in the lane (weight rule :data:`WEIGHT_RULE`).
    """

    pool: str
    priority_weight: int

    def task_args(self) -> dict[str, Any]:
        """The operator arguments that put a task into this lane."""
        return {"pool": self.pool, "priority_weight": self.priority_weight, "weight_rule": WEIGHT_RULE}


@dataclass(frozen=True)
class WorkUnit:
    """Everything one unit of work needs; ``work(unit)`` is called once per partition key.

    :param partition_key: the composite key, e.g. ``berlin|2026-11-01``, with its dimension names
        (``partition_key.dimensions == ("city", "date")``).
    :param parts: the key's parts by dimension name, ``{"city": "berlin", "date": "2026-11-01"}``
        (``partition_key.parts_by_dimension``).
    :param date: the key's date.
    :param output_dir: the private staging directory to write the output into (file output);
        published atomically after ``work`` returns. None for row output.
    :param checkpoint_dir: this key's own checkpoint directory (created).
    :param fencing_token: this attempt's token, for logs.
    :param run_kind: ``"daily"`` or ``"backfill"``.
    """

    partition_key: PartitionKey
    parts: Mapping[str, str]
    date: dt.date
    output_dir: Path | None
    checkpoint_dir: Path
    fencing_token: int
    run_kind: str


#: ``work(unit)`` writes files into ``unit.output_dir`` and returns None, or returns the rows.
WorkFunction = Callable[[WorkUnit], Iterable[Mapping[str, Any]] | None]


@dataclass(frozen=True)
class TrainingPipeline:
    """The one description both DAGs are built from.

    :param name: lower-case identifier; DAG ids are ``<name>_daily`` and ``<name>_backfill``, and it is
        the ledger namespace.
    :param work: called once per partition key with a :class:`WorkUnit`.
    :param dimensions: categorical dimensions before the date (``Dimension("city", (...))``); the date is
        always the last part of a key.
    :param start_date: first date of the daily schedule and oldest date a backfill may cover.
    :param schedule: the daily DAG's cron expression or preset (periodic).
    :param output: ``"files"`` (``work`` writes into ``unit.output_dir``; primary) or ``"rows"``.
    :param max_backfill_days: the longest range one backfill may cover.
    :param sla_pool: pool of the daily run's tasks; default ``[training_guard] sla_pool`` (``training_sla``).
    :param backfill_pool: pool of every backfill task (fixed slots; see ``airflow training-guard pools sync``);
        default ``[training_guard] backfill_pool`` (``training_backfill``), the pool the cluster policy
        routes native backfills to, so the two always agree.
    :param daily_priority_weight: priority of the daily run's tasks (absolute weight rule).
    :param backfill_priority_weight: priority of backfill tasks; lower than the daily one.
    :param max_active_backfill_runs: concurrent runs of the backfill DAG (overlap is safe).
    :param max_active_tasks_per_backfill: mapped tasks one backfill run may run at once (None: the pool decides).
    :param retries: retries of a unit of work.
    :param execution_timeout: hard limit of one unit of work.
    :param ledger_url: the ledger's Airflow connection id (any ``common.sql`` connection: postgres,
        mysql, sqlite) or SQLAlchemy URL; default ``$TRAINING_GUARD_LEDGER_URL`` or SQLite under
        ``$AIRFLOW_HOME/training-guard``.
    :param output_root: absolute root of committed outputs; default ``$TRAINING_GUARD_OUTPUT_ROOT/partitions``.
    :param checkpoint_root: absolute root of checkpoints; default ``$TRAINING_GUARD_CHECKPOINT_ROOT``.
    :param api_conn_id: connection to the Airflow REST API; default ``$TRAINING_GUARD_AIRFLOW_API_CONN_ID``.
        Needed only for native backfills of the daily DAG: a task cannot read its own pool or the
        backfill's reprocess behavior from the execution API, so it asks the REST API.
    :param doc_md: what the pipeline does; put on both DAGs.
    :param tags: extra DAG tags.
    :param sla: the daily run's SLA ("6h"): an Airflow deadline alert on the daily DAG, counted from
        when the run is queued, that logs (or notifies, see :func:`airflow_training_guard.sla.sla_deadline_alert`)
        a run not finished in time. ``None``: no deadline.
    """

    name: str
    work: WorkFunction
    start_date: dt.date
    dimensions: Sequence[Dimension] = ()
    schedule: str = "@daily"
    output: str = "files"
    max_backfill_days: int = 90
    sla_pool: str | None = None
    backfill_pool: str | None = None
    daily_priority_weight: int = 100
    backfill_priority_weight: int = 1
    max_active_backfill_runs: int = 4
    max_active_tasks_per_backfill: int | None = None
    retries: int = 2
    execution_timeout: dt.timedelta = dt.timedelta(hours=2)
    ledger_url: str | None = None
    output_root: str | None = None
    checkpoint_root: str | None = None
    api_conn_id: str | None = None
    doc_md: str = ""
    tags: Sequence[str] = field(default=())
    sla: DurationLike | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise GuardConfigError(
                f"pipeline name {self.name!r} must be a lower-case identifier such as 'fraud_model' (it is "
                "part of DAG ids, ledger rows and paths)"
            )
        if not callable(self.work):
            raise GuardConfigError(f"work {self.work!r} must be a function taking a WorkUnit")
        if isinstance(self.start_date, dt.datetime) or not isinstance(self.start_date, dt.date):
            raise GuardConfigError(
                f"start_date {self.start_date!r} must be a datetime.date, e.g. date(2026, 1, 1)"
            )
        object.__setattr__(self, "dimensions", tuple(self.dimensions))
        names = [dimension.name for dimension in self.dimensions]
        if len(set(names)) != len(names) or "date" in names:
            raise GuardConfigError(f"dimension names {names} must be unique and must not be 'date'")
        if self.output not in {"files", "rows"}:
            raise GuardConfigError(
                f"output {self.output!r} is not valid; use 'files' (work writes into unit.output_dir) or 'rows'"
            )
        if not 1 <= self.max_backfill_days <= 3660:
            raise GuardConfigError(f"max_backfill_days {self.max_backfill_days} must be between 1 and 3660")
        if self.sla_pool is None or self.backfill_pool is None:
            sla_pool, backfill_pool = configured_pool_names()
            object.__setattr__(self, "sla_pool", self.sla_pool or sla_pool)
            object.__setattr__(self, "backfill_pool", self.backfill_pool or backfill_pool)
        if self.sla is not None:
            parse_duration(self.sla, name="sla")  # positive, or GuardConfigError naming the value
        if self.sla_pool == self.backfill_pool:
            raise GuardConfigError(
                f"sla_pool and backfill_pool are both {self.sla_pool!r}; a backfill would then take the daily "
                f"run's slots. Use two pools (defaults {SLA_POOL!r} and {BACKFILL_POOL!r})"
            )
        if self.backfill_priority_weight >= self.daily_priority_weight:
            raise GuardConfigError(
                f"backfill_priority_weight {self.backfill_priority_weight} must be lower than "
                f"daily_priority_weight {self.daily_priority_weight}"
            )
        for name in ("ledger_url", "output_root", "checkpoint_root"):
            value = getattr(self, name)
            if name != "ledger_url" and value is not None and not os.path.isabs(value):
                raise GuardConfigError(f"{name} {value!r} must be an absolute directory")

    @property
    def daily_dag_id(self) -> str:
        return f"{self.name}_daily"

    @property
    def backfill_dag_id(self) -> str:
        return f"{self.name}_backfill"

    @property
    def key_dimensions(self) -> tuple[str, ...]:
        """The dimension names of every key, in order: the categorical ones, then ``"date"``."""
        return (*(dimension.name for dimension in self.dimensions), "date")

    @property
    def sla_lane(self) -> Lane:
        """The daily run's lane: ``sla_pool`` at ``daily_priority_weight``."""
        return Lane(self.sla_pool or SLA_POOL, self.daily_priority_weight)  # resolved in __post_init__

    @property
    def backfill_lane(self) -> Lane:
        """The backfill's lane: ``backfill_pool`` at ``backfill_priority_weight``."""
        return Lane(self.backfill_pool or BACKFILL_POOL, self.backfill_priority_weight)

    def partition_key(self, text: str) -> PartitionKey:
        """``text`` as a key of this pipeline (one part per dimension, then the date), parsed once.

        :raises GuardConfigError: when it is not a valid key or has the wrong number of parts.
        """
        return PartitionKey(text, dimensions=self.key_dimensions)

    def keys_for_date(self, day: str) -> tuple[PartitionKey, ...]:
        """Every key of one date, all known values of every dimension."""
        combos: list[tuple[str, ...]] = [()]
        for dimension in self.dimensions:
            combos = [(*combo, value) for combo in combos for value in dimension.values]
        return tuple(PartitionKey.from_parts(*combo, day, dimensions=self.key_dimensions) for combo in combos)

    def ledger(self) -> PartitionLedger:
        """The ledger, resolved on the worker.

        ``ledger_url``, else ``$TRAINING_GUARD_LEDGER_URL``, else SQLite under ``$AIRFLOW_HOME``
        (:func:`~airflow_training_guard.settings.default_ledger_url`); outputs under ``output_root``,
        else ``$TRAINING_GUARD_OUTPUT_ROOT/partitions``.
        """
        url = self.ledger_url or default_ledger_url()
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        root = self.output_root or str(Path(default_root(ENV_OUTPUT_ROOT, "outputs")) / "partitions")
        return PartitionLedger(
            engine_for(url), namespace=self.name, output_root=root, stale_after=self.execution_timeout * 2
        )

    def api_hook(self) -> AirflowApiHook | None:
        """The REST API client of the worker (``api_conn_id``, else ``$TRAINING_GUARD_AIRFLOW_API_CONN_ID``)."""
        conn_id = self.api_conn_id or os.environ.get(ENV_AIRFLOW_API_CONN_ID, "").strip()
        return AirflowApiHook(conn_id) if conn_id else None

    def checkpoint_policy(self) -> CheckpointPolicy:
        """Checkpoints under ``checkpoint_root``, else ``$TRAINING_GUARD_CHECKPOINT_ROOT``, else ``$AIRFLOW_HOME``."""
        return CheckpointPolicy(root=self.checkpoint_root or default_root(ENV_CHECKPOINT_ROOT, "checkpoints"))


class PipelineDags(NamedTuple):
    """The two DAGs of a pipeline."""

    daily: DAG
    backfill: DAG


def _task_instance_prefix(context: Mapping[str, Any]) -> str:
    """The part of a holder every try of one task instance shares."""
    ti = context["ti"]
    return f"{ti.dag_id}/{ti.run_id}/{ti.task_id}[{ti.map_index}] try "


def _holder(context: Mapping[str, Any]) -> str:
    return f"{_task_instance_prefix(context)}{context['ti'].try_number}"


def run_unit(
    pipeline: TrainingPipeline,
    partition_key: str,
    mode: ReprocessMode,
    context: MutableMapping[str, Any],
    *,
    run_kind: str,
) -> dict[str, Any]:
    """Claim, work, publish one key; the body of every mapped task of both DAGs."""
    log = logging.getLogger("airflow.task")
    # The mapped task instance is named after its key in the UI (map_index_template).
    context[MAP_INDEX_FIELD] = partition_key
    try:
        from airflow.sdk import get_current_context

        get_current_context()[MAP_INDEX_FIELD] = partition_key  # type: ignore[literal-required]
    except RuntimeError:  # called outside a running task (unit tests)
        pass
    partition_key = pipeline.partition_key(partition_key)
    ledger = pipeline.ledger()
    holder = _holder(context)
    # A retry takes back the key its earlier try claimed or failed (else mode "missing" skips it).
    claim = ledger.claim(partition_key, mode=mode, holder=holder, retry_of=_task_instance_prefix(context))
    if claim is None:
        found = ledger.entry(partition_key)
        state = found.state if found else "unknown"
        log.info("partition_key=%s skipped: state %s, reprocess mode %s", partition_key, state, mode.value)
        telemetry.ledger_skipped(namespace=ledger.namespace, run_kind=run_kind, state=state)
        return {"partition_key": partition_key, "status": "skipped", "state": state}
    ti = context["ti"]
    checkpoint_dir = Path(
        pipeline.checkpoint_policy().checkpoint_dir(
            dag_id=ti.dag_id, task_id=ti.task_id, partition_key=partition_key
        )
    )
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    staging = ledger.staging_dir(claim) if pipeline.output == "files" else None
    log.info(
        "partition_key=%s fencing_token=%s mode=%s run_kind=%s holder=%s staging=%s checkpoint_dir=%s ledger=%r",
        partition_key,
        claim.fencing_token,
        mode.value,
        run_kind,
        holder,
        staging,
        checkpoint_dir,
        ledger,
    )
    unit = WorkUnit(
        partition_key=partition_key,
        parts=partition_key.parts_by_dimension,
        date=dt.date.fromisoformat(partition_key.part("date")),
        output_dir=staging,
        checkpoint_dir=checkpoint_dir,
        fencing_token=claim.fencing_token,
        run_kind=run_kind,
    )
    try:
        rows = pipeline.work(unit)
        if pipeline.output == "files":
            commit = ledger.publish(claim, staging_path=staging)
        else:
            commit = ledger.publish(claim, rows=list(rows or ()))
    except StaleClaimError as err:
        # A newer attempt (an overlapping backfill, a manual rerun) owns the key; its output counts.
        log.warning("partition_key=%s superseded: %s", partition_key, err)
        telemetry.ledger_superseded(namespace=ledger.namespace, run_kind=run_kind)
        return {"partition_key": partition_key, "status": "superseded", "fencing_token": claim.fencing_token}
    except BaseException as err:
        ledger.fail(claim, f"{type(err).__name__}: {err}")
        raise
    telemetry.ledger_committed(namespace=ledger.namespace, run_kind=run_kind)
    log.info(
        "partition_key=%s committed: fencing_token=%s commits=%s location=%s rows=%s replaced=%s",
        partition_key,
        commit.fencing_token,
        commit.commits,
        commit.location,
        commit.row_count,
        commit.replaced,
    )
    return {
        "partition_key": partition_key,
        "status": "committed",
        "fencing_token": commit.fencing_token,
        "location": commit.location,
        "row_count": commit.row_count,
    }


def _daily_mode(context: Mapping[str, Any]) -> ReprocessMode:
    """The mode of a daily run's keys, as ``plan_partitions`` decided it (the run conf's otherwise)."""
    ti = context["ti"]
    decided = ti.xcom_pull(task_ids="plan_partitions", key=REPROCESS_XCOM_KEY, map_indexes=-1)
    if decided:
        return ReprocessMode.parse(decided)
    conf = getattr(context["dag_run"], "conf", None) or {}
    return ReprocessMode.parse(conf.get(REPROCESS_FIELD, ReprocessMode.ALL.value))


def _quote(part: str) -> str:
    return quote(part, safe="")


def running_pool(api: AirflowApiHook, ti: Any) -> str:
    """The pool this task instance really runs in, as the scheduler stored it (REST API).

    Not the pool the task declares: a cluster policy changes it when the instance is created.
    """
    path = f"/dags/{_quote(ti.dag_id)}/dagRuns/{_quote(ti.run_id)}/taskInstances/{_quote(ti.task_id)}"
    if ti.map_index is not None and ti.map_index >= 0:
        path += f"/{ti.map_index}"
    body = api.get_json(path, what=f"task instance {ti.dag_id}.{ti.task_id} of run {ti.run_id}")
    return str(body["pool"])


def _as_utc(value: Any) -> dt.datetime:
    moment = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value))
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def native_backfill_mode(api: AirflowApiHook, dag_run: Any) -> ReprocessMode:
    """The ledger mode of a native backfill run: its backfill's "Reprocess behavior", mapped.

    none -> missing, failed -> failed, completed -> all (docs/backfills.md). The run's backfill is the
    newest backfill of the DAG whose range holds the run's logical date (one backfill per DAG is
    active at a time; a newer one that reprocesses a date takes its run over).
    """
    body = api.get_json(
        "/backfills",
        params={"dag_id": dag_run.dag_id, "order_by": "-id", "limit": 100},
        what=f"the backfills of {dag_run.dag_id}",
    )
    logical = _as_utc(dag_run.logical_date)
    for backfill in body.get("backfills", []):
        if _as_utc(backfill["from_date"]) <= logical <= _as_utc(backfill["to_date"]):
            return ReprocessMode.parse(backfill["reprocess_behavior"])
    raise AirflowFailException(
        f"run {dag_run.run_id} of {dag_run.dag_id} is a native backfill run, but no backfill of the DAG "
        f"covers its logical date {logical.isoformat()}; cannot tell which keys to reprocess. Set "
        f'"{REPROCESS_FIELD}" in the backfill\'s run conf (missing, failed or all)'
    )


def plan_daily_run(pipeline: TrainingPipeline, context: Mapping[str, Any]) -> tuple[list[str], ReprocessMode]:
    """The keys and the reprocess mode of one run of the daily DAG (the body of ``plan_partitions``).

    A native backfill run (Airflow's Backfill dialog) is refused unless this task instance really
    runs outside the SLA pool: the decision is made from the pool the scheduler gave it, read back
    through the REST API, never from configuration (issue 13: ``backfill_policy_enabled`` alone
    said "routed" while the hook was not active and the backfill ran in the SLA pool). Its mode is
    the run conf's ``reprocess`` if set, else its backfill's reprocess behavior.
    """
    dag_run = context["dag_run"]
    conf = getattr(dag_run, "conf", None) or {}
    mode = ReprocessMode.parse(conf[REPROCESS_FIELD]) if REPROCESS_FIELD in conf else None
    if is_backfill_run(dag_run):
        api = pipeline.api_hook()
        if api is None:
            raise AirflowFailException(
                f"this is a native backfill run of {pipeline.daily_dag_id}; to make sure it does not run in "
                f"the SLA pool {pipeline.sla_pool!r} the task must read its own pool from the Airflow REST "
                f"API, and no API connection is set. Set {ENV_AIRFLOW_API_CONN_ID} (or api_conn_id in the pipeline) to a "
                f"connection to the API server, or use the {pipeline.backfill_dag_id} DAG instead"
            )
        try:
            pool = running_pool(api, context["ti"])
            if mode is None:
                mode = native_backfill_mode(api, dag_run)
        except AirflowApiError as err:
            raise AirflowFailException(
                f"native backfill run of {pipeline.daily_dag_id}: cannot check its pool or reprocess "
                f"behavior: {err}"
            ) from err
        if pool == pipeline.sla_pool:
            raise AirflowFailException(
                f"this is a native backfill run of {pipeline.daily_dag_id}, and its task instances are in "
                f"the SLA pool {pipeline.sla_pool!r}: the training-guard cluster policy did not route them "
                f"(it must be enabled and loaded by the scheduler), so the backfill could starve the daily "
                f"run. Use the {pipeline.backfill_dag_id} DAG instead, or enable the policy "
                "(docs/backfills.md, 'Enable the cluster policy') and restart the scheduler"
            )
        logging.getLogger("airflow.task").info(
            "native backfill run %s: running in pool %s (routed away from %s), reprocess mode %s",
            dag_run.run_id,
            pool,
            pipeline.sla_pool,
            mode.value,
        )
    keys: list[str] = list(pipeline.keys_for_date(str(context["ds"])))
    return keys, mode or ReprocessMode.ALL


def plan_backfill_run(
    pipeline: TrainingPipeline, request: BackfillRequest, *, run_id: str, max_keys: int
) -> tuple[list[str], list[dict[str, Any]]]:
    """The keys this backfill run maps, or the part runs it starts instead (the body of ``validate_request``).

    One mapped task holds at most ``max_keys`` (``[core] max_map_length``) instances: 1,024 by default,
    34 days of 30 cities, so a year (10,950 keys) was refused (issue 17). When the keys still to do fit,
    this run maps them. Otherwise the request is split (:func:`split_request`) into parts of at most
    ``max_keys`` keys, returned as the ``conf`` and ``trigger_run_id`` of one run of this DAG each; this
    run maps nothing itself. Every part run is an ordinary request: it validates, plans against the same
    ledger and claims each key, so overlapping parts, reruns and other backfills stay exactly-once.

    :returns: ``(keys, parts)``, one of them empty.
    """
    log = logging.getLogger("airflow.task")
    log.info("backfill request: %s", request.describe())
    plan = pipeline.ledger().plan(request.partition_keys(), request.reprocess)
    log.info("ledger plan: %s", plan.describe())
    telemetry.ledger_plan_skipped(plan.skipped.values(), namespace=pipeline.name, run_kind="backfill")
    if len(plan.to_run) <= max_keys:
        return list(plan.to_run), []
    try:
        parts = require_splittable(request, max_keys)
    except BackfillRequestError as err:
        raise AirflowFailException(str(err)) from err
    log.info(
        "%d key(s) to process are more than the %d one run may map ([core] max_map_length): starting %d part "
        "run(s) of %s, each of at most %d keys, queued under max_active_runs=%d",
        len(plan.to_run),
        max_keys,
        len(parts),
        pipeline.backfill_dag_id,
        max_keys,
        pipeline.max_active_backfill_runs,
    )
    runs = []
    for number, part in enumerate(parts, start=1):
        part_run_id = f"{run_id}__part{number:03d}of{len(parts):03d}"
        log.info("part %d/%d: run %s: %s", number, len(parts), part_run_id, part.describe())
        runs.append({"conf": part.to_conf(), "trigger_run_id": part_run_id})
    return [], runs


def _dimension_text(pipeline: TrainingPipeline) -> str:
    return " x ".join(pipeline.key_dimensions)


def _start(pipeline: TrainingPipeline) -> dt.datetime:
    return dt.datetime.combine(pipeline.start_date, dt.time(), tzinfo=dt.UTC)


def _unit_doc(pipeline: TrainingPipeline) -> str:
    key_example = format_key(*(d.values[0] for d in pipeline.dimensions), "2026-11-01")
    return (
        f"One mapped task instance per partition key (`{key_example}`; the map index shows the key). It claims "
        "the key in the ledger with a fencing token, writes to a staging location and commits atomically; a "
        "superseded attempt publishes nothing. See docs/backfills.md."
    )


def build_daily_dag(pipeline: TrainingPipeline) -> DAG:
    """The scheduled ``<name>_daily`` DAG: every key of the run's date, in the SLA lane."""
    lane = pipeline.sla_lane
    dimension_text = _dimension_text(pipeline)
    with DAG(
        dag_id=pipeline.daily_dag_id,
        description=f"{pipeline.name}: today's partitions ({dimension_text}) in pool {lane.pool}",
        schedule=pipeline.schedule,
        start_date=_start(pipeline),
        catchup=False,
        deadline=sla_deadline_alert(pipeline.sla) if pipeline.sla is not None else None,
        tags=["training-guard", "daily", *pipeline.tags],
        doc_md=(
            f"{pipeline.doc_md}\n\nDaily run of `{pipeline.name}`: every key of the run's date "
            f"({dimension_text}) in pool `{lane.pool}` at priority {lane.priority_weight}. "
            f"For past dates use `{pipeline.backfill_dag_id}` (a form with a city multi-select), or the native "
            "Backfill dialog with the training-guard cluster policy enabled."
        ).strip(),
    ) as daily:

        @task(
            task_id="plan_partitions",
            **lane.task_args(),
            doc_md="Lists the partition keys of the run's date (all known values) and decides their "
            "reprocess mode; refuses a native backfill run whose task instances are in the SLA pool (the "
            "cluster policy did not route them).",
        )
        def plan_partitions(**context: Any) -> list[str]:
            keys, mode = plan_daily_run(pipeline, context)
            context["ti"].xcom_push(key=REPROCESS_XCOM_KEY, value=mode.value)
            logging.getLogger("airflow.task").info(
                "run %s: %d partition key(s) for %s, mode %s",
                context["dag_run"].run_id,
                len(keys),
                context["ds"],
                mode.value,
            )
            return keys

        @task(
            task_id="train_partition",
            **lane.task_args(),
            retries=pipeline.retries,
            execution_timeout=pipeline.execution_timeout,
            map_index_template="{{ " + MAP_INDEX_FIELD + " }}",
            doc_md=_unit_doc(pipeline),
        )
        def train_daily(unit_partition_key: str, **context: Any) -> dict[str, Any]:
            return run_unit(pipeline, unit_partition_key, _daily_mode(context), context, run_kind="daily")

        train_daily.expand(unit_partition_key=plan_partitions())
    return daily


def build_backfill_dag(pipeline: TrainingPipeline) -> DAG:
    """The UI-triggered ``<name>_backfill`` DAG: a form, validated, every key in the backfill lane."""
    lane = pipeline.backfill_lane
    with DAG(
        dag_id=pipeline.backfill_dag_id,
        description=(
            f"{pipeline.name}: backfill a date range ({_dimension_text(pipeline)}) in pool {lane.pool}"
        ),
        schedule=None,
        start_date=_start(pipeline),
        catchup=False,
        max_active_runs=pipeline.max_active_backfill_runs,
        params=backfill_params(pipeline.dimensions, max_days=pipeline.max_backfill_days),
        tags=["training-guard", "backfill", *pipeline.tags],
        doc_md=(
            f"{pipeline.doc_md}\n\nBackfill of `{pipeline.name}` from the UI: Trigger, pick the dates (at most "
            f"{pipeline.max_backfill_days} days, not today), the values of each dimension and the reprocess mode. "
            f"Runs in pool `{lane.pool}` at priority {lane.priority_weight}, so the "
            "daily run keeps its slots. Overlapping backfills and reruns are safe: every key commits exactly once."
        ).strip(),
    ) as backfill:

        @task(
            task_id="validate_request",
            **lane.task_args(),
            retries=0,
            doc_md="Validates the form (dates, order, future dates, range size, known values, malicious "
            "input) and lists the keys to process; on a bad request it fails with every problem and nothing "
            "else starts. A request of more keys than one run may map is split into part runs instead.",
        )
        def validate(**context: Any) -> list[str]:
            from airflow.configuration import conf

            params = dict(context["params"])
            try:
                request = validate_request(
                    params,
                    dimensions=pipeline.dimensions,
                    max_days=pipeline.max_backfill_days,
                    earliest=pipeline.start_date,
                )
            except BackfillRequestError as err:
                raise AirflowFailException(str(err)) from err
            keys, parts = plan_backfill_run(
                pipeline,
                request,
                run_id=str(context["dag_run"].run_id),
                max_keys=conf.getint("core", "max_map_length", fallback=1024),
            )
            context["ti"].xcom_push(key=PARTS_XCOM_KEY, value=parts)
            return keys

        @task(
            task_id="train_partition",
            **lane.task_args(),
            retries=pipeline.retries,
            execution_timeout=pipeline.execution_timeout,
            max_active_tis_per_dagrun=pipeline.max_active_tasks_per_backfill,
            map_index_template="{{ " + MAP_INDEX_FIELD + " }}",
            doc_md=_unit_doc(pipeline),
        )
        def train_backfill(unit_partition_key: str, **context: Any) -> dict[str, Any]:
            mode = ReprocessMode.parse(context["params"].get(REPROCESS_FIELD, "missing"))
            return run_unit(pipeline, unit_partition_key, mode, context, run_kind="backfill")

        @task(
            task_id="part_runs",
            **lane.task_args(),
            retries=0,
            doc_md="The part runs validate_request decided on (none unless the request has more keys than "
            "one run may map, [core] max_map_length); start_part_runs starts one run per part.",
        )
        def part_runs(**context: Any) -> list[dict[str, Any]]:
            parts = context["ti"].xcom_pull(task_ids="validate_request", key=PARTS_XCOM_KEY, map_indexes=-1)
            return list(parts or [])

        planned = validate()
        train_backfill.expand(unit_partition_key=planned)
        parts = part_runs()
        planned >> parts
        TriggerDagRunOperator.partial(
            task_id="start_part_runs",
            trigger_dag_id=pipeline.backfill_dag_id,
            logical_date=None,
            wait_for_completion=False,
            **lane.task_args(),
            retries=0,
            map_index_template="{{ task.trigger_run_id }}",
            doc_md="Starts one run of this DAG per part of a request too large for one run, queued under "
            "max_active_runs. Every part run validates and plans its own keys against the same ledger.",
        ).expand_kwargs(parts)
    return backfill


def build_dags(pipeline: TrainingPipeline) -> PipelineDags:
    """Build the daily DAG and the backfill DAG of ``pipeline`` (see the module docstring)."""
    return PipelineDags(daily=build_daily_dag(pipeline), backfill=build_backfill_dag(pipeline))
