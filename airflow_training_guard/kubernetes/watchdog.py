"""The heartbeat watchdog: reads a pod's log tail, applies :class:`StallWatch`, deletes a stalled pod.

One watchdog serves every Kubernetes operator (the pod operator in sync mode; the multi-node Job
operator per rank). It deletes through the provider's ``PodManager`` (404 tolerated, the
provider's retry policy), never the raw client, and keeps the last log lines it read: once the pod
is deleted its log is gone, and the failure message still shows what the program printed last.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from airflow_training_guard.policies.stall import StallWatch
from airflow_training_guard.runtime.heartbeat import last_heartbeat_in

if TYPE_CHECKING:
    from kubernetes.client import CoreV1Api
    from kubernetes.client import models as k8s

    from airflow_training_guard.policies.timeouts import TimeoutPolicy

log = logging.getLogger(__name__)


def read_log_tail(client: CoreV1Api, pod: k8s.V1Pod, *, container: str, lines: int) -> list[str]:
    """The last ``lines`` lines of ``container``'s log.

    Read raw: with ``_preload_content=True`` the kubernetes client returns ``str(bytes)``
    (``"b'...\\n...'"``) for logs, which no line parser can use.
    """
    response = client.read_namespaced_pod_log(
        pod.metadata.name,
        pod.metadata.namespace,
        container=container,
        tail_lines=lines,
        _preload_content=False,
    )
    try:
        return bytes(response.data).decode("utf-8", errors="replace").splitlines()
    finally:
        response.release_conn()


class PodHeartbeatWatchdog:
    """Watch one pod's heartbeat in a background thread; delete the pod when it stalls.

    :param read_tail: returns the newest log lines of the training container.
    :param delete_pod: deletes the pod (``PodManager.delete_pod``).
    :param stall_after: seconds without heartbeat progress that count as stalled.
    :param startup_grace: extra seconds before the first heartbeat.
    :param poll_interval: seconds between looks at the log.
    :param pod_name: for log lines.
    :param clock: monotonic clock (tests pass their own).
    """

    def __init__(
        self,
        *,
        read_tail: Callable[[], list[str]],
        delete_pod: Callable[[], None],
        stall_after: float,
        startup_grace: float,
        poll_interval: float,
        pod_name: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read_tail = read_tail
        self._delete_pod = delete_pod
        self._poll = poll_interval
        self._pod_name = pod_name
        self._clock = clock
        self._watch = StallWatch(stall_after=stall_after, startup_grace=startup_grace, started=clock())
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: why the pod was deleted (``None`` while it makes progress).
        self.stall_detail: str | None = None
        #: the last log lines read before the pod was deleted.
        self.last_log_lines: list[str] = []

    @classmethod
    def for_policy(
        cls,
        policy: TimeoutPolicy,
        *,
        read_tail: Callable[[], list[str]],
        delete_pod: Callable[[], None],
        pod_name: str,
    ) -> PodHeartbeatWatchdog:
        """A watchdog applying ``policy``'s stall rule (``stall_after`` must be set)."""
        if policy.stall_after is None:
            raise ValueError("the timeout policy has no stall_after; there is nothing to watch")
        return cls(
            read_tail=read_tail,
            delete_pod=delete_pod,
            stall_after=policy.stall_after.total_seconds(),
            startup_grace=policy.startup_timeout.total_seconds(),
            poll_interval=policy.poll_interval.total_seconds(),
            pod_name=pod_name,
        )

    def check_once(self) -> bool:
        """Look at the log once; delete the pod and return True when it is stalled."""
        try:
            tail = self._read_tail()
        except Exception as err:  # a transient API error must not kill the job
            log.debug("heartbeat watchdog could not read the log of %s: %s", self._pod_name, err)
            return False
        if tail:  # the pod is deleted below; its log cannot be read after that
            self.last_log_lines = tail[-20:]
        record = last_heartbeat_in(tail)
        detail = self._watch.observe(record.step if record else None, self._clock())
        if detail is None:
            return False
        self.stall_detail = f"{detail}; the watchdog deleted the pod"
        log.error("pod %s is stalled: %s; deleting it", self._pod_name, self.stall_detail)
        try:
            self._delete_pod()
        except Exception as err:
            log.warning("could not delete stalled pod %s: %s", self._pod_name, err)
        return True

    def _run(self) -> None:
        while not self._stop.wait(self._poll):
            if self.check_once():
                return

    def __enter__(self) -> PodHeartbeatWatchdog:
        self._thread = threading.Thread(target=self._run, name=f"watchdog-{self._pod_name}", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)


def stall_settings(policy: TimeoutPolicy) -> dict[str, float] | None:
    """The stall rule as the deferrable trigger takes it (``GuardedPodTrigger``), or ``None`` when off."""
    if policy.stall_after is None:
        return None
    return {
        "stall_after": policy.stall_after.total_seconds(),
        "startup_grace": policy.startup_timeout.total_seconds(),
        "poll": policy.poll_interval.total_seconds(),
    }
