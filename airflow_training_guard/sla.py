"""The daily run's SLA as an Airflow 3 deadline alert: a run not finished in time notifies someone.

The failure this makes visible: backfills starved the daily training run for hours and nobody
knew until the stale model was noticed downstream. Pools keep the daily run's slots; the SLA says
when it is late anyway. Airflow 3 replaced task SLAs with deadline alerts (``DAG(deadline=...)``):
the scheduler records a deadline when a run is queued, checks it in its loop, and when the run has
not finished by then queues the alert's callback, which the triggerer runs (``AsyncCallback``).

:func:`sla_deadline_alert` builds that alert counted from when the run was queued
(``DeadlineReference.DAGRUN_QUEUED_AT``, so manual and backfill-delayed runs are measured from
when they could start). Its default callback, :func:`log_missed_sla`, writes one warning line to the
triggerer's log; route it to people with any Airflow notifier instead, for example
``AsyncCallback(SlackWebhookNotifier, kwargs={...})`` or ``AsyncCallback(SmtpNotifier, kwargs={...})``
(docs/daily-retraining.md). Deadline alerts are experimental in Airflow 3.1 to 3.3.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from airflow.sdk.definitions.callback import AsyncCallback
from airflow.sdk.definitions.deadline import DeadlineAlert, DeadlineReference

from airflow_training_guard.policies.durations import DurationLike, format_duration, parse_duration

if TYPE_CHECKING:
    from airflow.sdk.definitions.callback import Callback

__all__ = ["SLA_ALERT_NAME", "log_missed_sla", "sla_deadline_alert"]

log = logging.getLogger(__name__)

SLA_ALERT_NAME = "training_guard_sla"


async def log_missed_sla(*, context: Mapping[str, Any] | None = None, sla: str = "") -> str:
    """The default SLA callback: one warning in the triggerer's log naming the late run.

    :returns: the line logged (Airflow records it as the callback's result).
    """
    context = context or {}
    dag_run = context.get("dag_run") or {}
    deadline = context.get("deadline") or {}
    line = (
        f"SLA missed: run {dag_run.get('run_id')!r} of DAG {dag_run.get('dag_id')!r} has not finished "
        f"within {sla or 'its SLA'} of being queued (deadline {deadline.get('deadline_time')}); "
        "check its pool slots and running backfills (docs/runbooks)"
    )
    log.warning(line)
    return line


def sla_deadline_alert(within: DurationLike, *, callback: Callback | None = None) -> DeadlineAlert:
    """A deadline alert firing when a DAG run has not finished ``within`` of being queued.

    :param within: the SLA ("4h", "90m", seconds, timedelta); must be positive.
    :param callback: what to run when it is missed; default :func:`log_missed_sla`. Pass an
        ``AsyncCallback(<Notifier class>, kwargs={...})`` to notify Slack, e-mail, ...
    :raises GuardConfigError: for a duration that does not parse or is not positive.
    """
    interval = parse_duration(within, name="sla")  # positive, or GuardConfigError naming the value
    if callback is None:
        callback = AsyncCallback(log_missed_sla, kwargs={"sla": format_duration(interval)})
    return DeadlineAlert(
        reference=DeadlineReference.DAGRUN_QUEUED_AT,
        interval=interval,
        callback=callback,
        name=SLA_ALERT_NAME,
    )
