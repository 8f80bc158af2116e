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
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_training_guard.exceptions import GuardConfigError
from airflow_training_guard.partitions.completeness import (
    CompletenessResult,
    late_message,
    timeout_message,
)
from airflow_training_guard.partitions.expected import ExpectedPartitions
from airflow_training_guard.partitions.sources import PartitionSource

CLASSPATH = "airflow_training_guard.triggers.completeness.PartitionCompletenessTrigger"


def _event(payload: dict[str, Any]) -> TriggerEvent:
    return TriggerEvent(payload)  # type: ignore[no-untyped-call]


def _utcnow() -> datetime:
    return datetime.now(UTC)


class PartitionCompletenessTrigger(BaseTrigger):
    """Check an expected set of partitions every ``poke_interval`` until it is complete.

    :param expected: the expected set, or its ``serialize()`` dict (rendered: no Jinja left).
    :param source: the partition source, or its ``serialize()`` dict.
    :param poke_interval: seconds between checks.
    :param timeout_at: when to give up with a ``timeout`` event (aware datetime), or None.
    :param grace_deadline: when to give up with a ``late`` event (aware datetime), or None.
    :param timeout: the sensor's timeout in seconds, for the message only.
    :param grace_period: the grace period in seconds, for the message only.
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
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        try:
            expected = ExpectedPartitions.deserialize(self.expected)
            source = PartitionSource.deserialize(self.source)
            expected.keys()
        except Exception as err:
            yield _event({"status": "error", "message": f"cannot start the completeness check: {err}"})
            return
        self.log.info(
            "checking %s in %s every %ss", expected.describe(), source.describe(), self.poke_interval
        )
        previous: CompletenessResult | None = None
        poke = 0
        while True:
            poke += 1
            try:
                result = await source.check_async(expected)
            except GuardConfigError as err:
                yield _event({"status": "error", "message": f"bad configuration: {err}"})
                return
            except Exception as err:
                self.log.exception("completeness check failed")
                yield _event(
                    {"status": "error", "message": f"completeness check failed: {type(err).__name__}: {err}"}
                )
                return
            gone = result.disappeared_since(previous)
            if gone:
                self.log.warning(
                    "%d partition(s) present at the previous check are gone, completeness starts over: %s",
                    len(gone),
                    ", ".join(gone[:20]),
                )
            self.log.info("poke %d: %s", poke, result.summary())
            previous = result
            if result.is_complete:
                yield _event({"status": "success", "message": result.summary(), "result": result.to_xcom()})
                return
            now = _utcnow()
            if self.grace_deadline is not None and now >= self.grace_deadline:
                grace = timedelta(seconds=self.grace_period) if self.grace_period else None
                message = late_message(result, deadline=self.grace_deadline, grace_period=grace)
                yield _event({"status": "late", "message": message, "result": result.to_xcom()})
                return
            if self.timeout_at is not None and now >= self.timeout_at:
                waited = timedelta(seconds=self.timeout) if self.timeout else self.timeout_at - now
                message = timeout_message(result, timeout=waited)
                yield _event({"status": "timeout", "message": message, "result": result.to_xcom()})
                return
            await asyncio.sleep(self._next_sleep(now))

    def _next_sleep(self, now: datetime) -> float:
        """Sleep ``poke_interval``, but wake for a last check right at a deadline."""
        sleep = self.poke_interval
        for deadline in (self.grace_deadline, self.timeout_at):
            if deadline is not None:
                sleep = min(sleep, max(0.0, (deadline - now).total_seconds()))
        return sleep
