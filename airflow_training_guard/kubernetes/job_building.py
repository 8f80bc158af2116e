"""Pure pod-in/Job-out helpers for multi-node training: an Indexed Job and its headless Service.

``torchrun`` needs every rank to reach rank 0 at a stable address before training starts. An
Indexed Job gives each pod a completion index (its node rank) and, with ``subdomain`` set to a
headless Service, a stable DNS name ``<job>-<index>.<service>.<namespace>.svc``; rank 0's name is
the rendezvous address. The pod itself comes from the same pod-building pieces as a single-pod run
(:mod:`.pod_building`), so every guard of the pod operator holds for every rank.

Gang semantics come from the Job spec: ``backoffLimit: 0`` fails the whole Job when one rank is
lost (a crash, an eviction, a preemption), and deleting the Job in the foreground takes every rank
with it; the operator's retry starts all ranks again from the same checkpoint directory.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from kubernetes.client import models as k8s

from airflow_training_guard.exceptions import GuardConfigError
from airflow_training_guard.kubernetes.pod_building import (
    ANNOTATION_PREFIX,
    KUEUE_QUEUE_LABEL,
    find_container,
)
from airflow_training_guard.runtime.contract import ENV_NUM_RANKS, ENV_RANK

if TYPE_CHECKING:
    from airflow_training_guard.policies.stragglers import StragglerPolicy

#: The label that ties a Job's pods to its headless Service.
JOB_LABEL = ANNOTATION_PREFIX + "job"
#: The annotation Kubernetes sets on each pod of an Indexed Job (its completion index).
COMPLETION_INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"
#: Environment of every rank: torchrun reads its arguments from ``PET_*`` variables.
#: (the rank names are the training contract's: ``runtime.contract``).
#: Longest DNS label (a pod hostname ``<job>-<index>`` must fit).
MAX_DNS_LABEL = 63


def check_gang_arguments(
    *,
    ranks: object,
    nproc_per_node: object,
    rendezvous_port: object,
    deferrable: object,
    do_xcom_push: object,
    straggler_policy: StragglerPolicy | None,
) -> None:
    """The Job operator's arguments, when the DAG is parsed: each error names the value and the fix."""
    if straggler_policy is not None and straggler_policy.avoid_node:
        raise GuardConfigError(
            "straggler_policy avoid_node=True is not available for GuardedTrainingJobOperator yet: the retry "
            "cannot carry the node to avoid. Drop avoid_node, or cordon the node (kubectl cordon) when "
            "the straggler report names it"
        )
    if deferrable:
        raise GuardConfigError(
            "deferrable=True is not available for GuardedTrainingJobOperator: the wait reads every "
            "rank's heartbeat on the worker. Drop deferrable, or run one pod with "
            "GuardedTrainingPodOperator(deferrable=True)"
        )
    if do_xcom_push:
        raise GuardConfigError(
            "do_xcom_push=True is not available for GuardedTrainingJobOperator (one sidecar per rank "
            "would race for the return value); write results to output_dir / worker_output_dir"
        )
    for name, value, low, high in (
        ("ranks", ranks, 1, 10_000),
        ("nproc_per_node", nproc_per_node, 1, 1_024),
        ("rendezvous_port", rendezvous_port, 1, 65_535),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise GuardConfigError(f"{name}={value!r} must be an integer from {low} to {high}")


def job_name_for(pod_name: str, ranks: int) -> str:
    """A Job name whose pods' hostnames ``<name>-<index>`` stay valid DNS labels."""
    room = MAX_DNS_LABEL - 1 - len(str(ranks - 1))
    return pod_name[:room].rstrip("-.")


def rendezvous_address(job_name: str, namespace: str) -> str:
    """Rank 0's stable DNS name (the headless Service has the Job's name)."""
    return f"{job_name}-0.{job_name}.{namespace}.svc"


def with_rank_environment(
    pod: k8s.V1Pod,
    container_name: str,
    *,
    job_name: str,
    namespace: str,
    ranks: int,
    nproc_per_node: int,
    port: int,
) -> k8s.V1Pod:
    """Give the training container torchrun's rendezvous settings and its own rank.

    The rank is not known when the pod template is built: it comes from the completion index the
    Job controller writes on each pod, through the downward API.
    """
    container = find_container(pod, container_name)
    rank_from_index = k8s.V1EnvVarSource(
        field_ref=k8s.V1ObjectFieldSelector(
            field_path=f"metadata.annotations['{COMPLETION_INDEX_ANNOTATION}']"
        )
    )
    values = {
        ENV_NUM_RANKS: str(ranks),
        "PET_NNODES": str(ranks),
        "PET_NPROC_PER_NODE": str(nproc_per_node),
        "PET_MASTER_ADDR": rendezvous_address(job_name, namespace),
        "PET_MASTER_PORT": str(port),
    }
    from_index = (ENV_RANK, "PET_NODE_RANK")
    kept = [e for e in (container.env or []) if e.name not in values and e.name not in from_index]
    container.env = [
        *kept,
        *(k8s.V1EnvVar(name=key, value=value) for key, value in values.items()),
        *(k8s.V1EnvVar(name=key, value_from=rank_from_index) for key in from_index),
    ]
    ports = [p for p in (container.ports or []) if p.container_port != port]
    container.ports = [*ports, k8s.V1ContainerPort(container_port=port, name="rendezvous")]
    return pod


def indexed_job(
    pod: k8s.V1Pod,
    *,
    name: str,
    ranks: int,
    active_deadline_seconds: int | None,
    ttl_seconds_after_finished: int | None,
    labels: Mapping[str, str],
    kueue_queue_name: str | None = None,
) -> k8s.V1Job:
    """Wrap ``pod`` into an Indexed Job of ``ranks`` pods that run at once and fail together.

    :param pod: the guarded pod (environment, checkpoint volume, security defaults already applied).
    :param labels: identify the Job (and its pods) as this task's, to find leftovers on a retry.
    :param kueue_queue_name: submit suspended with Kueue's queue label; Kueue admits the whole
        gang at once by quota (and unsuspends it), so no rank waits half-scheduled holding GPUs.
    """
    if isinstance(ranks, bool) or not isinstance(ranks, int) or ranks < 1:
        raise GuardConfigError(f"ranks={ranks!r} must be an integer >= 1, e.g. ranks=4 for four nodes")
    template_labels = {**(pod.metadata.labels or {}), **labels, JOB_LABEL: name}
    pod.spec.subdomain = name  # with the headless Service: <name>-<index>.<name>.<ns>.svc
    pod.spec.restart_policy = "Never"
    job_labels = {**labels, JOB_LABEL: name}
    if kueue_queue_name:
        job_labels[KUEUE_QUEUE_LABEL] = kueue_queue_name
    return k8s.V1Job(
        api_version="batch/v1",
        kind="Job",
        metadata=k8s.V1ObjectMeta(
            name=name,
            namespace=pod.metadata.namespace,
            labels=job_labels,
            annotations=dict(pod.metadata.annotations or {}),
        ),
        spec=k8s.V1JobSpec(
            completion_mode="Indexed",
            completions=ranks,
            parallelism=ranks,
            # Gang semantics: one lost rank fails the Job; the Airflow retry restarts every rank.
            backoff_limit=0,
            active_deadline_seconds=active_deadline_seconds,
            ttl_seconds_after_finished=ttl_seconds_after_finished,
            suspend=True if kueue_queue_name else None,
            template=k8s.V1PodTemplateSpec(
                metadata=k8s.V1ObjectMeta(labels=template_labels, annotations=pod.metadata.annotations),
                spec=pod.spec,
            ),
        ),
    )


def headless_service(*, name: str, namespace: str, port: int, labels: Mapping[str, str]) -> k8s.V1Service:
    """The headless Service that gives every rank a DNS name, ready or not (rendezvous comes first)."""
    return k8s.V1Service(
        api_version="v1",
        kind="Service",
        metadata=k8s.V1ObjectMeta(name=name, namespace=namespace, labels={**labels, JOB_LABEL: name}),
        spec=k8s.V1ServiceSpec(
            cluster_ip="None",
            publish_not_ready_addresses=True,
            selector={JOB_LABEL: name},
            ports=[k8s.V1ServicePort(name="rendezvous", port=port, target_port=port)],
        ),
    )
