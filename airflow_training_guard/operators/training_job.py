"""GuardedTrainingJobOperator: N ranks of a ``torchrun`` program as one Indexed Job, with every pod guard.

A multi-node job fails in ways a single pod does not: one preempted rank leaves the others blocked
in a collective until a timeout, a straggling node stretches every step, and a retry that starts
only the lost rank cannot rejoin. This operator runs the ranks as a gang:

- the pod template is built by the pod operator's own pieces (pinned images, the checkpoint
  volume and environment contract, safe security defaults and the restricted-profile check), so
  every rank carries every guard of :class:`GuardedTrainingPodOperator`;
- a headless Service and the Job's completion index give ``torchrun`` its rendezvous (``PET_*``
  variables: rank 0's DNS name, the number of nodes, each pod's node rank);
- ``backoffLimit: 0``: a lost rank fails the Job, the operator deletes it in the foreground (every
  rank goes) and fails the attempt retryably (unless the cause cannot be fixed by a retry); the
  retry first removes whatever an earlier attempt left, then starts every rank again, and all of
  them resume from the same checkpoint directory;
- GPU quota is checked for all ranks at once; with ``kueue_queue_name`` the Job is submitted
  suspended and Kueue admits the whole gang by quota;
- each rank's heartbeat is watched: a rank without progress for ``stall_after`` fails the attempt
  (retryable), with the rank and its pod named; with ``straggler_policy`` a rank whose step rate
  stays below a fraction of its peers' median is reported with its node and rates (``warn``) or
  ends the attempt so every rank resumes from the newest checkpoint (``restart``), by the same
  rule the local launcher applies (:mod:`airflow_training_guard.policies.stragglers`).

Deferrable mode is not offered: the wait must see every rank's heartbeat, and the triggerer's pod
trigger watches one pod.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk.exceptions import AirflowException

from airflow_training_guard.kubernetes import job_building
from airflow_training_guard.kubernetes.failures import job_condition_failure, lost_rank, read_failure_evidence
from airflow_training_guard.kubernetes.watchdog import read_log_tail
from airflow_training_guard.operators.common import GivenArguments, failure_exception
from airflow_training_guard.operators.training_pod import GuardedTrainingPodOperator
from airflow_training_guard.policies.diagnostics import diagnose, stalled
from airflow_training_guard.policies.durations import DurationLike, parse_duration
from airflow_training_guard.policies.stall import StallWatch
from airflow_training_guard.policies.stragglers import (
    StragglerPolicy,
    StragglerWatch,
    coerce_straggler_policy,
)
from airflow_training_guard.runtime.heartbeat import COMPUTE_SECONDS_METRIC, last_heartbeat_in

if TYPE_CHECKING:
    from airflow.sdk import Context
    from kubernetes.client import models as k8s

#: Job conditions that end it.
_TERMINAL = ("Complete", "Failed", "FailureTarget", "SuccessCriteriaMet")


class GuardedTrainingJobOperator(GuardedTrainingPodOperator):
    """Run ``ranks`` pods of a distributed training program as an Indexed Job that succeeds or fails whole.

    Every :class:`GuardedTrainingPodOperator` parameter applies to each rank's pod. In addition:

    :param ranks: how many pods (nodes) run the program; each gets its node rank from the Job's
        completion index (``TRAINING_GUARD_RANK``, ``PET_NODE_RANK``).
    :param nproc_per_node: processes per pod (``PET_NPROC_PER_NODE``, usually the pod's GPUs).
    :param rendezvous_port: the port rank 0 listens on for the ``torchrun`` rendezvous.
    :param job_poll_interval: how often the Job, its pods and their heartbeats are read.
    :param ttl_seconds_after_finished: how long Kubernetes keeps a finished Job when the operator
        keeps it (``on_finish_action="keep_pod"``).
    :param straggler_policy: a :class:`StragglerPolicy` or its arguments as a dict
        (``{"fraction": 0.5, "window": "5m", "action": "restart"}``); ``None`` watches no rates.
        Each rank's rate comes from the heartbeat lines of its pod's log (steps per compute second
        when the program reports ``compute_seconds``).
    """

    def __init__(
        self,
        *,
        ranks: int,
        nproc_per_node: int = 1,
        rendezvous_port: int = 29500,
        job_poll_interval: DurationLike = "5s",
        ttl_seconds_after_finished: int | None = 3600,
        straggler_policy: StragglerPolicy | dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        given = GivenArguments(kwargs)
        policy = coerce_straggler_policy(straggler_policy, task_id=str(kwargs.get("task_id")))
        job_building.check_gang_arguments(
            ranks=ranks,
            nproc_per_node=nproc_per_node,
            rendezvous_port=rendezvous_port,
            deferrable=given.get("deferrable"),
            do_xcom_push=given.get("do_xcom_push"),
            straggler_policy=policy,
        )
        given.replace({"deferrable": False})
        super().__init__(**kwargs)
        self.ranks = ranks
        self.nproc_per_node = nproc_per_node
        self.rendezvous_port = rendezvous_port
        self.job_poll_interval = parse_duration(job_poll_interval, name="job_poll_interval")
        self.ttl_seconds_after_finished = ttl_seconds_after_finished
        self.straggler_policy = policy
        self.job: k8s.V1Job | None = None
        self._failed_rank: str | None = None

    # -- Kubernetes clients --------------------------------------------------------------------------

    @property
    def batch(self) -> Any:
        """``BatchV1Api`` on the same API client (connection, credentials) as the pod calls."""
        from kubernetes.client import BatchV1Api

        return BatchV1Api(api_client=self.client.api_client)

    def _job_labels(self, context: Context) -> dict[str, str]:
        """Identify this task's Jobs across attempts (no try number: a retry finds its predecessor)."""
        labels = self._get_ti_pod_labels(context, include_try_number=False)
        return {key: str(value) for key, value in labels.items()}

    # -- execution -----------------------------------------------------------------------------------

    def execute(self, context: Context) -> Any:
        self._prepare_attempt(context, pods=self.ranks)
        labels = self._job_labels(context)
        self._delete_leftovers(labels)
        job, service = self.build_gang(context, labels=labels)
        namespace, name = str(job.metadata.namespace), str(job.metadata.name)
        self.log.info(
            "starting %d ranks as Indexed Job %s/%s; rendezvous at %s:%d",
            self.ranks,
            namespace,
            name,
            job_building.rendezvous_address(name, namespace),
            self.rendezvous_port,
        )
        self.client.create_namespaced_service(namespace, service)
        try:
            self.job = self.batch.create_namespaced_job(namespace, job)
            context["ti"].xcom_push(key="job_name", value=name)
            self._await_job(name, namespace)
        except BaseException:
            self._delete_job(name, namespace)
            raise
        self._finish_job(name, namespace)
        return self._finish(context, None)

    def build_gang(
        self, context: Context | None, *, labels: dict[str, str], dry_run: bool = False
    ) -> tuple[k8s.V1Job, k8s.V1Service]:
        """The Indexed Job and its headless Service for this attempt, from the guarded pod.

        :param labels: identify this task's Jobs across attempts (see :meth:`_job_labels`).
        :param dry_run: build without a live API client (as ``build_pod_request_obj``).
        """
        pod = self.build_pod_request_obj(context, dry_run=dry_run)
        namespace = str(pod.metadata.namespace)
        name = job_building.job_name_for(str(pod.metadata.name), self.ranks)
        pod = job_building.with_rank_environment(
            pod,
            self.base_container_name,
            job_name=name,
            namespace=namespace,
            ranks=self.ranks,
            nproc_per_node=self.nproc_per_node,
            port=self.rendezvous_port,
        )
        job = job_building.indexed_job(
            pod,
            name=name,
            ranks=self.ranks,
            active_deadline_seconds=self.active_deadline_seconds,
            ttl_seconds_after_finished=self.ttl_seconds_after_finished,
            labels=labels,
            kueue_queue_name=self.kueue_queue_name,
        )
        service = job_building.headless_service(
            name=name, namespace=namespace, port=self.rendezvous_port, labels=labels
        )
        return job, service

    def _await_job(self, name: str, namespace: str) -> None:
        """Poll the Job and every rank's heartbeat until it completes; raise when it fails or stalls."""
        policy = self.timeout_policy
        watches: dict[str, StallWatch] = {}
        stragglers = (
            StragglerWatch(self.straggler_policy, started=time.monotonic()) if self.straggler_policy else None
        )
        while True:
            job = self.batch.read_namespaced_job_status(name, namespace)
            condition = _terminal_condition(job)
            if condition is not None and condition.type in ("Complete", "SuccessCriteriaMet"):
                self.log.info("Job %s/%s completed: all %d ranks succeeded", namespace, name, self.ranks)
                return
            pods = self._rank_pods(name, namespace)
            if condition is not None:
                raise self._job_failure(condition, pods)
            failed = [p for p in pods if (p.status and p.status.phase) == "Failed"]
            if failed:  # the Job controller marks the Job failed a moment later; do not wait for it
                raise self._job_failure(None, pods)
            if policy.stall_after is not None or stragglers is not None:
                self._check_heartbeats(pods, watches, stragglers)
            time.sleep(self.job_poll_interval.total_seconds())

    def _rank_pods(self, name: str, namespace: str) -> list[k8s.V1Pod]:
        pods = self.client.list_namespaced_pod(
            namespace, label_selector=f"{job_building.JOB_LABEL}={name}"
        ).items
        return sorted(pods, key=_rank_of)

    def _check_heartbeats(
        self, pods: Sequence[k8s.V1Pod], watches: dict[str, StallWatch], stragglers: StragglerWatch | None
    ) -> None:
        """One look at every running rank's log: the stall rule per rank, the straggler rule across ranks."""
        policy = self.timeout_policy
        now = time.monotonic()
        for pod in pods:
            if (pod.status and pod.status.phase) != "Running":
                continue
            rank = _rank_of(pod)
            try:
                tail = read_log_tail(self.client, pod, container=self.base_container_name, lines=200)
            except Exception as err:  # a transient API error must not fail the job
                self.log.debug("could not read the log of rank %s: %s", rank, err)
                continue
            record = last_heartbeat_in(tail)
            if stragglers is not None and record is not None and rank.isdigit():
                compute = record.metrics.get(COMPUTE_SECONDS_METRIC)
                stragglers.observe(
                    int(rank),
                    record.step,
                    now,
                    node=record.node or (pod.spec.node_name if pod.spec else None),
                    compute_seconds=float(compute) if compute is not None else None,
                )
            if policy.stall_after is None:
                continue
            watch = watches.setdefault(
                rank,
                StallWatch(
                    stall_after=policy.stall_after.total_seconds(),
                    startup_grace=policy.startup_timeout.total_seconds(),
                    started=now,
                ),
            )
            detail = watch.observe(record.step if record else None, now)
            if detail is not None:
                self._last_log_lines = tail[-20:]
                self._stall_detail = (
                    f"rank {rank} ({pod.metadata.name}): {detail}; the operator deleted the Job"
                )
                diagnosis = stalled(self._stall_detail, subject=f"rank {rank}")
                raise self._exception_for(diagnosis, pod)
        if stragglers is None:
            return
        for report in stragglers.check(now):
            self.log.warning("%s", report.describe())
            if self.straggler_policy is not None and self.straggler_policy.action == "restart":
                raise AirflowException(
                    f"{report.describe()}; straggler_policy action 'restart': every rank was stopped and the "
                    "retry resumes them from the newest checkpoint"
                )

    def _job_failure(self, condition: Any, pods: Sequence[k8s.V1Pod]) -> AirflowException:
        """Classify the lost rank (the first failed pod); else the Job's own reason (deadline, ...)."""
        failed = [p for p in pods if (p.status and p.status.phase) == "Failed"]
        if failed:
            pod = failed[0]
            self._failed_rank = _rank_of(pod)
            evidence = read_failure_evidence(
                self.client, self.pod_manager, pod, container=self.base_container_name, reread=False
            )
            self._last_log_lines = evidence.log_tail
            found = diagnose(evidence.pod, evidence.events, container=self.base_container_name)
            return self._exception_for(lost_rank(found, rank=self._failed_rank, ranks=self.ranks), pod)
        diagnosis = job_condition_failure(
            getattr(condition, "reason", None), getattr(condition, "message", None)
        )
        return failure_exception(
            diagnosis,
            pod_name=str(self.job.metadata.name if self.job else ""),
            namespace="",
            last_log_lines=[],
        )

    # -- cleanup ---------------------------------------------------------------------------------------

    def _delete_job(self, name: str, namespace: str) -> None:
        """Delete the Job with every rank (foreground) and its Service; a missing one is fine."""
        try:
            self.batch.delete_namespaced_job(name, namespace, propagation_policy="Foreground")
        except Exception as err:
            if getattr(err, "status", None) != 404:
                self.log.warning("could not delete Job %s/%s: %s", namespace, name, err)
        try:
            self.client.delete_namespaced_service(name, namespace)
        except Exception as err:
            if getattr(err, "status", None) != 404:
                self.log.warning("could not delete Service %s/%s: %s", namespace, name, err)

    def _finish_job(self, name: str, namespace: str) -> None:
        """After success: the Service always goes; the Job goes unless the DAG keeps finished pods."""
        if str(self.on_finish_action.value) == "keep_pod":
            try:
                self.client.delete_namespaced_service(name, namespace)
            except Exception as err:
                self.log.warning("could not delete Service %s/%s: %s", namespace, name, err)
            return
        self._delete_job(name, namespace)

    def _delete_leftovers(self, labels: dict[str, str]) -> None:
        """Remove Jobs and Services an earlier attempt of this task left (a killed worker, a lost retry)."""
        selector = ",".join(f"{key}={value}" for key, value in sorted(labels.items()))
        namespace = str(self.namespace or self.hook.get_namespace() or "default")
        for job in self.batch.list_namespaced_job(namespace, label_selector=selector).items:
            self.log.warning("deleting Job %s left by an earlier attempt, with its ranks", job.metadata.name)
            self._delete_job(job.metadata.name, namespace)

    def on_kill(self) -> None:
        if self.job is not None:
            self._delete_job(self.job.metadata.name, self.job.metadata.namespace)


def _terminal_condition(job: Any) -> Any:
    for condition in (getattr(job.status, "conditions", None) or []) if job.status else []:
        if condition.type in _TERMINAL and str(condition.status) == "True":
            return condition
    return None


def _rank_of(pod: Any) -> str:
    annotations = (pod.metadata.annotations or {}) if pod.metadata else {}
    return str(annotations.get(job_building.COMPLETION_INDEX_ANNOTATION, "?"))
