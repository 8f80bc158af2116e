"""PartitionCompletenessTrigger: the completeness check of the sensor, run in the triggerer.

The deferrable half of :class:`~airflow_training_guard.sensors.completeness.PartitionCompletenessSensor`,
paired the way apache/airflow pairs ``sensors/filesystem.py`` with ``triggers/file.py``: the trigger
runs the very same check (:meth:`PartitionSource.check_async
<airflow_training_guard.partitions.sources.PartitionSource.check_async>`) every ``poke_interval``
and yields exactly one ``_event({"status": ..., "message": ...})``:

- ``success``: the set is complete; ``result`` holds the XCom value (present keys, counts);
- ``late``: still incomplete at ``grace_deadline``; ``timeout``: still incomplete at
  ``timeout_at``; both messages list what is missing;
- ``error``: the check itself failed (bad configuration, storage unreachable). The trigger never
  raises into the triggerer.

Triggers that wait for the same partitions in the same source at the same interval (several
training DAGs on one day of events) share one check through Airflow 3.3's shared trigger streams
(:meth:`shared_stream_key`): one listing per interval for all of them, each still deciding on its
own deadlines. The storage calls run in the package's bounded worker pool, a few per store
(:meth:`PartitionSource.observe_async
<airflow_training_guard.partitions.sources.PartitionSource.observe_async>`), so a slow store
cannot hold every thread. The success payload is the compact XCom value (ranges, not every key).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Hashable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.triggers.base import BaseEventTrigger, TriggerEvent

from airflow_training_guard.exceptions import GuardConfigError
from airflow_training_guard.partitions.completeness import (
    XCOM_DETAILS,
    CompletenessResult,
    XComDetail,
    late_message,
    timeout_message,
)
from airflow_training_guard.partitions.expected import ExpectedPartitions
from airflow_training_guard.partitions.sources import PartitionSource

CLASSPATH = "airflow_training_guard.triggers.completeness.PartitionCompletenessTrigger"

log = logging.getLogger(__name__)


def _event(payload: dict[str, Any]) -> TriggerEvent:
    return TriggerEvent(payload)  # type: ignore[no-untyped-call]


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _next_sleep(poke_interval: float, deadlines: Sequence[datetime | None], now: datetime) -> float:
    """Sleep ``poke_interval``, but wake for a last check right at a deadline still ahead."""
    sleep = poke_interval
    for deadline in deadlines:
        if deadline is not None and deadline > now:
            sleep = min(sleep, (deadline - now).total_seconds())
    return sleep


async def _poll(kwargs: dict[str, Any]) -> AsyncGenerator[tuple[str, Any], None]:
    """The check every ``poke_interval``: yields ``("result", CompletenessResult)`` or ``("error", text)``.

    It never returns: a shared stream must yield forever (the triggerer cancels it when the last
    trigger leaves); a standalone trigger stops reading after its one event.
    """
    try:
        expected = ExpectedPartitions.deserialize(dict(kwargs["expected"]))
        source = PartitionSource.deserialize(dict(kwargs["source"]))
        expected.keys()
    except Exception as err:
        yield ("error", f"cannot start the completeness check: {err}")
        while True:
            await asyncio.sleep(3600)
    poke_interval = float(kwargs.get("poke_interval", 60.0))
    deadlines = (kwargs.get("grace_deadline"), kwargs.get("timeout_at"))
    log.info("checking %s in %s every %ss", expected.describe(), source.describe(), poke_interval)
    while True:
        try:
            yield ("result", await source.check_async(expected))
        except GuardConfigError as err:
            yield ("error", f"bad configuration: {err}")
        except Exception as err:
            log.exception("completeness check failed")
            yield ("error", f"completeness check failed: {type(err).__name__}: {err}")
        await asyncio.sleep(_next_sleep(poke_interval, deadlines, _utcnow()))


class PartitionCompletenessTrigger(BaseEventTrigger):
    """Check an expected set of partitions every ``poke_interval`` until it is complete.

    :param expected: the expected set, or its ``serialize()`` dict (rendered: no Jinja left).
    :param source: the partition source, or its ``serialize()`` dict.
    :param poke_interval: seconds between checks.
    :param timeout_at: when to give up with a ``timeout`` event (aware datetime), or None.
    :param grace_deadline: when to give up with a ``late`` event (aware datetime), or None.
    :param timeout: the sensor's timeout in seconds, for the message only.
    :param grace_period: the grace period in seconds, for the message only.
    :param xcom_detail: ``"ranges"`` (default: compact) or ``"keys"`` (every key and its counts) in
        the success event's ``result``.
    """

    def __init__(
        self,
        *,
        expected: ExpectedPartitions | dict[str, Any],
        source: PartitionSource | dict[str, Any],
        poke_interval: float = 60.0,
        timeout_at: datetime | None = None,
        grace_deadline: datetime | None = None,
        timeout: float | None = None,
        grace_period: float | None = None,
        xcom_detail: XComDetail = "ranges",
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        # Kept as dicts: they are the trigger's kwargs, and rebuilding them happens inside run(),
        # where a bad dict becomes an error event instead of a crash of the triggerer.
        self.expected = expected.serialize() if isinstance(expected, ExpectedPartitions) else dict(expected)
        self.source = source.serialize() if isinstance(source, PartitionSource) else dict(source)
        self.poke_interval = float(poke_interval)
        self.timeout_at = timeout_at
        self.grace_deadline = grace_deadline
        self.timeout = timeout
        self.grace_period = grace_period
        self.xcom_detail: XComDetail = xcom_detail if xcom_detail in XCOM_DETAILS else "ranges"

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            CLASSPATH,
            {
                "expected": self.expected,
                "source": self.source,
                "poke_interval": self.poke_interval,
                "timeout_at": self.timeout_at,
                "grace_deadline": self.grace_deadline,
                "timeout": self.timeout,
                "grace_period": self.grace_period,
                "xcom_detail": self.xcom_detail,
            },
        )

    # -- Airflow 3.3 shared trigger streams -----------------------------------------------------

    def shared_stream_key(self) -> Hashable | None:
        """Triggers on the same partitions, source and interval share one check per interval."""
        return (
            CLASSPATH,
            json.dumps(self.expected, sort_keys=True, default=str),
            json.dumps(self.source, sort_keys=True, default=str),
            self.poke_interval,
        )

    @classmethod
    async def open_shared_stream(cls, kwargs: dict[str, Any]) -> AsyncIterator[Any]:
        """One check loop for a group of triggers; ``kwargs`` of any member (the key is equal)."""
        async for raw in _poll(kwargs):
            yield raw

    async def filter_shared_stream(self, shared_stream: AsyncIterator[Any]) -> AsyncIterator[TriggerEvent]:
        """Decide this trigger's one event from the shared checks: success, late, timeout or error."""
        previous: CompletenessResult | None = None
        poke = 0
        async for kind, payload in shared_stream:
            if kind == "error":
                yield _event({"status": "error", "message": str(payload)})
                return
            result: CompletenessResult = payload
            poke += 1
            gone = result.disappeared_since(previous)
            if gone:
                self.log.warning(
                    "%d partition(s) present at the previous check are gone, completeness starts over: %s",
                    len(gone),
                    ", ".join(gone[:20]),
                )
            if self.log.isEnabledFor(logging.INFO):
                self.log.info("poke %d: %s", poke, result.summary())
            previous = result
            if result.is_complete:
                yield _event({"status": "success", "message": result.summary(), "result": self._xcom(result)})
                return
            now = _utcnow()
            if self.grace_deadline is not None and now >= self.grace_deadline:
                grace = timedelta(seconds=self.grace_period) if self.grace_period else None
                message = late_message(result, deadline=self.grace_deadline, grace_period=grace)
                yield _event({"status": "late", "message": message, "result": self._xcom(result)})
                return
            if self.timeout_at is not None and now >= self.timeout_at:
                waited = timedelta(seconds=self.timeout) if self.timeout else self.timeout_at - now
                message = timeout_message(result, timeout=waited)
                yield _event({"status": "timeout", "message": message, "result": self._xcom(result)})
                return

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Standalone: the same filter over this trigger's own check loop."""
        stream = _poll(self.serialize()[1])
        try:
            async for event in self.filter_shared_stream(stream):
                yield event
                return
        finally:
            await stream.aclose()

    def _xcom(self, result: CompletenessResult) -> dict[str, Any]:
        return result.to_xcom(expected=self.expected, detail=self.xcom_detail)

    def _next_sleep(self, now: datetime) -> float:
        """Sleep ``poke_interval``, but wake for a last check right at a deadline."""
        return _next_sleep(self.poke_interval, (self.grace_deadline, self.timeout_at), now)
