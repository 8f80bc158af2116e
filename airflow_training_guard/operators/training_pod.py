"""GuardedTrainingPodOperator: a KubernetesPodOperator that refuses training setups that break.

Every KubernetesPodOperator parameter keeps working. On top of them:

- the image must be pinned by digest (checked when the DAG is parsed);
- the GPU request is checked against the nodes' shapes and the namespace's quota before the pod
  is created, and a request that can never fit fails at once with the inventory in the message;
- checkpoints live on a volume mounted at the same path for every attempt, keyed by DAG, task and
  ``partition_key``, and the pod gets the same environment contract as the local launcher, so the
  training program resumes on retry;
- the hard deadline (``expected_runtime`` + buffer) becomes the pod's ``activeDeadlineSeconds``
  and Airflow's ``execution_timeout``; a stalled pod (no heartbeat progress in its log) is
  deleted and the attempt fails as retryable;
- failures are classified (OOMKilled, Unschedulable, ImagePullBackOff, evicted/preempted,
  non-zero exit, deadline) and the task fails with one message holding the reason, a hint, the
  last log lines and the pod's events; only failures a retry can fix are retried;
- pods run as non-root, without privilege escalation, with all capabilities dropped, unless the
  DAG says otherwise explicitly.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.providers.cncf.kubernetes.triggers.pod import KubernetesPodTrigger
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException
from kubernetes.client import models as k8s

from airflow_training_guard import __version__
from airflow_training_guard.exceptions import GuardConfigError
from airflow_training_guard.manifest import RunManifest, file_sha256, utc_now_iso
from airflow_training_guard.operators.common import (
    check_partition_key,
    parse_pins,
    read_metrics_file,
    resolve_partition_key,
    timeout_policy_for,
    verify_content_pins,
)
from airflow_training_guard.policies.checkpoints import CheckpointPolicy
from airflow_training_guard.policies.diagnostics import Diagnosis, FailureKind, diagnose, failure_message
from airflow_training_guard.policies.durations import DurationLike, format_duration, parse_duration
from airflow_training_guard.policies.gpus import (
    DEFAULT_GPU_RESOURCE,
    FragmentationPolicy,
    GpuRequest,
    GpuShapeError,
    NodeShape,
    Toleration,
    require_fit,
    validate_gpu_count,
)
from airflow_training_guard.policies.images import ImageReference, require_pinned
from airflow_training_guard.policies.profiles import GuardProfile, get_profile
from airflow_training_guard.policies.stall import StallWatch
from airflow_training_guard.runtime import contract
from airflow_training_guard.runtime.heartbeat import last_heartbeat_in
from airflow_training_guard.triggers.training_pod import (
    STALL_EVENT_KEY,
    STALL_SETTINGS_KEY,
    GuardedPodTrigger,
)

if TYPE_CHECKING:
    from airflow.sdk import Context
    from airflow.triggers.base import BaseTrigger

KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
ANNOTATION_PREFIX = "training-guard.io/"
CHECKPOINT_VOLUME = "training-guard-checkpoints"
CONFIG_SECTION = "training_guard"


def _forbid_unpinned_images() -> bool:
    """The cluster-wide switch ``[training_guard] forbid_unpinned_images`` (airflow.cfg / env)."""
    from airflow.configuration import conf

    return conf.getboolean(CONFIG_SECTION, "forbid_unpinned_images", fallback=False)


def _is_templated(value: str) -> bool:
    return "{{" in value or "{%" in value


class GuardedTrainingPodOperator(KubernetesPodOperator):
    """Run a GPU training pod with pinned images, shapes that fit, resume, timeouts and readable failures.

    All :class:`KubernetesPodOperator` parameters are accepted. Guard parameters:

    :param image: the training image, pinned by digest (``repo@sha256:<64 hex>``).
    :param expected_runtime: how long the job normally takes; with the buffer it gives the hard
        deadline (``activeDeadlineSeconds``, ``execution_timeout``).
    :param partition_key: the partition this pod trains on. Templated. Default: the run's
        ``partition_key``, else ``ds``.
    :param gpus: GPUs for the training container (requests = limits); 0 for CPU-only pods.
    :param gpu_resource: the extended resource name (``nvidia.com/gpu``).
    :param gpu_fragmentation: ``"allow"``, ``"warn"`` (default) or ``"reject"`` for requests that
        strand GPUs on a node (e.g. 3 GPUs on 8-GPU nodes).
    :param node_shapes: the GPU node inventory, when it comes from configuration; default: read
        from the cluster (allocatable minus what running pods request).
    :param check_node_inventory: read the inventory from the cluster when ``node_shapes`` is not
        given (needs permission to list nodes and pods; a refusal is logged and skipped).
    :param check_gpu_quota: compare the request with the namespace's ResourceQuota first.
    :param kueue_queue_name: submit through Kueue's LocalQueue of this name (the
        ``kueue.x-k8s.io/queue-name`` label), so the pod is admitted by quota instead of piling up.
    :param checkpoint_claim_name: PersistentVolumeClaim holding checkpoints. Each (DAG, task,
        partition_key) gets its own sub-path mounted at ``checkpoint_mount_path``. Without it,
        checkpoints live only as long as the pod and a retry starts from step 0 (logged).
    :param checkpoint_mount_path: where the program sees its checkpoint directory.
    :param checkpoint_path_template: sub-path layout; must contain ``{partition_key}``.
    :param output_dir: where the program writes its model inside the container (optional).
    :param worker_output_dir: where the Airflow worker sees the container's ``output_dir`` (the same
        volume mounted on the workers: a ReadWriteMany claim, a fuse-mounted bucket). Templated.
        When given, after the pod succeeds the operator writes the run manifest there, with the
        metrics of the program's ``metrics.json``, and returns ``{"partition_key", "output_dir",
        "manifest_path", "metrics", "manifest"}`` as ``LocalTrainingOperator`` does, so evaluation
        and promotion tasks work with either launcher. Not with ``do_xcom_push`` (both would be
        the task's return value).
    :param profile: ``"safe"`` (default) or ``"fast"``; explicit parameters override it.
    :param timeout_buffer: fraction added to ``expected_runtime`` (default from the profile).
    :param deadline: explicit hard deadline, >= expected_runtime * (1 + buffer).
    :param startup_timeout: time for the pod to be scheduled and start (image pull included).
    :param stall_after: no heartbeat progress in the log for this long deletes the pod
        (retryable). In deferrable mode the triggerer watches (``GuardedPodTrigger``).
    :param heartbeat_log_interval: how often the program prints heartbeat marker lines.
    :param allow_unpinned_image: development only: accept a tag, with a loud warning. Refused when
        ``[training_guard] forbid_unpinned_images = True``.
    :param safe_pod_defaults: non-root, no privilege escalation, all capabilities dropped, seccomp
        RuntimeDefault, unless ``security_context``/``container_security_context`` are given.
    :param pins: dataset/model revisions resolved by ``PreflightOperator`` (templated); passed to
        the container as ``TRAINING_GUARD_PINS`` and recorded in the run manifest, which is pushed
        to XCom under the key ``manifest``.
    """

    template_fields: Sequence[str] = (
        *KubernetesPodOperator.template_fields,
        "partition_key",
        "output_dir",
        "worker_output_dir",
        "pins",
    )

    def __init__(
        self,
        *,
        image: str,
        expected_runtime: DurationLike,
        partition_key: str | None = None,
        gpus: int = 0,
        gpu_resource: str = DEFAULT_GPU_RESOURCE,
        gpu_fragmentation: str | FragmentationPolicy = FragmentationPolicy.WARN,
        node_shapes: Sequence[NodeShape] | None = None,
        check_node_inventory: bool = True,
        check_gpu_quota: bool = True,
        kueue_queue_name: str | None = None,
        checkpoint_claim_name: str | None = None,
        checkpoint_mount_path: str = "/checkpoints",
        checkpoint_path_template: str = "{dag_id}/{task_id}/{partition_key}",
        checkpoint_every_steps: int | None = None,
        checkpoint_keep_last: int | None = None,
        output_dir: str | None = None,
        worker_output_dir: str | None = None,
        profile: str | GuardProfile = "safe",
        timeout_buffer: float | None = None,
        deadline: DurationLike | None = None,
        startup_timeout: DurationLike | None = None,
        stall_after: DurationLike | bool | None = True,
        heartbeat_log_interval: DurationLike = "10s",
        allow_unpinned_image: bool = False,
        safe_pod_defaults: bool = True,
        pins: Mapping[str, Any] | str | None = None,
        **kwargs: Any,
    ) -> None:
        self.guard_profile = get_profile(profile)
        kwargs.setdefault("retries", self.guard_profile.retries)
        if worker_output_dir is not None and (not worker_output_dir or not output_dir):
            raise GuardConfigError(
                f"worker_output_dir={worker_output_dir!r} needs output_dir (the same folder as the container "
                "sees it), e.g. output_dir='/shared/models/{{ ds }}', worker_output_dir='/mnt/shared/models/{{ ds }}'"
            )
        if worker_output_dir and kwargs.get("do_xcom_push"):
            raise GuardConfigError(
                "worker_output_dir and do_xcom_push=True both set the task's return value; with "
                "worker_output_dir the return value is the run manifest summary, so drop do_xcom_push"
            )
        # -- timeouts ------------------------------------------------------------------------------
        self.heartbeat_log_interval = parse_duration(heartbeat_log_interval, name="heartbeat_log_interval")
        self.timeout_policy = timeout_policy_for(
            self.guard_profile,
            expected_runtime=expected_runtime,
            timeout_buffer=timeout_buffer,
            deadline=deadline,
            startup_timeout=startup_timeout,
            stall_after=stall_after,
            # The watchdog reads the log tail; a poll per heartbeat line is plenty.
            poll_interval=self.heartbeat_log_interval,
            poll_interval_name="heartbeat_log_interval",
        )
        hard = self.timeout_policy.hard_deadline
        # Whole seconds rounded up: int() made a 0.65 s deadline activeDeadlineSeconds=0 (invalid).
        hard_seconds = -(-hard // timedelta(seconds=1))
        active = kwargs.get("active_deadline_seconds")
        if active is None:
            kwargs["active_deadline_seconds"] = hard_seconds
        elif active < hard.total_seconds():
            raise GuardConfigError(
                f"active_deadline_seconds={active} is shorter than the hard deadline {format_duration(hard)} "
                f"({hard_seconds}s); drop it (the operator sets it) or set it >= {hard_seconds}"
            )
        kwargs.setdefault(
            "startup_timeout_seconds", -(-self.timeout_policy.startup_timeout // timedelta(seconds=1))
        )
        # SIGTERM on preemption gives the program time to save a checkpoint before SIGKILL.
        kwargs.setdefault("termination_grace_period", 120)
        safety_net = hard + timedelta(minutes=5)
        if kwargs.get("execution_timeout") is None:
            kwargs["execution_timeout"] = safety_net
        elif kwargs["execution_timeout"] < hard:
            raise GuardConfigError(
                f"execution_timeout {format_duration(kwargs['execution_timeout'])} is shorter than the hard "
                f"deadline {format_duration(hard)}; drop execution_timeout (the operator sets it) or set "
                f"it >= {format_duration(safety_net)}"
            )
        # -- GPUs, queueing, safe defaults ------------------------------------------------------------
        self.gpus = validate_gpu_count(gpus)
        self.gpu_resource = gpu_resource
        try:
            self.gpu_fragmentation = FragmentationPolicy(gpu_fragmentation)
        except ValueError:
            raise GuardConfigError(
                f"gpu_fragmentation={gpu_fragmentation!r} is not valid; use one of "
                f"{[p.value for p in FragmentationPolicy]}"
            ) from None
        self.node_shapes = tuple(node_shapes) if node_shapes is not None else None
        self.check_node_inventory = check_node_inventory
        self.check_gpu_quota = check_gpu_quota
        self.kueue_queue_name = kueue_queue_name
        if kueue_queue_name:
            kwargs["labels"] = {**(kwargs.get("labels") or {}), KUEUE_QUEUE_LABEL: kueue_queue_name}
        if self.gpus:
            kwargs["container_resources"] = self._gpu_resources(kwargs.get("container_resources"))
            tolerations = list(kwargs.get("tolerations") or [])
            if not any(getattr(t, "key", None) == gpu_resource for t in tolerations):
                # GPU node pools are commonly tainted with the resource name (GKE, EKS, AKS).
                tolerations.append(k8s.V1Toleration(key=gpu_resource, operator="Exists", effect="NoSchedule"))
            kwargs["tolerations"] = tolerations
        self.safe_pod_defaults = safe_pod_defaults
        if safe_pod_defaults:
            kwargs.setdefault(
                "security_context", {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
            )
            kwargs.setdefault(
                "container_security_context",
                {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
            )
        if kwargs.get("reattach_on_restart") is None:
            # A retry re-attaches to its running pod instead of starting a duplicate. `durable` is
            # Airflow 3.3's name for it (`reattach_on_restart` is deprecated there).
            kwargs.pop("reattach_on_restart", None)
            kwargs.setdefault("durable", True)
        kwargs.setdefault("on_finish_action", "delete_pod")
        kwargs.setdefault("log_events_on_failure", True)
        super().__init__(image=image, **kwargs)

        # -- image pinning -----------------------------------------------------------------------------
        self.allow_unpinned_image = allow_unpinned_image
        self.image_reference: ImageReference | None = None
        if not _is_templated(image):
            self.image_reference = require_pinned(
                image, allow_unpinned=allow_unpinned_image, forbid_unpinned_override=_forbid_unpinned_images()
            )
        # -- checkpoints and the contract ---------------------------------------------------------------
        if partition_key is not None and not (
            isinstance(partition_key, str) and _is_templated(partition_key)
        ):
            check_partition_key(partition_key, task_id=self.task_id)  # templated: after rendering
        self.partition_key = partition_key
        self.output_dir = output_dir
        self.worker_output_dir = worker_output_dir
        self.pins = pins
        self.checkpoint_claim_name = checkpoint_claim_name
        self.checkpoint_policy = CheckpointPolicy(
            root=checkpoint_mount_path,
            path_template=checkpoint_path_template,
            keep_last=checkpoint_keep_last or self.guard_profile.checkpoint_keep_last,
            every_steps=checkpoint_every_steps or self.guard_profile.checkpoint_every_steps,
        )
        self._stall_detail: str | None = None
        self._resolved_partition_key: str | None = None
        self._resolved_pins: dict[str, dict[str, str]] = {}
        self._last_log_lines: list[str] = []

    # -- pod manifest ---------------------------------------------------------------------------------

    def _gpu_resources(self, given: k8s.V1ResourceRequirements | None) -> k8s.V1ResourceRequirements:
        """requests == limits for the GPU (Kubernetes requires it for extended resources)."""
        limits = dict((given.limits if given else None) or {})
        requests = dict((given.requests if given else None) or {})
        for name, values in (("limits", limits), ("requests", requests)):
            current = values.get(self.gpu_resource)
            if current is not None and str(current) != str(self.gpus):
                raise GuardConfigError(
                    f"container_resources.{name}[{self.gpu_resource!r}]={current!r} contradicts gpus={self.gpus}; "
                    "set the GPU count only with gpus="
                )
        limits[self.gpu_resource] = str(self.gpus)
        requests[self.gpu_resource] = str(self.gpus)
        return k8s.V1ResourceRequirements(limits=limits, requests=requests)

    def build_pod_request_obj(self, context: Context | None = None, *, dry_run: bool = False) -> k8s.V1Pod:
        """KPO's pod, plus the checkpoint volume, the environment contract and guard annotations."""
        pod = super().build_pod_request_obj(context, dry_run=dry_run)
        partition_key = self._resolved_partition_key or (
            resolve_partition_key(self.partition_key, context, task_id=self.task_id) if context else "dry-run"
        )
        sub_path = self._checkpoint_sub_path(partition_key)
        container = next(c for c in pod.spec.containers if c.name == self.base_container_name)
        attempt = int(getattr(context.get("ti"), "try_number", 1) or 1) if context else 1
        env = {
            contract.ENV_PARTITION_KEY: partition_key,
            contract.ENV_CHECKPOINT_DIR: self.checkpoint_policy.root,
            contract.ENV_CHECKPOINT_EVERY: str(self.checkpoint_policy.every_steps),
            contract.ENV_CHECKPOINT_KEEP: str(self.checkpoint_policy.keep_last),
            contract.ENV_HEARTBEAT_LOG_INTERVAL: f"{self.heartbeat_log_interval.total_seconds():g}",
            contract.ENV_ATTEMPT: str(attempt),
        }
        if self.output_dir:
            env[contract.ENV_OUTPUT_DIR] = str(self.output_dir)
        if self._resolved_pins:
            env[contract.ENV_PINS] = json.dumps(self._resolved_pins, sort_keys=True)
        existing = [e for e in (container.env or []) if e.name not in env]
        container.env = existing + [k8s.V1EnvVar(name=k, value=v) for k, v in env.items()]
        volume = (
            k8s.V1Volume(
                name=CHECKPOINT_VOLUME,
                persistent_volume_claim=k8s.V1PersistentVolumeClaimVolumeSource(
                    claim_name=self.checkpoint_claim_name
                ),
            )
            if self.checkpoint_claim_name
            else k8s.V1Volume(name=CHECKPOINT_VOLUME, empty_dir=k8s.V1EmptyDirVolumeSource())
        )
        pod.spec.volumes = [v for v in (pod.spec.volumes or []) if v.name != CHECKPOINT_VOLUME] + [volume]
        mount = k8s.V1VolumeMount(
            name=CHECKPOINT_VOLUME,
            mount_path=self.checkpoint_policy.root,
            sub_path=sub_path if self.checkpoint_claim_name else None,
        )
        container.volume_mounts = [
            m for m in (container.volume_mounts or []) if m.name != CHECKPOINT_VOLUME
        ] + [mount]
        annotations = dict(pod.metadata.annotations or {})
        annotations[ANNOTATION_PREFIX + "partition-key"] = partition_key
        annotations[ANNOTATION_PREFIX + "checkpoint-sub-path"] = sub_path
        if self.image_reference is not None and self.image_reference.digest:
            annotations[ANNOTATION_PREFIX + "image-digest"] = self.image_reference.digest
        pod.metadata.annotations = annotations
        return pod

    def _checkpoint_sub_path(self, partition_key: str) -> str:
        absolute = self.checkpoint_policy.checkpoint_dir(
            dag_id=self.dag_id, task_id=self.task_id, partition_key=partition_key
        )
        return absolute[len(self.checkpoint_policy.root.rstrip("/")) + 1 :]

    # -- execution ------------------------------------------------------------------------------------

    def execute(self, context: Context) -> Any:
        self._resolved_partition_key = resolve_partition_key(
            self.partition_key, context, task_id=self.task_id
        )
        self._stall_detail = None
        self._last_log_lines = []
        self._resolved_pins = parse_pins(self.pins, task_id=self.task_id)
        for line in verify_content_pins(self._resolved_pins, task_id=self.task_id):
            self.log.info("data pin verified: %s", line)
        if self.image_reference is None:  # templated image: rendered now
            try:
                self.image_reference = require_pinned(
                    str(self.image),
                    allow_unpinned=self.allow_unpinned_image,
                    forbid_unpinned_override=_forbid_unpinned_images(),
                )
            except GuardConfigError as err:  # a retry renders the same image: do not retry
                raise AirflowFailException(str(err)) from err
        if not self.image_reference.is_pinned:
            self.log.warning(
                "DEVELOPMENT ONLY: image %s is not pinned by digest (allow_unpinned_image=True); this run "
                "is not reproducible and the image can change under it",
                self.image,
            )
        if self.gpus:
            self._check_gpu_capacity()
        self._log_effective_configuration()
        if self.deferrable and self.timeout_policy.stall_after is not None:
            # The triggerer runs the same watchdog (GuardedPodTrigger) while the worker slot is free.
            self.trigger_kwargs = {
                **(self.trigger_kwargs or {}),
                STALL_SETTINGS_KEY: {
                    "stall_after": self.timeout_policy.stall_after.total_seconds(),
                    "startup_grace": self.timeout_policy.startup_timeout.total_seconds(),
                    "poll": self.heartbeat_log_interval.total_seconds(),
                },
            }
        result = super().execute(context)
        if not self.deferrable:  # deferrable runs finish in trigger_reentry
            return self._finish(context, result)
        return result

    def defer(
        self,
        *,
        trigger: BaseTrigger,
        method_name: str,
        kwargs: dict[str, Any] | None = None,
        timeout: timedelta | int | float | None = None,
    ) -> NoReturn:
        """KPO's deferral, with its KubernetesPodTrigger replaced by the stall-watching GuardedPodTrigger."""
        if type(trigger) is KubernetesPodTrigger:
            _, trigger_args = trigger.serialize()
            trigger = GuardedPodTrigger(**trigger_args)
        super().defer(trigger=trigger, method_name=method_name, kwargs=kwargs, timeout=timeout)

    def trigger_reentry(self, context: Context, event: dict[str, Any]) -> Any:
        if event.get(STALL_EVENT_KEY):
            self._fail_stalled(event)
        result = super().trigger_reentry(context, event)
        return self._finish(context, result)

    def _fail_stalled(self, event: dict[str, Any]) -> NoReturn:
        """The triggerer saw the heartbeat stop: diagnose, delete the pod, fail retryably (as in sync mode).

        KPO's own re-entry would follow the log of the still-running pod until it ends, i.e. hang.
        """
        pod = self.hook.get_pod(event["name"], event["namespace"])
        self._stall_detail = f"{event[STALL_EVENT_KEY]}; the watchdog deleted the pod"
        diagnosis = self._diagnose(pod)
        self.log.error("pod %s is stalled: %s; deleting it", pod.metadata.name, self._stall_detail)
        try:
            self.client.delete_namespaced_pod(pod.metadata.name, pod.metadata.namespace)
        except Exception as err:
            self.log.warning("could not delete stalled pod %s: %s", pod.metadata.name, err)
        raise self._exception_for(diagnosis, pod)

    def _finish(self, context: Context, result: Any) -> Any:
        manifest = self._push_manifest(context)
        if not self.worker_output_dir:
            return result
        output_dir = Path(str(self.worker_output_dir))
        path = manifest.write(output_dir)
        self.log.info("run manifest written to %s", path)
        summary = {
            "partition_key": manifest.partition_key,
            "output_dir": str(output_dir),
            "manifest_path": str(path),
            "metrics": dict(manifest.metrics),
            "manifest": manifest.to_dict(),
        }
        # KPO keeps do_xcom_push=False (True would add its xcom sidecar), so Airflow would drop the
        # return value: push it as the return value explicitly, for `train.output` downstream.
        context["ti"].xcom_push(key="return_value", value=summary)
        return summary

    def _push_manifest(self, context: Context) -> RunManifest:
        """Record what this run used (docs/run-manifest.md) and push it to XCom as ``manifest``.

        The model artifact lives in the pod's volume, so the manifest travels through XCom. With
        ``worker_output_dir`` the worker sees that volume: the artifact is recorded where the worker
        (and the promotion task) finds it, with the metrics the program wrote into ``metrics.json``.
        """
        partition_key = self._resolved_partition_key or resolve_partition_key(
            self.partition_key, context, task_id=self.task_id
        )
        dag_file = getattr(self.dag, "fileloc", None) if self.has_dag() else None  # type: ignore[no-untyped-call]
        artifact_dir = self.worker_output_dir or self.output_dir
        manifest = RunManifest(
            dag_id=self.dag_id,
            run_id=str(context.get("run_id") or ""),
            task_id=self.task_id,
            partition_key=partition_key,
            image_digest=self.image_reference.digest if self.image_reference else None,
            datasets=dict(self._resolved_pins.get("datasets", {})),
            models=dict(self._resolved_pins.get("models", {})),
            params={
                "image": str(self.image),
                "cmds": list(self.cmds or []),
                "arguments": list(self.arguments or []),
                "output_dir": str(self.output_dir) if self.output_dir else None,
            },
            code={
                "package_version": __version__,
                "dag_file_sha256": file_sha256(dag_file) if dag_file and Path(dag_file).is_file() else "",
            },
            python_env=None,
            checkpoints=(
                f"{self.checkpoint_claim_name or 'emptyDir'}:{self._checkpoint_sub_path(partition_key)}",
            ),
            artifact_uri=str(artifact_dir) if artifact_dir else None,
            metrics=read_metrics_file(Path(str(self.worker_output_dir)), self.log)
            if self.worker_output_dir
            else {},
            created_at=utc_now_iso(),
        )
        if not manifest.is_complete:
            self.log.warning("run manifest is incomplete: missing %s", ", ".join(manifest.missing_fields()))
        context["ti"].xcom_push(key="manifest", value=manifest.to_dict())
        return manifest

    def _check_gpu_capacity(self) -> None:
        request = GpuRequest(
            gpus=self.gpus,
            resource=self.gpu_resource,
            node_selector=dict(self.node_selector or {}),
            tolerations=tuple(
                Toleration(key=t.key, operator=t.operator or "Equal", value=t.value, effect=t.effect)
                for t in (self.tolerations or [])
            ),
        )
        shapes = self.node_shapes
        inventory = None
        if shapes is None and self.check_node_inventory:
            inventory = self._inventory_hook()
            try:
                shapes = tuple(inventory.node_shapes(resource=self.gpu_resource))
            except Exception as err:  # RBAC may forbid listing nodes: skip the check, say so
                self.log.warning("cannot read the node inventory (%s); GPU shape check skipped", err)
        if shapes is not None:
            try:
                report = require_fit(request, shapes, fragmentation=self.gpu_fragmentation)
            except GpuShapeError as err:
                raise AirflowFailException(str(err)) from err
            if report.fragmentation_warning:
                self.log.warning("%s", report.fragmentation_warning)
            if not report.fits_now:
                self.log.warning(
                    "no node has %d free %s right now; the pod will wait for capacity%s. Inventory: %s",
                    self.gpus,
                    self.gpu_resource,
                    " (Kueue admits it by quota)" if self.kueue_queue_name else "",
                    report.inventory_text(),
                )
        if self.check_gpu_quota:
            inventory = inventory or self._inventory_hook()
            try:
                left = inventory.remaining_gpu_quota(
                    str(self.namespace or "default"), resource=self.gpu_resource
                )
            except Exception as err:
                self.log.warning("cannot read ResourceQuotas (%s); quota check skipped", err)
                return
            if left is not None and self.gpus > left:
                message = (
                    f"namespace {self.namespace!r} has {left} {self.gpu_resource} left in its ResourceQuota, "
                    f"this pod requests {self.gpus}"
                )
                if self.kueue_queue_name:
                    self.log.warning(
                        "%s; Kueue queue %r will admit it when quota frees", message, self.kueue_queue_name
                    )
                else:
                    # Retryable: quota frees as other jobs finish. Kueue avoids the retry loop.
                    raise AirflowException(
                        f"{message}; the API server would reject it. Wait for running jobs to finish, "
                        "raise the quota, or set kueue_queue_name= to queue by quota instead"
                    )

    def _inventory_hook(self) -> Any:
        from airflow_training_guard.hooks.kubernetes_inventory import KubernetesInventoryHook

        return KubernetesInventoryHook(
            self.kubernetes_conn_id,
            config_file=self.config_file,
            cluster_context=self.cluster_context,
            in_cluster=self.in_cluster,
        )

    def _log_effective_configuration(self) -> None:
        self.log.info(
            "effective configuration: image=%s partition_key=%s gpus=%d %s profile=%s checkpoint_claim=%s "
            "checkpoint_sub_path=%s kueue_queue=%s timeouts=%s",
            self.image,
            self._resolved_partition_key,
            self.gpus,
            self.gpu_resource,
            self.guard_profile.name,
            self.checkpoint_claim_name,
            self._checkpoint_sub_path(self._resolved_partition_key or ""),
            self.kueue_queue_name,
            self.timeout_policy.describe(),
        )
        if not self.checkpoint_claim_name:
            self.log.warning(
                "no checkpoint_claim_name: checkpoints live only as long as the pod, so a retry after a "
                "preemption starts from step 0"
            )

    # -- stall detection (sync mode) ---------------------------------------------------------------------

    def await_pod_completion(self, pod: k8s.V1Pod) -> None:  # type: ignore[override]
        """KPO's wait, with a watchdog that deletes the pod when its heartbeat stops advancing."""
        policy = self.timeout_policy
        if policy.stall_after is None:
            super().await_pod_completion(pod)
            return
        stop = threading.Event()
        watchdog = threading.Thread(target=self._watch_heartbeat, args=(pod, stop), daemon=True)
        watchdog.start()
        try:
            super().await_pod_completion(pod)
        finally:
            stop.set()
            watchdog.join(timeout=30)

    def _log_tail(self, pod: k8s.V1Pod, *, lines: int) -> list[str]:
        """The last ``lines`` lines of the training container's log.

        Read raw: with ``_preload_content=True`` the kubernetes client returns ``str(bytes)``
        (``"b'...\\n...'"``) for logs, which no line parser can use.
        """
        response = self.client.read_namespaced_pod_log(
            pod.metadata.name,
            pod.metadata.namespace,
            container=self.base_container_name,
            tail_lines=lines,
            _preload_content=False,
        )
        try:
            return bytes(response.data).decode("utf-8", errors="replace").splitlines()
        finally:
            response.release_conn()

    def _watch_heartbeat(self, pod: k8s.V1Pod, stop: threading.Event) -> None:
        watch = self._stall_watch()
        while not stop.wait(self.timeout_policy.poll_interval.total_seconds()):
            try:
                tail = self._log_tail(pod, lines=200)
            except Exception as err:  # a transient API error must not kill the job
                self.log.debug("heartbeat watchdog could not read the log: %s", err)
                continue
            if tail:  # the pod is deleted below; its log cannot be read after that
                self._last_log_lines = tail[-20:]
            record = last_heartbeat_in(tail)
            detail = watch.observe(record.step if record else None, time.monotonic())
            if detail is not None:
                self._stall_detail = f"{detail}; the watchdog deleted the pod"
                self.log.error("pod %s is stalled: %s; deleting it", pod.metadata.name, self._stall_detail)
                try:
                    self.client.delete_namespaced_pod(pod.metadata.name, pod.metadata.namespace)
                except Exception as err:
                    self.log.warning("could not delete stalled pod %s: %s", pod.metadata.name, err)
                return

    def _stall_watch(self) -> StallWatch:
        policy = self.timeout_policy
        assert policy.stall_after is not None
        return StallWatch(
            stall_after=policy.stall_after.total_seconds(),
            startup_grace=policy.startup_timeout.total_seconds(),
            started=time.monotonic(),
        )

    # -- failure diagnosis -------------------------------------------------------------------------------

    def cleanup(
        self,
        pod: k8s.V1Pod,
        remote_pod: k8s.V1Pod,
        xcom_result: dict[Any, Any] | None = None,
        context: Context | None = None,
    ) -> None:
        """Diagnose a failed pod before KPO's cleanup deletes it, then fail with one clear message."""
        diagnosis = None
        phase = getattr(getattr(remote_pod, "status", None), "phase", None)
        if not self._killed and remote_pod is not None and (phase != "Succeeded" or self._stall_detail):
            diagnosis = self._diagnose(pod)
        try:
            super().cleanup(pod=pod, remote_pod=remote_pod, xcom_result=xcom_result, context=context)
        except AirflowException as err:
            if diagnosis is None or isinstance(err, AirflowSkipException):
                raise
            raise self._exception_for(diagnosis, pod) from err
        if diagnosis is not None and (self._stall_detail or diagnosis.kind is not FailureKind.UNKNOWN):
            raise self._exception_for(diagnosis, pod)

    def _diagnose(self, pod: k8s.V1Pod) -> Diagnosis:
        api = self.client.api_client
        try:
            remote = api.sanitize_for_serialization(self.pod_manager.read_pod(pod))
        except Exception:
            remote = api.sanitize_for_serialization(pod)
        try:
            events = [api.sanitize_for_serialization(e) for e in self.pod_manager.read_pod_events(pod).items]
        except Exception:
            events = []
        try:
            tail = self._log_tail(pod, lines=20)
        except Exception:
            tail = []
        # A pod the stall watchdog deleted has no log left to read: keep what the watchdog saw last.
        if tail or not self._stall_detail:
            self._last_log_lines = tail
        diagnosis = diagnose(remote, events, container=self.base_container_name)
        if self._stall_detail:
            diagnosis = Diagnosis(
                kind=FailureKind.STALLED,
                reason=f"pod {pod.metadata.name} stalled: {self._stall_detail}",
                hint=(
                    "the program stopped making progress (deadlock, hung I/O, stuck collective); the retry "
                    "resumes from the newest valid checkpoint. Raise stall_after only if single steps "
                    "really take that long"
                ),
                retryable=True,
                exit_code=diagnosis.exit_code,
                events=diagnosis.events,
            )
        return diagnosis

    def _exception_for(self, diagnosis: Diagnosis, pod: k8s.V1Pod) -> AirflowException:
        message = failure_message(
            diagnosis,
            pod_name=pod.metadata.name,
            namespace=pod.metadata.namespace,
            last_log_lines=self._last_log_lines,
        )
        return AirflowException(message) if diagnosis.retryable else AirflowFailException(message)
