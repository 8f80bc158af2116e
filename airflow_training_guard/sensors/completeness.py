"""PartitionCompletenessSensor: block training until every expected partition is present.

A model trained on 18 of 24 hourly partitions shipped with 8% lower NDCG and was caught only by
an online A/B test. This sensor sits in front of the training task and lets it start only when the
complete expected set is present and finalized; otherwise it says exactly what is missing.

The logic lives in :mod:`airflow_training_guard.partitions`; this module translates it into
Airflow: poke mode (``poke``) and deferrable mode (:class:`PartitionCompletenessTrigger
<airflow_training_guard.triggers.completeness.PartitionCompletenessTrigger>`) run the same check.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue, conf
from airflow.sdk.exceptions import (
    AirflowException,
    AirflowFailException,
    AirflowSensorTimeout,
    AirflowSkipException,
)

from airflow_training_guard import telemetry
from airflow_training_guard.exceptions import GuardConfigError
from airflow_training_guard.partitions.completeness import (
    XCOM_DETAILS,
    CompletenessResult,
    XComDetail,
    late_message,
    timeout_message,
)
from airflow_training_guard.partitions.expected import ExpectedPartitions, as_expected
from airflow_training_guard.partitions.sources import CallableSource, GuardSecurityWarning, PartitionSource
from airflow_training_guard.policies.durations import DurationLike, format_duration, parse_duration
from airflow_training_guard.triggers.completeness import PartitionCompletenessTrigger

if TYPE_CHECKING:
    import jinja2
    from airflow.sdk import Context

#: Airflow's own deferral timeout fires this much after the trigger's, so the trigger's message
#: (which lists the missing partitions) is the one users see.
TRIGGER_TIMEOUT_MARGIN = timedelta(minutes=1)


def _seconds(value: DurationLike | None, *, name: str) -> timedelta | None:
    # Every form goes through parse_duration, not only strings: a number such as 1e300 or inf
    # passed Airflow's own check and overflowed when the timeout was computed at run time.
    return None if value is None else parse_duration(value, name=name)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class PartitionCompletenessSensor(BaseSensorOperator):
    """Wait until every partition of an expected set is present and finalized.

    Each check logs ``present/expected`` and the missing keys as ranges. The XCom value (for the
    training task) is compact whatever the size of the set: ``{"complete", "expected_count",
    "present_count", "present_ranges", "missing_ranges", "totals", "summary", "expected"}``;
    :func:`~airflow_training_guard.partitions.completeness.xcom_keys` expands the ranges into keys.

    :param expected: the partitions the training run needs: ``HoursOfDay``, ``HoursOfRange``,
        ``DaysOfRange``, ``Product``, ``ExplicitKeys`` (or a list of keys). Dates may be Jinja.
    :param source: where to look: ``ObjectStorageSource``, ``SqlSource`` or ``CallableSource``.
    :param grace_period: fail (instead of waiting until ``timeout``) when the set is still
        incomplete this long after the expected window has ended (after the last hour of the day,
        for ``HoursOfDay``): ``"3h"``, seconds, or a timedelta. Default: no grace deadline.
    :param poke_interval: time between checks (``"5m"``, seconds, timedelta; default 60 s).
    :param timeout: give up after this long (``"12h"``, seconds, timedelta); the failure lists the
        missing partitions; ``soft_fail=True`` skips instead. Default: ``[sensors] default_timeout``.
    :param deferrable: wait in the triggerer instead of a worker slot. The first check runs on the
        worker; the task defers only if it is incomplete. Default:
        ``[operators] default_deferrable``.
    :param xcom_detail: ``"ranges"`` (default): the XCom value holds runs of keys, a few hundred
        bytes for a complete year of hours; ``"keys"``: it also lists every present and missing key
        and each partition's counts (631 KB for a year of hours).
    """

    template_fields: Sequence[str] = ("expected", "source")
    template_fields_renderers = {"expected": "json", "source": "json"}
    ui_color = "#fff4d6"

    def __init__(
        self,
        *,
        expected: ExpectedPartitions | Sequence[str],
        source: PartitionSource,
        grace_period: DurationLike | None = None,
        poke_interval: DurationLike = 60,
        timeout: DurationLike | None = None,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        xcom_detail: XComDetail = "ranges",
        **kwargs: Any,
    ) -> None:
        super().__init__(
            poke_interval=parse_duration(poke_interval, name="poke_interval"),
            timeout=_seconds(timeout, name="timeout"),
            **kwargs,
        )
        self.expected = as_expected(expected)
        if not isinstance(source, PartitionSource):
            raise GuardConfigError(
                f"source {source!r} is not a partition source; use ObjectStorageSource(path_template=...), "
                "SqlSource(conn_id=..., sql=...) or CallableSource(check=...) from "
                "airflow_training_guard.partitions"
            )
        self.source = source
        self.source.validate(self.expected)
        if xcom_detail not in XCOM_DETAILS:
            raise GuardConfigError(
                f"xcom_detail {xcom_detail!r} is not valid; use 'ranges' (compact, the default) or 'keys' "
                "(every key and its counts)"
            )
        self.xcom_detail: XComDetail = xcom_detail
        for warning in source.parse_time_warnings():
            self.log.warning("task %r: %s", kwargs.get("task_id"), warning)
            warnings.warn(warning, GuardSecurityWarning, stacklevel=2)
        self.grace_period = (
            parse_duration(grace_period, name="grace_period") if grace_period is not None else None
        )
        if self.grace_period is not None:
            example = self.expected.example()
            if example is not None and example.closes_at() is None:
                raise GuardConfigError(
                    f"grace_period needs partitions with a date or an hour to know when the data is due, but "
                    f"{self.expected!r} has none; use timeout={format_duration(self.grace_period)!r} instead"
                )
        self.deferrable = deferrable
        if deferrable and isinstance(source, CallableSource):
            source.require_importable()
        self._last_result: CompletenessResult | None = None
        self._poke_count = 0
        self._grace_deadline: datetime | None = None
        self._wait_started: datetime | None = None

    # -- templating -----------------------------------------------------------------------------

    def render_template_fields(self, context: Context, jinja_env: jinja2.Environment | None = None) -> None:
        """Render Jinja inside the expected set and the source, then check them together."""
        jinja_env = jinja_env or self.get_template_env()
        super().render_template_fields(context, jinja_env)

        def render(text: str) -> object:
            return self.render_template(text, context, jinja_env)

        try:
            self.expected = self.expected.render(render)
            self.source = self.source.render(render)
            self.source.validate(self.expected)
            self.expected.keys()
        except GuardConfigError as err:
            raise AirflowFailException(f"task {self.task_id!r} is misconfigured: {err}") from err

    # -- Airflow entry points -------------------------------------------------------------------

    def execute(self, context: Context) -> dict[str, Any] | None:
        self._grace_deadline = self._compute_grace_deadline()
        self._log_effective_configuration()
        if not self.deferrable:
            try:
                return super().execute(context)  # type: ignore[no-any-return]
            except AirflowSensorTimeout as err:
                message = timeout_message(self._last_result, timeout=timedelta(seconds=self.timeout))
                self.log.error(message)
                telemetry.completeness_waited(self, self._waited(), outcome="timeout")
                raise AirflowSensorTimeout(message) from err
            except AirflowSkipException as err:
                if not str(err).startswith("Sensor has timed out"):
                    raise
                message = timeout_message(self._last_result, timeout=timedelta(seconds=self.timeout))
                self.log.warning("soft_fail: skipping: %s", message)
                telemetry.completeness_waited(self, self._waited(), outcome="timeout")
                raise AirflowSkipException(message) from err
        result = self._check_once()
        if result.is_complete:
            telemetry.completeness_waited(self, self._waited(), outcome="complete")
            return self._xcom(result)
        timeout = timedelta(seconds=self.timeout)
        self.log.info("incomplete: deferring to the triggerer, checking every %ss", self.poke_interval)
        self.defer(
            trigger=PartitionCompletenessTrigger(
                expected=self.expected,
                source=self.source,
                poke_interval=self.poke_interval,
                timeout_at=_utcnow() + timeout,
                grace_deadline=self._grace_deadline,
                timeout=self.timeout,
                grace_period=self.grace_period.total_seconds() if self.grace_period else None,
                xcom_detail=self.xcom_detail,
            ),
            method_name="execute_complete",
            # The resumed task is a new instance: it learns when the wait began from here (metrics).
            kwargs={"wait_started": self._wait_started.isoformat() if self._wait_started else None},
            timeout=timeout + TRIGGER_TIMEOUT_MARGIN,
        )
        return None  # pragma: no cover - defer() raises

    def poke(self, context: Context) -> PokeReturnValue:
        result = self._check_once()
        if result.is_complete:
            telemetry.completeness_waited(self, self._waited(), outcome="complete")
        return PokeReturnValue(
            is_done=result.is_complete, xcom_value=self._xcom(result) if result.is_complete else None
        )

    def _xcom(self, result: CompletenessResult) -> dict[str, Any]:
        return result.to_xcom(expected=self.expected.serialize(), detail=self.xcom_detail)

    def execute_complete(
        self, context: Context, event: dict[str, Any] | None = None, wait_started: str | None = None
    ) -> dict[str, Any]:
        """Finish after the trigger fired: return the XCom value, or fail/skip with its message.

        ``wait_started``: when the first check ran, before the deferral (for the wait metric).
        """
        if wait_started:
            self._wait_started = datetime.fromisoformat(wait_started)
        if not event or "status" not in event:
            raise AirflowException(
                f"task {self.task_id!r}: the completeness trigger returned no event ({event!r})"
            )
        status, message = event["status"], str(event.get("message", ""))
        if status == "success":
            self.log.info("complete: %s", message)
            telemetry.completeness_waited(self, self._waited(), outcome="complete")
            return dict(event["result"])
        if status in {"late", "timeout"}:
            self._fail(message, timed_out=status == "timeout")
        raise AirflowException(f"task {self.task_id!r}: {message}")

    # -- helpers --------------------------------------------------------------------------------

    def _check_once(self) -> CompletenessResult:
        if self._wait_started is None:
            self._wait_started = _utcnow()
        try:
            result = self.source.check(self.expected)
        except GuardConfigError as err:
            raise AirflowFailException(f"task {self.task_id!r} is misconfigured: {err}") from err
        self._poke_count += 1
        gone = result.disappeared_since(self._last_result)
        if gone:
            self.log.warning(
                "%d partition(s) present at the previous check are gone, completeness starts over: %s",
                len(gone),
                ", ".join(gone[:20]),
            )
        self.log.info("poke %d: %s", self._poke_count, result.summary())
        telemetry.completeness_checked(self, len(result.incomplete_keys))
        self._last_result = result
        if not result.is_complete and self._grace_deadline is not None and _utcnow() >= self._grace_deadline:
            self._fail(late_message(result, deadline=self._grace_deadline, grace_period=self.grace_period))
        return result

    def _fail(self, message: str, *, timed_out: bool = False) -> None:
        telemetry.completeness_waited(self, self._waited(), outcome="timeout" if timed_out else "late")
        if self.soft_fail:
            self.log.warning("soft_fail: skipping: %s", message)
            raise AirflowSkipException(message)
        self.log.error(message)
        if timed_out:
            raise AirflowSensorTimeout(message)
        raise AirflowFailException(message)

    def _waited(self) -> timedelta:
        """How long this sensor has waited for its partitions: since its first check."""
        now = _utcnow()
        return now - (self._wait_started or now)

    def _compute_grace_deadline(self) -> datetime | None:
        if self.grace_period is None:
            return None
        closes_at = self.expected.closes_at()
        if closes_at is None:
            raise AirflowFailException(
                f"task {self.task_id!r}: grace_period needs partitions with a date or an hour, but "
                f"{self.expected!r} has none; use timeout instead"
            )
        return closes_at + self.grace_period

    def _log_effective_configuration(self) -> None:
        keys = self.expected.keys()
        config = {
            "expected": self.expected.describe(),
            "expected_count": len(keys),
            "first_key": keys[0],
            "last_key": keys[-1],
            "source": self.source.describe(),
            "deferrable": self.deferrable,
            "mode": self.mode,
            "poke_interval": format_duration(timedelta(seconds=self.poke_interval))
            if self.poke_interval
            else "0s",
            "timeout": format_duration(timedelta(seconds=self.timeout)) if self.timeout else "0s",
            "grace_period": format_duration(self.grace_period) if self.grace_period else None,
            "grace_deadline": self._grace_deadline.isoformat() if self._grace_deadline else None,
            "soft_fail": self.soft_fail,
        }
        self.log.info("effective configuration: %s", json.dumps(config, sort_keys=True))
