"""Metrics of the guards, sent through Airflow's own ``Stats`` (issue 19).

Why Airflow's ``Stats`` and not a client of our own: the deployment already chose where metrics go
(``[metrics] statsd_on``, ``statsd_datadog_enabled`` or ``otel_on``), with which prefix, allow and
block lists and tag handling; our metrics follow that choice and land next to Airflow's own
``ti.finish`` and ``pool.open_slots``. With metrics off, every function here is a no-op.

One function per metric, named after what happened (``stall_killed``), so a reader of an operator
sees which metric a line emits, and ``docs/metrics.md`` lists each name, its type and its tags.
Every name starts with :data:`PREFIX` (Airflow's ``statsd_prefix`` comes before it).

Tags are low-cardinality on purpose: ``dag_id``, ``task_id``, ``operator`` (the class, which says
the launcher), a ledger ``namespace``, a check name; never a ``partition_key`` (one series per key would swamp a metrics backend, and the
``|`` in ``berlin|2026-11-01`` is the StatsD field separator). Tag values are reduced to the
characters Airflow accepts in a stat name (letters, digits, ``_ . -``): anything else becomes ``_``.

A metric must never fail or slow down the guarded work: an error while emitting is logged at debug
level and swallowed. Airflow is imported inside :func:`_stats`, on first use, so importing this
module costs nothing and pulls in no Airflow (the adapters call it; the pure rooms do not).
"""

from __future__ import annotations

import logging
import re
import time
from collections import Counter
from collections.abc import Iterable
from datetime import timedelta
from typing import Any, Protocol

__all__ = [
    "PREFIX",
    "attempt_ended",
    "checkpoint_resumed",
    "checkpoint_saved",
    "completeness_checked",
    "completeness_waited",
    "deadline_killed",
    "ledger_committed",
    "ledger_plan_skipped",
    "ledger_skipped",
    "ledger_superseded",
    "preempted",
    "preflight_problem",
    "promotion_conflicts",
    "promotion_finished",
    "stall_killed",
    "straggler_reported",
    "stragglers_reported",
]

#: Every metric of this package is named ``training_guard.<what>``.
PREFIX = "training_guard"

log = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]")
_MAX_TAG_VALUE = 60


class CheckpointLike(Protocol):
    """What the checkpoint metrics read of a :class:`~airflow_training_guard.runtime.Checkpoint`."""

    @property
    def step(self) -> int: ...

    @property
    def created_at(self) -> float: ...


class TaskLike(Protocol):
    """The operator or sensor a metric is about: its ``dag_id``, ``task_id`` and class become tags."""

    @property
    def dag_id(self) -> str: ...

    @property
    def task_id(self) -> str: ...


class StragglerPolicyLike(Protocol):
    """What the straggler metric reads of a :class:`~airflow_training_guard.policies.stragglers.StragglerPolicy`."""

    @property
    def action(self) -> str: ...


class PromotionResultLike(Protocol):
    """What the promotion metrics read of a :class:`~airflow_training_guard.promotion.PromotionResult`."""

    @property
    def outcome(self) -> Any: ...

    @property
    def conflicts(self) -> int: ...


class StragglerLike(Protocol):
    """What the straggler metric reads of a :class:`~airflow_training_guard.policies.stragglers.StragglerReport`."""

    @property
    def rank(self) -> int: ...


def _stats() -> Any:
    """Airflow's stats module (``incr``, ``gauge``, ``timing``), where Airflow 3.3 keeps it.

    The Task SDK's copy: the one the task runner initialises from ``[metrics]`` in every worker
    process, and the one every emission point here runs in (operators and sensors, not triggers).
    """
    from airflow.sdk.observability import stats

    return stats


def _tags(**tags: object) -> dict[str, str]:
    """Tag values Airflow accepts in every backend (``[A-Za-z0-9_.-]``), at most 60 characters.

    The cap keeps ``name,tag=value,...`` (InfluxDB-style tags in plain StatsD) under Airflow's 250
    characters per stat, beyond which Airflow drops the metric.
    """
    return {
        name: (_UNSAFE.sub("_", str(value)) or "_")[:_MAX_TAG_VALUE]
        for name, value in tags.items()
        if value is not None
    }


def _task_tags(task: TaskLike) -> dict[str, str]:
    return _tags(dag_id=task.dag_id, task_id=task.task_id, operator=type(task).__name__)


def _emit(kind: str, name: str, value: float | timedelta, tags: dict[str, str]) -> None:
    stat = f"{PREFIX}.{name}"
    try:
        stats = _stats()
        if kind == "counter":
            stats.incr(stat, int(value) if not isinstance(value, timedelta) else 1, tags=tags)
        elif kind == "gauge":
            stats.gauge(stat, value, tags=tags)
        else:
            stats.timing(stat, value, tags=tags)
    except Exception as err:  # a metric must never fail the guarded work
        log.debug("could not emit metric %s: %s", stat, err)


# -- checkpoints --------------------------------------------------------------------------------------


def checkpoint_resumed(
    task: TaskLike, checkpoint: CheckpointLike | None, *, now: float | None = None
) -> None:
    """An attempt of ``task`` resumes from ``checkpoint`` (a fresh start, ``None``, emits nothing).

    ``checkpoint.resumed`` (counter), ``checkpoint.resume_step`` (gauge: the step it resumes from) and
    ``checkpoint.resume_age`` (timer: how old the checkpoint is; a large age means the retry redoes
    work that was lost since, or that it waited long to be scheduled).
    """
    if checkpoint is None:
        return
    tags = _task_tags(task)
    age = max(0.0, (time.time() if now is None else now) - checkpoint.created_at)
    _emit("counter", "checkpoint.resumed", 1, tags)
    _emit("gauge", "checkpoint.resume_step", checkpoint.step, tags)
    _emit("timer", "checkpoint.resume_age", timedelta(seconds=age), tags)


def checkpoint_saved(task: TaskLike, newest: CheckpointLike | None, *, since_step: int) -> None:
    """An attempt ended with ``newest`` as its newest valid checkpoint; it started from ``since_step``.

    When the attempt saved progress (``newest.step > since_step``): ``checkpoint.saved`` (counter, one
    per attempt that left a newer checkpoint) and ``checkpoint.saved_step`` (gauge: the newest step).
    An attempt that saved nothing emits nothing.
    """
    if newest is None or newest.step <= since_step:
        return
    tags = _task_tags(task)
    _emit("counter", "checkpoint.saved", 1, tags)
    _emit("gauge", "checkpoint.saved_step", newest.step, tags)


# -- how an attempt was stopped -----------------------------------------------------------------------


def stall_killed(task: TaskLike) -> None:
    """``stall.killed`` (counter): the heartbeat stopped advancing and the attempt was killed."""
    _emit("counter", "stall.killed", 1, _task_tags(task))


def preempted(task: TaskLike) -> None:
    """``preempted`` (counter): the program was preempted (exit 75, or its pod was preempted)."""
    _emit("counter", "preempted", 1, _task_tags(task))


def deadline_killed(task: TaskLike) -> None:
    """``deadline.killed`` (counter): the attempt was still running at its hard deadline."""
    _emit("counter", "deadline.killed", 1, _task_tags(task))


#: The failure kinds (``policies.diagnostics.FailureKind`` values, one vocabulary for every
#: launcher) that are a guard's kill or a preemption, and the metric each one counts.
_STOPPED = {"stalled": stall_killed, "preempted": preempted, "deadline_exceeded": deadline_killed}
#: Exit 75: preempted by contract (``runtime.contract``); the diagnosis calls it ``nonzero_exit``.
_EXIT_PREEMPTED = 75


def attempt_ended(task: TaskLike, kind: str | None, *, exit_code: int | None = None) -> None:
    """Count an attempt's ending when it is a guard's kill or a preemption; other endings emit nothing.

    :param kind: the diagnosis kind's value: ``"stalled"``, ``"preempted"``, ``"deadline_exceeded"``,
        or any other (``"oom_killed"`` ...), or None for a success; only those three are counted.
    :param exit_code: the program's exit code; 75 (the program saved a checkpoint after SIGTERM and
        stopped on purpose) counts as a preemption whatever the kind.
    """
    emit = _STOPPED.get(str(kind)) if kind is not None else None
    if emit is None and exit_code == _EXIT_PREEMPTED:
        emit = preempted
    if emit is not None:
        emit(task)


def straggler_reported(task: TaskLike, rank: int, *, action: str) -> None:
    """``straggler.reported`` (counter): rank ``rank`` was far slower than its peers; ``action`` is the
    straggler policy's (``warn``: reported only, ``restart``: the attempt was stopped)."""
    _emit("counter", "straggler.reported", 1, {**_task_tags(task), **_tags(action=action, rank=rank)})


def stragglers_reported(
    task: TaskLike, reports: Iterable[StragglerLike], policy: StragglerPolicyLike | None
) -> None:
    """:func:`straggler_reported` for every report of an attempt, with the policy's action."""
    for report in reports:
        straggler_reported(task, report.rank, action=policy.action if policy else "warn")


# -- partition completeness ---------------------------------------------------------------------------


def completeness_checked(task: TaskLike, missing: int) -> None:
    """``completeness.missing`` (gauge): partitions of the expected set still missing at this check."""
    _emit("gauge", "completeness.missing", missing, _task_tags(task))


def completeness_waited(task: TaskLike, waited: timedelta | float, *, outcome: str) -> None:
    """``completeness.wait`` (timer): how long the sensor waited, tagged with how the wait ended.

    :param waited: a timedelta or seconds.
    :param outcome: ``complete``, ``late`` (the grace period passed) or ``timeout``.
    """
    seconds = waited.total_seconds() if isinstance(waited, timedelta) else float(waited)
    tags = {**_task_tags(task), **_tags(outcome=outcome)}
    _emit("timer", "completeness.wait", timedelta(seconds=max(0.0, seconds)), tags)


# -- the exactly-once ledger --------------------------------------------------------------------------


def ledger_committed(*, namespace: str, run_kind: str) -> None:
    """``ledger.committed`` (counter): a key's output was committed."""
    _emit("counter", "ledger.committed", 1, _tags(namespace=namespace, run_kind=run_kind))


def ledger_skipped(*, namespace: str, run_kind: str, state: str, count: int = 1) -> None:
    """``ledger.skipped`` (counter): the reprocess mode left a key alone; ``state`` is the key's state
    (``committed``, ``claimed``: in progress elsewhere, ``failed``)."""
    if count > 0:
        tags = _tags(namespace=namespace, run_kind=run_kind, state=state)
        _emit("counter", "ledger.skipped", count, tags)


#: ``LedgerPlan.skipped`` says why in words; the metric tags the ledger state, as the claim does.
_PLAN_REASON_STATE = {"in progress": "claimed", "already committed": "committed"}


def ledger_plan_skipped(reasons: Iterable[str], *, namespace: str, run_kind: str) -> None:
    """:func:`ledger_skipped` for the keys a backfill's plan leaves out (``LedgerPlan.skipped.values()``),
    one count per state: those keys never reach a claim, so the claim cannot count them."""
    for state, count in Counter(_PLAN_REASON_STATE.get(r, r) for r in reasons).items():
        ledger_skipped(namespace=namespace, run_kind=run_kind, state=state, count=count)


def ledger_superseded(*, namespace: str, run_kind: str) -> None:
    """``ledger.superseded`` (counter): a newer claim took the key; this attempt's output was discarded."""
    _emit("counter", "ledger.superseded", 1, _tags(namespace=namespace, run_kind=run_kind))


# -- promotion ----------------------------------------------------------------------------------------


def promotion_conflicts(task: TaskLike, count: int, *, model_name: str) -> None:
    """``promotion.conflicts`` (counter): compare-and-swap races lost (each one re-read and re-decided)."""
    if count > 0:
        _emit("counter", "promotion.conflicts", count, {**_task_tags(task), **_tags(model_name=model_name)})


def promotion_finished(task: TaskLike, result: PromotionResultLike, *, model_name: str) -> None:
    """``promotion.finished`` (counter, tag ``outcome``: promoted, rejected, conflict_gave_up), and the
    races lost on the way (:func:`promotion_conflicts`)."""
    outcome = str(getattr(result.outcome, "value", result.outcome))
    tags = {**_task_tags(task), **_tags(model_name=model_name, outcome=outcome)}
    _emit("counter", "promotion.finished", 1, tags)
    promotion_conflicts(task, result.conflicts, model_name=model_name)


# -- pre-flight ---------------------------------------------------------------------------------------


def preflight_problem(task: TaskLike, check: str) -> None:
    """``preflight.problem`` (counter): pre-flight check ``check`` failed (tag ``check``: its name)."""
    _emit("counter", "preflight.problem", 1, {**_task_tags(task), **_tags(check=check)})
