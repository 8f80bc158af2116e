"""GuardedTrainingPodOperator: a KubernetesPodOperator that refuses training setups that break.

Every KubernetesPodOperator parameter keeps working, given in the call, through ``default_args``
or not at all; the deliberate differences are the table in ``docs/training-pod-operator.md``
(a test walks KubernetesPodOperator's signature against it). On top of them: images pinned by
digest, the GPU request checked against node shapes and quota before the pod exists, a checkpoint
volume per (DAG, task, ``partition_key``) with the training contract's environment, the hard
deadline as ``activeDeadlineSeconds`` and ``execution_timeout``, a stalled pod deleted (retryable),
failures classified into one readable message, and the merged pod given safe security defaults and
checked against the Pod Security Standards "restricted" profile.

The operator composes the pieces of :mod:`airflow_training_guard.kubernetes` (settings, KPO
arguments, pod building, images, capacity, watchdog, failure evidence); it holds no pod editing,
checking or watching logic of its own.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.providers.cncf.kubernetes.triggers.pod import KubernetesPodTrigger
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException

from airflow_training_guard import telemetry
from airflow_training_guard.exceptions import GuardConfigError
from airflow_training_guard.kubernetes import pod_arguments, pod_building
from airflow_training_guard.kubernetes import pod_security as pod_security_rules
from airflow_training_guard.kubernetes.capacity import CapacityError, check_gpu_settings
from airflow_training_guard.kubernetes.config import (
    CheckpointSettings,
    GpuSettings,
    check_output_dirs,
    settings_from_arguments,
)
from airflow_training_guard.kubernetes.failures import read_failure_evidence
from airflow_training_guard.kubernetes.images import PinRule, check_parse_time_images, check_pod_images
from airflow_training_guard.kubernetes.watchdog import PodHeartbeatWatchdog, read_log_tail, stall_settings
from airflow_training_guard.operators import common
from airflow_training_guard.operators.common import GivenArguments
from airflow_training_guard.policies.diagnostics import Diagnosis, FailureKind, diagnose, stalled
from airflow_training_guard.policies.durations import DurationLike, parse_duration
from airflow_training_guard.policies.profiles import GuardProfile, get_profile
from airflow_training_guard.settings import CONFIG_SECTION, OPTION_FORBID_UNPINNED_IMAGES, is_templated
from airflow_training_guard.triggers.training_pod import (
    STALL_EVENT_KEY,
    STALL_SETTINGS_KEY,
    GuardedPodTrigger,
)

if TYPE_CHECKING:
    from airflow.sdk import Context
    from airflow.triggers.base import BaseTrigger
    from kubernetes.client import models as k8s

    from airflow_training_guard.policies.gpus import FragmentationPolicy, NodeShape
    from airflow_training_guard.policies.images import ImageReference

__all__ = ["CheckpointSettings", "GpuSettings", "GuardedTrainingPodOperator"]


def _forbid_unpinned_images() -> bool:
    """The cluster-wide switch ``[training_guard] forbid_unpinned_images`` (airflow.cfg / env)."""
    from airflow.configuration import conf

    return conf.getboolean(CONFIG_SECTION, OPTION_FORBID_UNPINNED_IMAGES, fallback=False)


class GuardedTrainingPodOperator(KubernetesPodOperator):
    """Run a GPU training pod with pinned images, shapes that fit, resume, timeouts and readable failures.

    All :class:`KubernetesPodOperator` parameters are accepted, in the call or in ``default_args``.
    ``docs/training-pod-operator.md`` has every guard parameter with its default; in short:

    :param image: the training image, pinned by digest (``repo@sha256:<64 hex>``), else the template's.
    :param expected_runtime: how long the job normally takes; with the buffer, the hard deadline.
    :param partition_key: templated; default: the run's ``partition_key``, else ``ds``.
    :param gpus: GPUs per pod (0: CPU only). With ``gpu_resource``, ``gpu_fragmentation``,
        ``node_shapes``, ``check_node_inventory`` and ``check_gpu_quota``: the fields of ``gpu=``.
    :param gpu: those settings as one :class:`GpuSettings` (shareable between tasks); not with them.
    :param kueue_queue_name: submit through Kueue's LocalQueue of this name, admitted by quota.
    :param checkpoint_claim_name: the PVC holding checkpoints (``None``: an emptyDir). With
        ``checkpoint_root`` (where the volume is mounted), ``checkpoint_path_template``, ``checkpoint_every_steps`` and
        ``checkpoint_keep_last``: the fields of ``checkpoint=``.
    :param checkpoint: those settings as one :class:`CheckpointSettings`; not with them.
    :param output_dir: where the program writes its model inside the container.
    :param worker_output_dir: where the worker sees that folder (templated): the run manifest is
        written there and its summary returned. Not with ``do_xcom_push``.
    :param profile: ``"safe"`` (default) or ``"fast"``; explicit parameters override it.
    :param timeout_buffer: fraction added to ``expected_runtime`` (default from the profile).
    :param deadline: explicit hard deadline, >= expected_runtime * (1 + buffer).
    :param startup_timeout: time for the pod to be scheduled and start (image pull included).
    :param stall_after: no heartbeat progress in the log for this long deletes the pod (retryable).
    :param heartbeat_log_interval: how often the program prints heartbeat marker lines.
    :param allow_unpinned_image: development only: accept a tag, with a loud warning.
    :param safe_pod_defaults: fill in the restricted profile's security fields every container leaves unset.
    :param pod_security: ``"restricted"`` refuses a pod breaking that profile; ``"warn"`` logs and submits.
    :param pins: dataset/model revisions from ``PreflightOperator`` (templated), for the pod and the manifest.
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
        image: str | None = None,
        expected_runtime: DurationLike,
        partition_key: str | None = None,
        gpus: int | None = None,
        gpu_resource: str | None = None,
        gpu_fragmentation: str | FragmentationPolicy | None = None,
        node_shapes: Sequence[NodeShape] | None = None,
        check_node_inventory: bool | None = None,
        check_gpu_quota: bool | None = None,
        gpu: GpuSettings | None = None,
        kueue_queue_name: str | None = None,
        checkpoint_claim_name: str | None = None,
        checkpoint_root: str | None = None,
        checkpoint_path_template: str | None = None,
        checkpoint_every_steps: int | None = None,
        checkpoint_keep_last: int | None = None,
        checkpoint: CheckpointSettings | None = None,
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
        pod_security: str = "restricted",
        pins: Mapping[str, Any] | str | None = None,
        **kwargs: Any,
    ) -> None:
        checkpoint_root = common.renamed_argument(
            kwargs, old="checkpoint_mount_path", new="checkpoint_root", value=checkpoint_root
        )
        given = GivenArguments(kwargs)
        self.guard_profile = get_profile(profile)
        self.pod_security = pod_security_rules.check_mode(pod_security)
        check_output_dirs(output_dir, worker_output_dir, do_xcom_push=given.get("do_xcom_push"))
        # The flat arguments of each group are named in its ARGUMENTS table (one place, no copy here).
        flat = locals()
        self.gpu = settings_from_arguments(
            GpuSettings, gpu, {name: flat[name] for name in GpuSettings.ARGUMENTS}, argument="gpu"
        )
        self.checkpoint = settings_from_arguments(
            CheckpointSettings,
            checkpoint,
            {name: flat[name] for name in CheckpointSettings.ARGUMENTS},
            argument="checkpoint",
        )
        self.checkpoint_policy = self.checkpoint.policy(self.guard_profile)
        self.heartbeat_log_interval = parse_duration(heartbeat_log_interval, name="heartbeat_log_interval")
        self.timeout_policy = common.timeout_policy_for(
            self.guard_profile,
            expected_runtime=expected_runtime,
            timeout_buffer=timeout_buffer,
            deadline=deadline,
            startup_timeout=startup_timeout,
            stall_after=stall_after,
            poll_interval=self.heartbeat_log_interval,  # the watchdog polls once per heartbeat line
            poll_interval_name="heartbeat_log_interval",
        )
        self.kueue_queue_name = kueue_queue_name
        self._derive_kpo_arguments(given)
        self.safe_pod_defaults = safe_pod_defaults
        super().__init__(image=image, **kwargs)

        self.pin_rule = PinRule(
            allow_unpinned=allow_unpinned_image, forbid_unpinned=_forbid_unpinned_images()
        )
        self.image_reference: ImageReference | None = check_parse_time_images(
            self.pin_rule,
            image=self.image,
            base_container_name=self.base_container_name,
            full_pod_spec=self.full_pod_spec,
            pod_template_dict=self.pod_template_dict,
            pod_template_file=self.pod_template_file,
        )
        if partition_key is not None and not (isinstance(partition_key, str) and is_templated(partition_key)):
            common.check_partition_key(partition_key, task_id=self.task_id)  # templated: after rendering
        self.partition_key = partition_key
        self.output_dir = output_dir
        self.worker_output_dir = worker_output_dir
        self.pins = pins
        self._stall_detail: str | None = None
        self._resolved_partition_key: str | None = None
        self._resolved_pins: dict[str, dict[str, str]] = {}
        self._last_log_lines: list[str] = []

    def _derive_kpo_arguments(self, given: GivenArguments) -> None:
        """KPO's arguments from the guard's settings: set where derived, defaulted where the DAG is silent."""
        given.replace(
            pod_arguments.deadline_arguments(
                self.timeout_policy,
                active_deadline_seconds=given.get("active_deadline_seconds"),
                execution_timeout=given.get("execution_timeout"),
            )
        )
        given.default(pod_arguments.default_arguments(self.guard_profile, self.timeout_policy))
        given.replace(
            pod_arguments.gpu_and_queue_arguments(
                self.gpu,
                kueue_queue_name=self.kueue_queue_name,
                labels=given.get("labels"),
                container_resources=given.get("container_resources"),
                tolerations=given.get("tolerations"),
            )
        )

    # -- pod manifest --------------------------------------------------------------------------------

    def build_pod_request_obj(self, context: Context | None = None, *, dry_run: bool = False) -> k8s.V1Pod:
        """KPO's pod composed with the guard's pieces, then checked: images pinned, profile restricted."""
        pod = super().build_pod_request_obj(context, dry_run=dry_run)
        partition_key = self._resolved_partition_key or (
            common.resolve_partition_key(self.partition_key, context, task_id=self.task_id)
            if context
            else "dry-run"
        )
        sub_path = self._checkpoint_sub_path(partition_key)
        env = pod_building.contract_environment(
            partition_key=partition_key,
            checkpoint_policy=self.checkpoint_policy,
            heartbeat_log_interval_seconds=self.heartbeat_log_interval.total_seconds(),
            attempt=int(getattr(context.get("ti"), "try_number", 1) or 1) if context else 1,
            output_dir=str(self.output_dir) if self.output_dir else None,
            pins=self._resolved_pins,
        )
        try:
            pod = pod_building.with_env(pod, self.base_container_name, env)
            pod = pod_building.with_checkpoint_volume(
                pod,
                self.base_container_name,
                mount_path=self.checkpoint_policy.root,
                claim_name=self.checkpoint.claim_name,
                sub_path=sub_path,
            )
            if self.safe_pod_defaults:
                pod = pod_building.with_security_defaults(pod)
            base = check_pod_images(self.pin_rule, pod, base_container_name=self.base_container_name)
            self.image_reference = base or self.image_reference
            annotations = {"partition-key": partition_key, "checkpoint-sub-path": sub_path}
            if self.image_reference is not None and self.image_reference.digest:
                annotations["image-digest"] = self.image_reference.digest
            pod = pod_building.with_annotations(pod, annotations)
            warning = pod_security_rules.enforce(
                pod_building.api_dict(pod), mode=self.pod_security, task_id=self.task_id
            )
        except GuardConfigError as err:
            if context is None:
                raise
            raise AirflowFailException(str(err)) from err  # a retry builds the same pod
        if warning:
            self.log.warning("%s", warning)
        return pod

    def _checkpoint_sub_path(self, partition_key: str) -> str:
        return self.checkpoint_policy.relative_dir(
            dag_id=self.dag_id, task_id=self.task_id, partition_key=partition_key
        )

    # -- execution ------------------------------------------------------------------------------------

    def _prepare_attempt(self, context: Context, *, pods: int = 1) -> None:
        """Everything an attempt checks before a pod exists: key, pins, images, GPU capacity, config log.

        :param pods: how many pods of this shape run at once (the Job operator's ranks).
        """
        self._resolved_partition_key = common.resolve_partition_key(
            self.partition_key, context, task_id=self.task_id
        )
        self._stall_detail = None
        self._last_log_lines = []
        self._resolved_pins = common.parse_pins(self.pins, task_id=self.task_id)
        for line in common.verify_content_pins(self._resolved_pins, task_id=self.task_id):
            self.log.info("data pin verified: %s", line)
        if self.image_reference is None and self.image is not None:  # templated image: rendered now
            try:
                self.image_reference = self.pin_rule.require(str(self.image))
            except GuardConfigError as err:  # a retry renders the same image: do not retry
                raise AirflowFailException(str(err)) from err
        if self.image_reference is not None and not self.image_reference.is_pinned:
            self.log.warning(
                "DEVELOPMENT ONLY: image %s is not pinned by digest (allow_unpinned_image=True); this run "
                "is not reproducible and the image can change under it",
                self.image,
            )
        if self.gpu.gpus:
            self._check_gpu_capacity(pods=pods)
        self._log_effective_configuration()

    def _check_gpu_capacity(self, *, pods: int = 1) -> None:
        from airflow_training_guard.hooks.kubernetes_inventory import KubernetesInventoryHook

        inventory = functools.partial(
            KubernetesInventoryHook,
            self.kubernetes_conn_id,
            config_file=self.config_file,
            cluster_context=self.cluster_context,
            in_cluster=self.in_cluster,
        )
        try:
            report = check_gpu_settings(
                self.gpu,
                node_selector=self.node_selector,
                tolerations=self.tolerations,
                inventory=inventory,
                namespace=str(self.namespace or "default"),
                kueue_queue_name=self.kueue_queue_name,
                pods=pods,
            )
        except CapacityError as err:
            raise (AirflowException if err.retryable else AirflowFailException)(str(err)) from err
        for warning in report.warnings:
            self.log.warning("%s", warning)

    def _log_effective_configuration(self) -> None:
        self.log.info(
            "effective configuration: image=%s partition_key=%s gpus=%s profile=%s checkpoint_claim=%s "
            "checkpoint_sub_path=%s kueue_queue=%s pod_security=%s retries=%s timeouts=%s",
            self.image_reference or self.image,
            self._resolved_partition_key,
            self.gpu.describe(),
            self.guard_profile.name,
            self.checkpoint.claim_name,
            self._checkpoint_sub_path(self._resolved_partition_key or ""),
            self.kueue_queue_name,
            self.pod_security,
            self.retries,
            self.timeout_policy.describe(),
        )
        if not self.checkpoint.claim_name:
            self.log.warning(
                "no checkpoint_claim_name: checkpoints live only as long as the pod, so a retry after a "
                "preemption starts from step 0"
            )

    def execute(self, context: Context) -> Any:
        self._prepare_attempt(context)
        settings = stall_settings(self.timeout_policy)
        if self.deferrable and settings is not None:
            # The triggerer runs the same watchdog (GuardedPodTrigger) while the worker slot is free.
            self.trigger_kwargs = {**(self.trigger_kwargs or {}), STALL_SETTINGS_KEY: settings}
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
        diagnosis = self._diagnose(pod, pod)
        self.log.error("pod %s is stalled: %s; deleting it", pod.metadata.name, self._stall_detail)
        try:
            self.pod_manager.delete_pod(pod)
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
        summary = common.manifest_summary(manifest, output_dir=output_dir, path=path)
        # KPO keeps do_xcom_push=False (True would add its xcom sidecar), so Airflow would drop the
        # return value: push it as the return value explicitly, for `train.output` downstream.
        context["ti"].xcom_push(key="return_value", value=summary)
        return summary

    def _push_manifest(self, context: Context) -> Any:
        """Record what this run used (docs/run-manifest.md) and push it to XCom as ``manifest``.

        Pushed whatever ``do_xcom_push`` says: that switch governs the task's return value (KPO's
        xcom sidecar), and the manifest travels under its own key, as any explicit ``xcom_push``
        does; it is how a pod run stays reproducible when the worker cannot see the pod's volume.
        """
        partition_key = self._resolved_partition_key or common.resolve_partition_key(
            self.partition_key, context, task_id=self.task_id
        )
        artifact_dir = self.worker_output_dir or self.output_dir
        manifest = common.pod_run_manifest(
            dag_id=self.dag_id,
            run_id=str(context.get("run_id") or ""),
            task_id=self.task_id,
            partition_key=partition_key,
            image=str(self.image_reference or self.image),
            image_digest=self.image_reference.digest if self.image_reference else None,
            pins=self._resolved_pins,
            cmds=list(self.cmds or []),
            arguments=list(self.arguments or []),
            output_dir=str(self.output_dir) if self.output_dir else None,
            artifact_dir=str(artifact_dir) if artifact_dir else None,
            dag_file=getattr(self.dag, "fileloc", None) if self.has_dag() else None,  # type: ignore[no-untyped-call]
            checkpoints=self.checkpoint.location(self._checkpoint_sub_path(partition_key)),
            metrics=common.read_metrics_file(Path(str(self.worker_output_dir)), self.log)
            if self.worker_output_dir
            else {},
        )
        if not manifest.is_complete:
            self.log.warning("run manifest is incomplete: missing %s", ", ".join(manifest.missing_fields()))
        context["ti"].xcom_push(key="manifest", value=manifest.to_dict())
        return manifest

    # -- stall detection (sync mode) ---------------------------------------------------------------------

    def await_pod_completion(self, pod: k8s.V1Pod) -> None:  # type: ignore[override]
        """KPO's wait, with a watchdog that deletes the pod when its heartbeat stops advancing."""
        if self.timeout_policy.stall_after is None:
            super().await_pod_completion(pod)
            return
        watchdog = PodHeartbeatWatchdog.for_policy(
            self.timeout_policy,
            read_tail=lambda: read_log_tail(self.client, pod, container=self.base_container_name, lines=200),
            delete_pod=lambda: self.pod_manager.delete_pod(pod),
            pod_name=pod.metadata.name,
        )
        try:
            with watchdog:
                super().await_pod_completion(pod)
        finally:
            self._last_log_lines = watchdog.last_log_lines or self._last_log_lines
            self._stall_detail = watchdog.stall_detail or self._stall_detail

    # -- failure diagnosis -------------------------------------------------------------------------------

    def cleanup(
        self,
        pod: k8s.V1Pod,
        remote_pod: k8s.V1Pod,
        xcom_result: dict[Any, Any] | None = None,
        context: Context | None = None,
    ) -> None:
        """Diagnose a failed pod before KPO's cleanup deletes it, then fail with one clear message.

        The message holds the classified reason, and KPO's own message (termination message, the
        pod spec with ``log_pod_spec_on_failure``) whole at its end: never less than KPO says.
        """
        diagnosis = None
        phase = getattr(getattr(remote_pod, "status", None), "phase", None)
        if not self._killed and remote_pod is not None and (phase != "Succeeded" or self._stall_detail):
            diagnosis = self._diagnose(pod, remote_pod)
        try:
            super().cleanup(pod=pod, remote_pod=remote_pod, xcom_result=xcom_result, context=context)
        except AirflowException as err:
            if diagnosis is None or isinstance(err, AirflowSkipException):
                raise
            raise self._exception_for(diagnosis, pod, upstream=str(err)) from err
        if diagnosis is not None and (self._stall_detail or diagnosis.kind is not FailureKind.UNKNOWN):
            raise self._exception_for(diagnosis, pod)

    def _diagnose(self, pod: k8s.V1Pod, remote_pod: k8s.V1Pod | None) -> Diagnosis:
        """Classify the failure from the freshest pod status there is (else what KPO last read)."""
        evidence = read_failure_evidence(
            self.client, self.pod_manager, pod, container=self.base_container_name, last_read=remote_pod
        )
        # A pod the stall watchdog deleted has no log left to read: keep what the watchdog saw last.
        if evidence.log_tail or not self._stall_detail:
            self._last_log_lines = evidence.log_tail
        diagnosis = diagnose(evidence.pod, evidence.events, container=self.base_container_name)
        if self._stall_detail:
            diagnosis = stalled(self._stall_detail, observed=diagnosis, subject=f"pod {pod.metadata.name}")
        return diagnosis

    def _exception_for(
        self, diagnosis: Diagnosis, pod: k8s.V1Pod, *, upstream: str | None = None
    ) -> AirflowException:
        telemetry.attempt_ended(self, diagnosis.kind.value, exit_code=diagnosis.exit_code)
        return common.failure_exception(
            diagnosis,
            pod_name=pod.metadata.name,
            namespace=pod.metadata.namespace,
            last_log_lines=self._last_log_lines,
            upstream=upstream,
        )

    # -- OpenLineage (docs/lineage.md): called by the provider's listener when it is installed ----------

    def get_openlineage_facets_on_start(self) -> Any:
        from airflow_training_guard.lineage import training_lineage

        digest = self.image_reference.digest if self.image_reference else None
        pins = common.parse_pins(self.pins, task_id=self.task_id)
        return training_lineage(None, pins=pins, image=str(self.image), image_digest=digest)

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """Pins and image in; the model artifact out, with its SHA-256 when the worker sees the files."""
        from airflow_training_guard.lineage import run_manifest_at, training_lineage

        digest = self.image_reference.digest if self.image_reference else None
        pins = common.parse_pins(self.pins, task_id=self.task_id)
        manifest = run_manifest_at(self.worker_output_dir, task_instance)
        return training_lineage(manifest, pins=pins, image=str(self.image), image_digest=digest)
