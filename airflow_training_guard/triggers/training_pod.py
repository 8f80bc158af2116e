"""GuardedPodTrigger: KubernetesPodTrigger plus the stall watchdog, for deferrable training pods.

In sync mode :class:`~airflow_training_guard.operators.training_pod.GuardedTrainingPodOperator`
watches the heartbeat from a worker thread. Deferred, the worker slot is released and the
triggerer waits for the pod; without a watchdog there a hung job would hold its GPUs until the hard
deadline. This trigger runs the provider's own wait and, next to it, reads the recent log every
poll and applies the same :class:`~airflow_training_guard.policies.stall.StallWatch` rule. On a
stall it yields one ``failed`` event carrying ``training_guard_stall`` (the reason); the operator
then reads the pod's events and log, deletes the pod and fails retryably, as in sync mode.

The watchdog settings travel in ``trigger_kwargs["_training_guard_stall"]`` (seconds:
``stall_after``, ``startup_grace``, ``poll``), so the provider's constructor and serialization are
reused unchanged; only the class path differs.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from airflow.providers.cncf.kubernetes.triggers.pod import KubernetesPodTrigger
from airflow.triggers.base import TriggerEvent

from airflow_training_guard.policies.stall import StallWatch
from airflow_training_guard.runtime.heartbeat import last_heartbeat_in

CLASSPATH = "airflow_training_guard.triggers.training_pod.GuardedPodTrigger"
#: Key of the watchdog settings in ``trigger_kwargs``.
STALL_SETTINGS_KEY = "_training_guard_stall"
#: Key of the stall reason in the event.
STALL_EVENT_KEY = "training_guard_stall"


class GuardedPodTrigger(KubernetesPodTrigger):
    """Wait for the training pod like KubernetesPodTrigger; fail it early when it stops making progress."""

    def serialize(self) -> tuple[str, dict[str, Any]]:
        _, kwargs = super().serialize()
        return CLASSPATH, kwargs

    async def _wait_for_container_completion(self) -> TriggerEvent:
        settings = (self.trigger_kwargs or {}).get(STALL_SETTINGS_KEY)
        if not settings:
            return await super()._wait_for_container_completion()
        completion = asyncio.ensure_future(super()._wait_for_container_completion())
        watchdog = asyncio.ensure_future(self._watch(settings))
        try:
            done, _ = await asyncio.wait({completion, watchdog}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (completion, watchdog):
                if not task.done():
                    task.cancel()
        # The pod finishing wins a tie: a job that completed is not a stalled job.
        return completion.result() if completion in done else watchdog.result()

    async def _watch(self, settings: dict[str, float]) -> TriggerEvent:
        watch = StallWatch(
            stall_after=float(settings["stall_after"]),
            startup_grace=float(settings["startup_grace"]),
            started=time.monotonic(),
        )
        poll = float(settings["poll"])
        # The window covers at least one heartbeat period plus a poll: enough to see a new step, without
        # reading the whole log of a long job at every look.
        window = int(watch.stall_after + 2 * poll) + 1
        while True:
            await asyncio.sleep(poll)
            try:
                lines = await self.hook.read_logs(
                    name=self.pod_name,
                    namespace=self.pod_namespace,
                    container_name=self.base_container_name,
                    since_seconds=window,
                )
            except Exception as err:  # a transient API error must not kill the job
                self.log.debug("stall watchdog could not read the log of %s: %s", self.pod_name, err)
                continue
            record = last_heartbeat_in(lines)
            detail = watch.observe(record.step if record else None, time.monotonic())
            if detail is None:
                continue
            self.log.error("pod %s/%s is stalled: %s", self.pod_namespace, self.pod_name, detail)
            return TriggerEvent(  # type: ignore[no-untyped-call]
                {
                    "status": "failed",
                    "namespace": self.pod_namespace,
                    "name": self.pod_name,
                    "message": f"pod {self.pod_name} stalled: {detail}",
                    STALL_EVENT_KEY: detail,
                    "last_log_time": self.last_log_time,
                    **self.trigger_kwargs,
                }
            )
