"""PreflightOperator: check everything a training run needs before a GPU is requested.

Runs every check concurrently within a bounded time, logs each as PASSED/FAILED with its evidence,
and fails once with every problem listed (``AirflowFailException``: a retry cannot fix a typo). On
success it returns (pushes to XCom) the pins training must use:
``{"image_digest", "image", "datasets": {id: sha}, "models": {id: sha}}``. Downstream tasks
consume these SHAs, never the branch or tag names, so a branch that moves between pre-flight and
training does not change the run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from airflow_training_guard import telemetry
from airflow_training_guard.exceptions import GuardConfigError
from airflow_training_guard.policies.durations import DurationLike, format_duration, parse_duration
from airflow_training_guard.policies.hub_repos import HubClient, RepoSpec
from airflow_training_guard.policies.images import parse_image_reference
from airflow_training_guard.policies.timeouts import DEFAULT_BUFFER, validate_buffer
from airflow_training_guard.preflight.checklist import (
    DEFAULT_TOTAL_TIMEOUT,
    Check,
    PreflightReport,
    run_checks,
    unique_names,
)
from airflow_training_guard.preflight.checks import (
    LookupUnavailableError,
    RegistryClient,
    cost_check,
    data_check,
    exists_check,
    gpu_fit_check,
    hub_repo_check,
    image_check,
    model_fit_check,
    timeout_check,
    writable_check,
)
from airflow_training_guard.preflight.estimates import gpu_memory_gib as lookup_gpu_memory
from airflow_training_guard.preflight.estimates import validate_mode

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_training_guard.policies.gpus import GpuRequest, NodeShape

#: XCom key of the pins (also the task's return value).
PINS_XCOM_KEY = "pins"


def _connection_exists(conn_id: str) -> bool:
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        return False
    return True


def _variable_exists(key: str) -> bool:
    from airflow.sdk import Variable

    return Variable.get(key, default=None) is not None


def _pool_exists_in_db(name: str) -> bool:
    """The metadata database: works in ``dag.test()`` and ``airflow dags test``, not in a task runner."""
    from airflow.models.pool import Pool

    try:
        return Pool.get_pool(name) is not None
    except RuntimeError as err:  # Airflow 3's task runner blocks the ORM: "Direct database access ..."
        raise LookupUnavailableError(
            f"pools cannot be read from a task in Airflow 3 without the REST API ({err})",
            "set api_conn_id to a connection to the Airflow API server (host http://<api-server>:8080, "
            "login/password of a user who may read pools), or drop `pools` and check them at deploy time "
            "with `airflow training-guard pools list`",
        ) from err


class PreflightOperator(BaseOperator):
    """Verify artifacts, image, secrets, timeout, GPU shape, checkpoint location, memory and cost.

    Every check is optional: give the parameters of the checks you want. Arguments are validated
    when the DAG is parsed.

    :param datasets: dataset repos: ``"org/name"``, ``"org/name@revision"`` or ``{"repo_id",
        "revision", "files"}``.
    :param models: model repos, same forms.
    :param data_paths: folders or object-storage prefixes without a commit SHA (e.g. yesterday's
        partitions) to pin by content, ``sha256:...`` (templated). Every byte is read once.
    :param hub_conn_id: the ``huggingface_hub`` connection.
    :param image: the training image; checked by digest, or its tag resolved when ``resolve_image_tag``.
    :param resolve_image_tag: resolve a tag to a digest once, here, and pin the run to it.
    :param registry_conn_id: ``docker`` connection with registry credentials (``None``: the worker's
        Docker login in ``~/.docker/config.json``, else anonymous; see docs/connections.md).
    :param connections: connection ids that must exist.
    :param variables: Airflow Variables that must exist.
    :param pools: pools that must exist (a task in a missing pool is never scheduled). Tasks in
        Airflow 3 cannot read the metadata database: give ``api_conn_id`` for a real deployment.
    :param api_conn_id: connection to the Airflow REST API, used to read ``pools``
        (:class:`~airflow_training_guard.hooks.airflow_api.AirflowApiHook`).
    :param expected_runtime: how long the training job normally takes.
    :param training_timeout: the training task's timeout (its ``execution_timeout`` or deadline).
    :param timeout_buffer: margin over ``expected_runtime`` the timeout must leave (default 0.30).
    :param gpu_request: GPUs per pod and placement; checked against ``node_shapes`` or the cluster.
    :param node_shapes: the inventory; ``None`` reads it with ``kubernetes_conn_id``.
    :param kubernetes_conn_id: cncf.kubernetes connection for the node inventory.
    :param checkpoint_dir: must be writable.
    :param training_mode: ``full``, ``mixed``, ``lora`` or ``qlora`` (enables the memory check).
    :param gpus: GPUs the run uses (default: ``gpu_request.gpus`` or 1).
    :param gpu_type: e.g. ``"a100-80gb"``; or ``gpu_memory_gib``.
    :param model_parameters: parameter count; default: from the Hub's info of the first model.
    :param price_per_gpu_hour: price for the cost check.
    :param cost_limit: maximum estimated cost (GPU-hours of the timeout, or expected runtime, x price).
    :param preflight_timeout: bound on the whole checklist, seconds.
    """

    template_fields: Sequence[str] = ("image", "checkpoint_dir", "data_paths")
    ui_color = "#e8f4ea"

    def __init__(
        self,
        *,
        datasets: Sequence[Any] = (),
        models: Sequence[Any] = (),
        data_paths: Sequence[str] = (),
        hub_conn_id: str | None = "huggingface_hub_default",
        image: str | None = None,
        resolve_image_tag: bool = False,
        registry_conn_id: str | None = None,
        connections: Sequence[str] = (),
        variables: Sequence[str] = (),
        pools: Sequence[str] = (),
        api_conn_id: str | None = None,
        expected_runtime: DurationLike | None = None,
        training_timeout: DurationLike | None = None,
        timeout_buffer: float = DEFAULT_BUFFER,
        gpu_request: GpuRequest | None = None,
        node_shapes: Sequence[NodeShape] | None = None,
        kubernetes_conn_id: str | None = "kubernetes_default",
        checkpoint_dir: str | None = None,
        training_mode: str | None = None,
        gpus: int | None = None,
        gpu_type: str | None = None,
        gpu_memory_gib: float | None = None,
        model_parameters: int | None = None,
        price_per_gpu_hour: float | None = None,
        cost_limit: float | None = None,
        preflight_timeout: float = DEFAULT_TOTAL_TIMEOUT,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if isinstance(datasets, str) or isinstance(models, str):
            raise GuardConfigError("datasets and models must be lists, e.g. datasets=['org/name']")
        self.datasets = [RepoSpec.coerce(d, repo_type="dataset") for d in datasets]
        self.models = [RepoSpec.coerce(m, repo_type="model") for m in models]
        if isinstance(data_paths, str) or not all(isinstance(p, str) and p.strip() for p in data_paths):
            raise GuardConfigError(
                f"data_paths {data_paths!r} must be a list of non-empty paths or URLs, "
                "e.g. data_paths=['/data/events/date={{ ds }}']"
            )
        self.data_paths = list(data_paths)
        self.hub_conn_id = hub_conn_id
        self.image = image
        if image is not None and "{{" not in image:
            parsed = parse_image_reference(image)
            if not parsed.is_pinned and not resolve_image_tag:
                raise GuardConfigError(
                    f"image {image!r} is not pinned; use '{parsed.name}@sha256:<digest>' (crane digest {image}), "
                    "or set resolve_image_tag=True to pin it at pre-flight"
                )
        self.resolve_image_tag = resolve_image_tag
        self.registry_conn_id = registry_conn_id
        self.connections = list(connections)
        self.variables = list(variables)
        self.pools = list(pools)
        self.api_conn_id = api_conn_id
        self.expected_runtime = (
            None if expected_runtime is None else parse_duration(expected_runtime, name="expected_runtime")
        )
        self.training_timeout = (
            None if training_timeout is None else parse_duration(training_timeout, name="training_timeout")
        )
        self.timeout_buffer = validate_buffer(timeout_buffer, name="timeout_buffer")
        if self.training_timeout is not None and self.expected_runtime is None:
            raise GuardConfigError(
                "training_timeout is given without expected_runtime; give both to check the timeout"
            )
        self.gpu_request = gpu_request
        self.node_shapes = None if node_shapes is None else list(node_shapes)
        self.kubernetes_conn_id = kubernetes_conn_id
        self.checkpoint_dir = checkpoint_dir
        self.training_mode = None if training_mode is None else validate_mode(training_mode)
        self.gpus = gpus if gpus is not None else (gpu_request.gpus if gpu_request is not None else 1)
        if isinstance(self.gpus, bool) or not isinstance(self.gpus, int) or self.gpus < 1:
            raise GuardConfigError(f"gpus {gpus!r} must be an integer >= 1")
        self.gpu_type = gpu_type
        self.gpu_memory_gib = gpu_memory_gib
        self.model_parameters = model_parameters
        if self.training_mode is not None:
            self._gpu_memory = lookup_gpu_memory(gpu_type, gpu_memory_gib)
            if model_parameters is None and not self.models:
                raise GuardConfigError(
                    "training_mode is set but there is neither model_parameters nor a model to read it from"
                )
        self.price_per_gpu_hour = price_per_gpu_hour
        self.cost_limit = cost_limit
        if (price_per_gpu_hour is None) != (cost_limit is None):
            raise GuardConfigError(
                "give both price_per_gpu_hour and cost_limit to check the cost, or neither"
            )
        if cost_limit is not None and self.expected_runtime is None:
            raise GuardConfigError("the cost check needs expected_runtime")
        self.preflight_timeout = preflight_timeout

    @cached_property
    def hub(self) -> HubClient:
        from airflow_training_guard.hooks.hub import HubHook

        return HubHook(self.hub_conn_id)

    @cached_property
    def registry(self) -> RegistryClient:
        from airflow_training_guard.hooks.oci_registry import OciRegistryHook

        return OciRegistryHook(self.registry_conn_id)

    def _api_pool_exists(self, name: str) -> bool:
        from airflow_training_guard.hooks.airflow_api import AirflowApiError, AirflowApiHook

        try:
            return AirflowApiHook(str(self.api_conn_id)).pool_exists(name)
        except AirflowApiError as err:
            raise LookupUnavailableError(
                str(err), "fix the connection or the API server, then retry"
            ) from err

    def _nodes(self) -> Sequence[NodeShape]:
        if self.node_shapes is not None:
            return self.node_shapes
        from airflow_training_guard.hooks.kubernetes_inventory import KubernetesInventoryHook

        resource = self.gpu_request.resource if self.gpu_request is not None else "nvidia.com/gpu"
        return KubernetesInventoryHook(self.kubernetes_conn_id).node_shapes(resource=resource)

    def build_checks(
        self,
        *,
        connection_exists: Callable[[str], bool] = _connection_exists,
        variable_exists: Callable[[str], bool] = _variable_exists,
        pool_exists: Callable[[str], bool] | None = None,
    ) -> list[Check]:
        """The checks this operator's arguments ask for (also usable from the training operators)."""
        if pool_exists is None:
            pool_exists = self._api_pool_exists if self.api_conn_id else _pool_exists_in_db
        checks: list[Check] = [hub_repo_check(self.hub, spec) for spec in [*self.datasets, *self.models]]
        checks += [data_check(path) for path in self.data_paths]
        if self.image:
            checks.append(
                image_check(
                    self.registry, parse_image_reference(self.image), resolve_tag=self.resolve_image_tag
                )
            )
        checks += [
            exists_check(
                "connection",
                c,
                connection_exists,
                fix="create it (Admin > Connections, or AIRFLOW_CONN_<ID>)",
            )
            for c in self.connections
        ]
        checks += [
            exists_check(
                "variable", v, variable_exists, fix="create it (Admin > Variables, or AIRFLOW_VAR_<KEY>)"
            )
            for v in self.variables
        ]
        checks += [
            exists_check(
                "pool", p, pool_exists, fix=f"create it: airflow pools set {p} <slots> '<description>'"
            )
            for p in self.pools
        ]
        if self.expected_runtime is not None and (
            self.training_timeout is not None or self.cost_limit is None
        ):
            checks.append(
                timeout_check(
                    expected_runtime=self.expected_runtime,
                    timeout=self.training_timeout,
                    buffer=self.timeout_buffer,
                )
            )
        if self.gpu_request is not None:
            checks.append(gpu_fit_check(self.gpu_request, self._nodes))
        if self.checkpoint_dir:
            checks.append(writable_check(self.checkpoint_dir))
        if self.training_mode is not None:
            checks.append(
                model_fit_check(
                    mode=self.training_mode,
                    gpus=self.gpus,
                    gpu_memory=self._gpu_memory,
                    parameters=self.model_parameters,
                    hub=self.hub,
                    model=self.models[0] if self.models else None,
                )
            )
        if self.cost_limit is not None and self.price_per_gpu_hour is not None and self.expected_runtime:
            duration: timedelta = self.training_timeout or self.expected_runtime
            checks.append(
                cost_check(
                    gpus=self.gpus,
                    duration=duration,
                    price_per_gpu_hour=self.price_per_gpu_hour,
                    limit=self.cost_limit,
                )
            )
        unique_names(checks)
        return checks

    def run_preflight(self, checks: Sequence[Check] | None = None) -> PreflightReport:
        """Run the checks and log each result; returns the report (does not raise)."""
        checks = list(checks) if checks is not None else self.build_checks()
        self.log.info(
            "pre-flight: %d checks (%s), time limit %ss",
            len(checks),
            ", ".join(c.name for c in checks),
            self.preflight_timeout,
        )
        if self.expected_runtime is not None:
            self.log.info("expected_runtime=%s", format_duration(self.expected_runtime))
        report = run_checks(checks, total_timeout=self.preflight_timeout)
        for result in report.results:
            (self.log.info if result.passed else self.log.error)("%s", result.line())
            if not result.passed:
                telemetry.preflight_problem(self, result.name)
        self.log.info("pre-flight %s in %.1fs", report.summary(), report.elapsed)
        return report

    def execute(self, context: Context) -> dict[str, Any]:
        report = self.run_preflight()
        if not report.passed:
            raise AirflowFailException(report.failure_message())
        pins = report.pins()
        self.log.info("pins for training: %s", pins)
        context["ti"].xcom_push(key=PINS_XCOM_KEY, value=pins)
        return pins
