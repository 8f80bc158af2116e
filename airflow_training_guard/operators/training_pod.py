"""GuardedTrainingPodOperator: a KubernetesPodOperator that refuses training setups that break.

Every KubernetesPodOperator parameter keeps working, given in the call, through ``default_args``
or not at all; the deliberate differences are the table in ``docs/training-pod-operator.md``
(a test walks KubernetesPodOperator's signature against it). On top of them:

- every image the pod runs must be pinned by digest (checked when the DAG is parsed where the
  image is known then, otherwise on the built pod before it is created);
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
  last log lines, the pod's events and KubernetesPodOperator's own message;
- the merged pod (template, spec, arguments, xcom sidecar) gets safe security defaults in every
  container and must pass the Pod Security Standards "restricted" profile.

The operator composes the pieces of :mod:`airflow_training_guard.kubernetes`; it holds no pod
editing or watching logic of its own.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.providers.cncf.kubernetes.triggers.pod import KubernetesPodTrigger
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException

from airflow_training_guard import __version__
from airflow_training_guard.exceptions import GuardConfigError
from airflow_training_guard.kubernetes import pod_building, pod_security
from airflow_training_guard.kubernetes.capacity import CapacityError, check_gpu_capacity, gpu_request
from airflow_training_guard.kubernetes.images import base_image, pod_images, template_pod
from airflow_training_guard.kubernetes.watchdog import PodHeartbeatWatchdog, read_log_tail
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
from airflow_training_guard.policies.diagnostics import (
    Diagnosis,
    FailureKind,
    diagnose,
    failure_message,
    stalled,
)
from airflow_training_guard.policies.durations import DurationLike, format_duration, parse_duration
from airflow_training_guard.policies.gpus import (
    DEFAULT_GPU_RESOURCE,
    FragmentationPolicy,
    NodeShape,
    validate_gpu_count,
)
from airflow_training_guard.policies.images import ImageReference, require_pinned
from airflow_training_guard.policies.profiles import GuardProfile, get_profile
from airflow_training_guard.runtime import contract
from airflow_training_guard.secrets import redact
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

# Kept importable from here (docs and DAGs used them before the kubernetes/ room existed).
KUEUE_QUEUE_LABEL = pod_building.KUEUE_QUEUE_LABEL
ANNOTATION_PREFIX = pod_building.ANNOTATION_PREFIX
CHECKPOINT_VOLUME = pod_building.CHECKPOINT_VOLUME
#: ``pod_security`` values: refuse violations of the restricted profile, or log them and go on.
POD_SECURITY_MODES = ("restricted", "warn")
#: SIGTERM on preemption gives the program this long to save a checkpoint before SIGKILL.
DEFAULT_TERMINATION_GRACE_SECONDS = 120


def _forbid_unpinned_images() -> bool:
    """The cluster-wide switch ``[training_guard] forbid_unpinned_images`` (airflow.cfg / env)."""
    from airflow.configuration import conf

    return conf.getboolean(CONFIG_SECTION, OPTION_FORBID_UNPINNED_IMAGES, fallback=False)


class _Given:
    """What the DAG gave for a parameter: in the call, else through ``default_args``.

    Airflow's ``apply_defaults`` hands every ``__init__`` the merged ``default_args`` (DAG, task
    group and task) and fills only the parameters that ``__init__`` names; this operator's
    KubernetesPodOperator parameters travel in ``**kwargs``, so the guard looks them up itself and
    applies its own defaults only where neither gives a value (a ``kwargs.setdefault`` would hide
    ``default_args={"retries": 7}`` from the provider).
    """

    def __init__(self, kwargs: dict[str, Any]) -> None:
        self._kwargs = kwargs
        self._defaults: Mapping[str, Any] = kwargs.get("default_args") or {}

    def get(self, name: str) -> Any:
        if name in self._kwargs:
            return self._kwargs[name]
        return self._defaults.get(name)

    def default(self, name: str, value: Any) -> None:
        """Use ``value`` for ``name`` unless the call or ``default_args`` gives one (even None)."""
        if name not in self._kwargs and name not in self._defaults:
            self._kwargs[name] = value

    def replace(self, name: str, value: Any) -> None:
        """Pass ``value`` for ``name`` (derived from what was given)."""
        self._kwargs[name] = value


class GuardedTrainingPodOperator(KubernetesPodOperator):
    """Run a GPU training pod with pinned images, shapes that fit, resume, timeouts and readable failures.

    All :class:`KubernetesPodOperator` parameters are accepted, in the call or in ``default_args``.
    Guard parameters:

    :param image: the training image, pinned by digest (``repo@sha256:<64 hex>``). Optional when
        ``pod_template_file``/``pod_template_dict``/``full_pod_spec`` gives the base container's
        image (as in KubernetesPodOperator); the digest rule applies to whichever image the pod runs.
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
    :param safe_pod_defaults: fill in non-root, no privilege escalation, all capabilities dropped
        and seccomp RuntimeDefault wherever the pod (arguments, template, spec) leaves the field
        unset, in every container including init containers and the xcom sidecar.
    :param pod_security: ``"restricted"`` (default): refuse a pod that violates the Pod Security
        Standards restricted profile, naming each field and its fix; ``"warn"``: log every
        violation once and submit the pod as it is.
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
        image: str | None = None,
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
        pod_security: str = "restricted",
        pins: Mapping[str, Any] | str | None = None,
        **kwargs: Any,
    ) -> None:
        given = _Given(kwargs)
        self.guard_profile = get_profile(profile)
        if pod_security not in POD_SECURITY_MODES:
            raise GuardConfigError(
                f"pod_security={pod_security!r} is not valid; use 'restricted' (refuse pods that break the "
                "Pod Security Standards restricted profile) or 'warn' (log each violation and submit)"
            )
        if worker_output_dir is not None and (not worker_output_dir or not output_dir):
            raise GuardConfigError(
                f"worker_output_dir={worker_output_dir!r} needs output_dir (the same folder as the container "
                "sees it), e.g. output_dir='/shared/models/{{ ds }}', worker_output_dir='/mnt/shared/models/{{ ds }}'"
            )
        if worker_output_dir and given.get("do_xcom_push"):
            raise GuardConfigError(
                "worker_output_dir and do_xcom_push=True both set the task's return value; with "
                "worker_output_dir the return value is the run manifest summary, so drop do_xcom_push"
            )
        # -- timeouts --------------------------------------------------------------------------------
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
        self._apply_guard_defaults(given)
        # -- GPUs, queueing ---------------------------------------------------------------------------
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
            given.replace("labels", {**(given.get("labels") or {}), KUEUE_QUEUE_LABEL: kueue_queue_name})
        if self.gpus:
            given.replace(
                "container_resources",
                pod_building.gpu_resources(
                    given.get("container_resources"), resource=gpu_resource, gpus=self.gpus
                ),
            )
            given.replace(
                "tolerations", pod_building.gpu_tolerations(given.get("tolerations"), resource=gpu_resource)
            )
        self.safe_pod_defaults = safe_pod_defaults
        self.pod_security = pod_security
        super().__init__(image=image, **kwargs)

        # -- images ------------------------------------------------------------------------------------
        self.allow_unpinned_image = allow_unpinned_image
        self.image_reference: ImageReference | None = None
        self._check_images_at_parse_time()
        # -- checkpoints and the contract ---------------------------------------------------------------
        if partition_key is not None and not (isinstance(partition_key, str) and is_templated(partition_key)):
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

    def _apply_guard_defaults(self, given: _Given) -> None:
        """The guard's defaults where the DAG gives nothing, and checks of what it does give."""
        hard = self.timeout_policy.hard_deadline
        # Whole seconds rounded up: int() made a 0.65 s deadline activeDeadlineSeconds=0 (invalid).
        hard_seconds = -(-hard // timedelta(seconds=1))
        active = given.get("active_deadline_seconds")
        if active is None:
            given.replace("active_deadline_seconds", hard_seconds)
        elif active < hard.total_seconds():
            raise GuardConfigError(
                f"active_deadline_seconds={active} is shorter than the hard deadline {format_duration(hard)} "
                f"({hard_seconds}s); drop it (the operator sets it) or set it >= {hard_seconds}"
            )
        safety_net = hard + timedelta(minutes=5)
        timeout = given.get("execution_timeout")
        if timeout is None:
            given.replace("execution_timeout", safety_net)
        elif timeout < hard:
            raise GuardConfigError(
                f"execution_timeout {format_duration(timeout)} is shorter than the hard deadline "
                f"{format_duration(hard)}; drop execution_timeout (the operator sets it) or set it >= "
                f"{format_duration(safety_net)}"
            )
        given.default("retries", self.guard_profile.retries)
        given.default(
            "startup_timeout_seconds", -(-self.timeout_policy.startup_timeout // timedelta(seconds=1))
        )
        given.default("termination_grace_period", DEFAULT_TERMINATION_GRACE_SECONDS)
        given.default("log_events_on_failure", True)

    # -- images --------------------------------------------------------------------------------------

    def _require_pinned(self, image: str, *, where: str | None = None) -> ImageReference:
        """The digest rule; ``where`` names the image's source when it is not the ``image`` argument."""
        try:
            return require_pinned(
                image,
                allow_unpinned=self.allow_unpinned_image,
                forbid_unpinned_override=_forbid_unpinned_images(),
            )
        except GuardConfigError as err:
            if where is None:
                raise
            raise type(err)(f"{where}: {err}") from None

    def _check_images_at_parse_time(self) -> None:
        """Apply the digest rule now to every image known when the DAG is parsed.

        The base container's image is the ``image`` argument, else the template's or spec's (as in
        KubernetesPodOperator). Templated images and templates that cannot be read now are checked
        on the built pod before it is created (:meth:`build_pod_request_obj`).
        """
        template, source = template_pod(
            full_pod_spec=self.full_pod_spec,
            pod_template_dict=self.pod_template_dict,
            pod_template_file=self.pod_template_file,
        )
        knowable = template is not None or not (self.pod_template_file or self.pod_template_dict)
        if self.image is None:
            image = base_image(template, self.base_container_name)
            if image is None:
                if knowable:
                    raise GuardConfigError(
                        f"no image for container {self.base_container_name!r}: pass "
                        "image='registry/repository@sha256:<digest>', or set it in "
                        f"{source or 'the pod template'}'s container {self.base_container_name!r}"
                    )
                return  # checked on the built pod
            where = f"image of container {self.base_container_name!r} from {source}"
        else:
            image, where = str(self.image), None
        if not is_templated(image):
            self.image_reference = self._require_pinned(image, where=where)
        if template is not None:
            for found in pod_images(template, base_container_name=self.base_container_name, source=source):
                if found.container == f"container {self.base_container_name!r}":
                    continue  # the base container's image is checked above
                if found.image and not is_templated(found.image):
                    self._require_pinned(found.image, where=f"image of {found.container} from {found.source}")

    def _check_built_pod_images(self, pod: k8s.V1Pod) -> None:
        """The digest rule on every image of the pod about to be created (the xcom sidecar aside)."""
        for found in pod_images(pod, base_container_name=self.base_container_name, source="the pod"):
            if not found.image:
                raise GuardConfigError(
                    f"{found.container} has no image; set image= or the container's image in the pod template"
                )
            reference = self._require_pinned(found.image, where=f"image of {found.container}")
            if found.container == f"container {self.base_container_name!r}":
                self.image_reference = reference

    # -- pod manifest --------------------------------------------------------------------------------

    def build_pod_request_obj(self, context: Context | None = None, *, dry_run: bool = False) -> k8s.V1Pod:
        """KPO's pod composed with the guard's pieces, then checked: images pinned, profile restricted."""
        pod = super().build_pod_request_obj(context, dry_run=dry_run)
        partition_key = self._resolved_partition_key or (
            resolve_partition_key(self.partition_key, context, task_id=self.task_id) if context else "dry-run"
        )
        sub_path = self.checkpoint_policy.relative_dir(
            dag_id=self.dag_id, task_id=self.task_id, partition_key=partition_key
        )
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
        try:
            pod = pod_building.with_env(pod, self.base_container_name, env)
            pod = pod_building.with_checkpoint_volume(
                pod,
                self.base_container_name,
                mount_path=self.checkpoint_policy.root,
                claim_name=self.checkpoint_claim_name,
                sub_path=sub_path,
            )
            annotations = {"partition-key": partition_key, "checkpoint-sub-path": sub_path}
            if self.safe_pod_defaults:
                pod = pod_building.with_security_defaults(pod)
            self._check_built_pod_images(pod)
            if self.image_reference is not None and self.image_reference.digest:
                annotations["image-digest"] = self.image_reference.digest
            pod = pod_building.with_annotations(pod, annotations)
            self._check_pod_security(pod)
        except GuardConfigError as err:
            if context is None:
                raise
            raise AirflowFailException(str(err)) from err  # a retry builds the same pod
        return pod

    def _check_pod_security(self, pod: k8s.V1Pod) -> None:
        violations = pod_security.restricted_violations(self.client_sanitize(pod))
        if not violations:
            return
        listing = pod_security.describe(violations)
        if self.pod_security == "warn":
            self.log.warning(
                "pod_security='warn': the pod breaks the Pod Security Standards restricted profile in %d "
                "field(s); submitting it anyway:\n%s",
                len(violations),
                listing,
            )
            return
        raise pod_security.PodSecurityError(
            f"the pod for task {self.task_id!r} breaks the Pod Security Standards restricted profile "
            f"in {len(violations)} field(s):\n{listing}\nFix them in the operator arguments or the pod "
            "template, or pass pod_security='warn' to submit it anyway (every violation is then logged)"
        )

    @staticmethod
    def client_sanitize(pod: k8s.V1Pod) -> dict[str, Any]:
        """The pod as the API server receives it (camelCase JSON)."""
        from kubernetes.client import ApiClient

        result = ApiClient().sanitize_for_serialization(pod)
        return dict(result) if isinstance(result, Mapping) else {}

    # -- execution ------------------------------------------------------------------------------------

    def _prepare_attempt(self, context: Context, *, pods: int = 1) -> None:
        """Everything an attempt checks before a pod exists: key, pins, images, GPU capacity, config log.

        :param pods: how many pods of this shape run at once (the Job operator's ranks).
        """
        self._resolved_partition_key = resolve_partition_key(
            self.partition_key, context, task_id=self.task_id
        )
        self._stall_detail = None
        self._last_log_lines = []
        self._resolved_pins = parse_pins(self.pins, task_id=self.task_id)
        for line in verify_content_pins(self._resolved_pins, task_id=self.task_id):
            self.log.info("data pin verified: %s", line)
        if self.image_reference is None and self.image is not None:  # templated image: rendered now
            try:
                self.image_reference = self._require_pinned(str(self.image))
            except GuardConfigError as err:  # a retry renders the same image: do not retry
                raise AirflowFailException(str(err)) from err
        if self.image_reference is not None and not self.image_reference.is_pinned:
            self.log.warning(
                "DEVELOPMENT ONLY: image %s is not pinned by digest (allow_unpinned_image=True); this run "
                "is not reproducible and the image can change under it",
                self.image,
            )
        if self.gpus:
            self._check_gpu_capacity(pods=pods)
        self._log_effective_configuration()

    def execute(self, context: Context) -> Any:
        self._prepare_attempt(context)
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
        summary = {
            "partition_key": manifest.partition_key,
            "output_dir": str(output_dir),
            "manifest_path": str(path),
            "metrics": dict(manifest.metrics),
            "manifest": manifest.to_dict(),
        }
        # KPO keeps do_xcom_push=False (True would add its xcom sidecar), so Airflow would drop the
        # return value: push it as the return value explicitly, for `train.output` downstream.
        summary = redact(summary)  # rendered cmds/arguments can carry a templated token
        context["ti"].xcom_push(key="return_value", value=summary)
        return summary

    def _push_manifest(self, context: Context) -> RunManifest:
        """Record what this run used (docs/run-manifest.md) and push it to XCom as ``manifest``.

        Pushed whatever ``do_xcom_push`` says: that switch governs the task's return value (KPO's
        xcom sidecar), and the manifest travels under its own key, as any explicit ``xcom_push``
        does; it is how a pod run stays reproducible when the worker cannot see the pod's volume.
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
                "image": str(self.image_reference or self.image),
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

    def _checkpoint_sub_path(self, partition_key: str) -> str:
        return self.checkpoint_policy.relative_dir(
            dag_id=self.dag_id, task_id=self.task_id, partition_key=partition_key
        )

    def _check_gpu_capacity(self, *, pods: int = 1) -> None:
        try:
            report = check_gpu_capacity(
                gpu_request(
                    gpus=self.gpus,
                    resource=self.gpu_resource,
                    node_selector=self.node_selector,
                    tolerations=self.tolerations,
                ),
                shapes=self.node_shapes,
                inventory=self._inventory_hook,
                read_shapes=self.check_node_inventory,
                namespace=str(self.namespace or "default"),
                fragmentation=self.gpu_fragmentation,
                check_quota=self.check_gpu_quota,
                kueue_queue_name=self.kueue_queue_name,
                pods=pods,
            )
        except CapacityError as err:
            raise (AirflowException if err.retryable else AirflowFailException)(str(err)) from err
        for warning in report.warnings:
            self.log.warning("%s", warning)

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
            "checkpoint_sub_path=%s kueue_queue=%s pod_security=%s retries=%s timeouts=%s",
            self.image_reference or self.image,
            self._resolved_partition_key,
            self.gpus,
            self.gpu_resource,
            self.guard_profile.name,
            self.checkpoint_claim_name,
            self._checkpoint_sub_path(self._resolved_partition_key or ""),
            self.kueue_queue_name,
            self.pod_security,
            self.retries,
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
        watchdog = PodHeartbeatWatchdog(
            read_tail=lambda: read_log_tail(self.client, pod, container=self.base_container_name, lines=200),
            delete_pod=lambda: self.pod_manager.delete_pod(pod),
            stall_after=policy.stall_after.total_seconds(),
            startup_grace=policy.startup_timeout.total_seconds(),
            poll_interval=policy.poll_interval.total_seconds(),
            pod_name=pod.metadata.name,
        )
        try:
            with watchdog:
                super().await_pod_completion(pod)
        finally:
            if watchdog.last_log_lines:
                self._last_log_lines = watchdog.last_log_lines
            if watchdog.stall_detail:
                self._stall_detail = watchdog.stall_detail

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
        """Classify the failure from the freshest pod status there is.

        A re-read can fail (the pod is already deleted: 404); then the ``remote_pod`` KPO last read
        (with its status, exit codes and termination message) is used, never the request pod.
        """
        api = self.client.api_client
        try:
            remote = api.sanitize_for_serialization(self.pod_manager.read_pod(pod))
        except Exception:
            remote = api.sanitize_for_serialization(remote_pod if remote_pod is not None else pod)
        try:
            events = [api.sanitize_for_serialization(e) for e in self.pod_manager.read_pod_events(pod).items]
        except Exception:
            events = []
        try:
            tail = read_log_tail(self.client, pod, container=self.base_container_name, lines=20)
        except Exception:
            tail = []
        # A pod the stall watchdog deleted has no log left to read: keep what the watchdog saw last.
        if tail or not self._stall_detail:
            self._last_log_lines = tail
        diagnosis = diagnose(remote, events, container=self.base_container_name)
        if self._stall_detail:
            diagnosis = stalled(self._stall_detail, observed=diagnosis, subject=f"pod {pod.metadata.name}")
        return diagnosis

    def _exception_for(
        self, diagnosis: Diagnosis, pod: k8s.V1Pod, *, upstream: str | None = None
    ) -> AirflowException:
        message = failure_message(
            diagnosis,
            pod_name=pod.metadata.name,
            namespace=pod.metadata.namespace,
            last_log_lines=self._last_log_lines,
            upstream=upstream,
        )
        # The program's log lines and KPO's pod spec (env values) can hold a token; the exception text is
        # logged by the scheduler's copy of the task log too, whose masker never learns run-time secrets.
        message = redact(message)
        return AirflowException(message) if diagnosis.retryable else AirflowFailException(message)

    # -- OpenLineage (docs/lineage.md): called by the provider's listener when it is installed ----------

    def get_openlineage_facets_on_start(self) -> Any:
        from airflow_training_guard.lineage import training_lineage

        digest = self.image_reference.digest if self.image_reference else None
        pins = parse_pins(self.pins, task_id=self.task_id)
        return training_lineage(None, pins=pins, image=str(self.image), image_digest=digest)

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """Pins and image in; the model artifact out, with its SHA-256 when the worker sees the files."""
        from airflow_training_guard.lineage import run_manifest_at, training_lineage

        digest = self.image_reference.digest if self.image_reference else None
        pins = parse_pins(self.pins, task_id=self.task_id)
        manifest = run_manifest_at(self.worker_output_dir, task_instance)
        return training_lineage(manifest, pins=pins, image=str(self.image), image_digest=digest)
