"""Helpers shared by the training operators (local and Kubernetes launchers)."""

from __future__ import annotations

import ast
import json
import warnings
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from airflow.exceptions import AirflowProviderDeprecationWarning
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from airflow_training_guard import __version__
from airflow_training_guard.exceptions import GuardConfigError
from airflow_training_guard.manifest import RunManifest, file_sha256, utc_now_iso
from airflow_training_guard.partitions.keys import PartitionKey, require_key
from airflow_training_guard.policies.diagnostics import Diagnosis, failure_message
from airflow_training_guard.policies.durations import DurationLike, parse_duration
from airflow_training_guard.policies.timeouts import TimeoutPolicy, validate_buffer
from airflow_training_guard.secrets import redact

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_training_guard.policies.profiles import GuardProfile


class _Warns(Protocol):
    def warning(self, event: Any, *args: Any, **kw: Any) -> Any: ...


class GivenArguments:
    """What the DAG gave for an operator parameter: in the call, else through ``default_args``.

    Airflow's ``apply_defaults`` hands every ``__init__`` the merged ``default_args`` (DAG, task
    group and task) and fills only the parameters that ``__init__`` names; a subclass's inherited
    parameters travel in ``**kwargs``, so the guard looks them up itself and applies its own
    defaults only where neither gives a value (a ``kwargs.setdefault`` would hide
    ``default_args={"retries": 7}`` from the provider).
    """

    def __init__(self, kwargs: dict[str, Any]) -> None:
        self._kwargs = kwargs
        self._defaults: Mapping[str, Any] = kwargs.get("default_args") or {}

    def get(self, name: str) -> Any:
        if name in self._kwargs:
            return self._kwargs[name]
        return self._defaults.get(name)

    def default(self, values: Mapping[str, Any]) -> None:
        """Use each value unless the call or ``default_args`` gives one for its name (even None)."""
        for name, value in values.items():
            if name not in self._kwargs and name not in self._defaults:
                self._kwargs[name] = value

    def replace(self, values: Mapping[str, Any]) -> None:
        """Pass these values (derived from what was given) whatever the call or ``default_args`` say."""
        self._kwargs.update(values)


def renamed_argument(kwargs: dict[str, Any], *, old: str, new: str, value: Any) -> Any:
    """The value of parameter ``new``, also accepting its former name ``old`` (with a deprecation warning).

    ``old`` is taken from the call (removed from ``kwargs``, so BaseOperator never sees an unknown
    argument) or from ``default_args``; giving both names is an error naming both.

    :raises GuardConfigError: when ``old`` and ``new`` are both given.
    """
    if old in kwargs:
        former = kwargs.pop(old)
    elif value is None and old in (kwargs.get("default_args") or {}):
        former = kwargs["default_args"][old]
    else:
        return value
    if value is not None:
        raise GuardConfigError(f"{old}={former!r} and {new}={value!r} are the same setting; pass only {new}")
    warnings.warn(
        f"{old} is renamed {new} (one name for the checkpoint root in every operator); pass {new}={former!r}",
        AirflowProviderDeprecationWarning,
        stacklevel=3,
    )
    return former


def check_partition_key(value: object, *, task_id: str) -> PartitionKey:
    """Validate a ``partition_key`` argument through :func:`~airflow_training_guard.partitions.keys.require_key`.

    Called when the DAG is parsed for a literal key, and by :func:`resolve_partition_key` for a
    rendered or run-provided one, so both say the same thing. Returns the key parsed once
    (a :class:`~airflow_training_guard.partitions.keys.PartitionKey`, which is the string).

    :raises GuardConfigError: ``task '<id>': partition_key '<value>' is refused: <rule>``.
    """
    try:
        return require_key(value)
    except GuardConfigError as err:
        raise GuardConfigError(f"task {task_id!r}: {err}") from None


def resolve_partition_key(explicit: str | None, context: Context, *, task_id: str) -> PartitionKey:
    """The partition a training task works on: explicit, else the run's ``partition_key``, else ``ds``.

    Airflow 3.3 runs of partitioned DAGs carry ``DagRun.partition_key``; classic scheduled runs
    have a logical date. A manual run with neither cannot be keyed, and a run without a key would
    share checkpoints with others, so it fails without retry. The key reaches the program's
    environment, paths and logs, so an invalid one (``../../x;$(touch y)``, rendered from a
    template or given to the run) fails without retry too, before anything is started.
    """
    dag_run = context.get("dag_run")
    run_key = getattr(dag_run, "partition_key", None)
    ds = context.get("ds")
    key = explicit or run_key or ds
    if key:
        try:
            return check_partition_key(str(key), task_id=task_id)
        except GuardConfigError as err:
            raise AirflowFailException(str(err)) from err
    raise AirflowFailException(
        f"task {task_id!r} has no partition_key: the run has neither a partition_key nor a "
        "logical date; pass partition_key='...' to the operator or trigger the run with one"
    )


def timeout_policy_for(
    profile: GuardProfile,
    *,
    expected_runtime: DurationLike,
    timeout_buffer: float | None,
    deadline: DurationLike | None,
    startup_timeout: DurationLike | None,
    stall_after: DurationLike | bool | None,
    poll_interval: DurationLike,
    poll_interval_name: str = "poll_interval",
) -> TimeoutPolicy:
    """The TimeoutPolicy of a training task: explicit values first, then the profile's.

    ``stall_after=True`` means "the profile's value", ``False``/``None`` disables stall detection.
    ``startup_timeout`` defaults to 10 minutes, or ``expected_runtime`` when the job is shorter
    (a default must never be rejected as longer than the deadline).
    """
    if startup_timeout is None:
        startup_timeout = min(
            timedelta(minutes=10), parse_duration(expected_runtime, name="expected_runtime")
        )
    stall = (profile.stall_after if stall_after else None) if isinstance(stall_after, bool) else stall_after
    if timeout_buffer is not None:  # name the parameter the user typed, not TimeoutPolicy's field
        timeout_buffer = validate_buffer(timeout_buffer, name="timeout_buffer")
    return TimeoutPolicy.build(
        expected_runtime=expected_runtime,
        buffer=profile.timeout_buffer if timeout_buffer is None else timeout_buffer,
        deadline=deadline,
        startup_timeout=startup_timeout,
        stall_after=stall,
        poll_interval=poll_interval,
        poll_interval_name=poll_interval_name,
    )


def parse_pins(value: Mapping[str, Any] | str | None, *, task_id: str) -> dict[str, dict[str, str]]:
    """Dataset and model pins from PreflightOperator's ``pins`` XCom (a dict, or its rendered JSON).

    Returns ``{"datasets": {repo_id: sha}, "models": {repo_id: sha}}``; other keys (the image pin)
    are ignored here. A value that is not of that shape fails the task without retry.
    """
    if value is None or value == "" or value == {}:
        return {}
    data: Any = value
    if isinstance(value, str):
        try:
            data = json.loads(value)
        except ValueError:
            try:
                data = ast.literal_eval(value)  # Jinja renders a dict XCom with Python quoting
            except (ValueError, SyntaxError):
                data = None
    if not isinstance(data, Mapping):
        raise AirflowFailException(
            f"pins of task {task_id!r} is not a mapping: {str(value)[:200]!r}; pass "
            "\"{{ ti.xcom_pull(task_ids='preflight', key='pins') }}\" or a dict like "
            "{'datasets': {'org/name': '<40-hex sha>'}}"
        )
    pins: dict[str, dict[str, str]] = {}
    for kind in ("datasets", "models"):
        entries = data.get(kind) or {}
        if not isinstance(entries, Mapping):
            raise AirflowFailException(f"pins[{kind!r}] of task {task_id!r} must map repo ids to SHAs")
        if entries:
            pins[kind] = {str(k): str(v) for k, v in entries.items()}
    return pins


def verify_content_pins(pins: Mapping[str, Mapping[str, str]], *, task_id: str) -> list[str]:
    """Recompute every content-pinned (``sha256:...``) dataset and model; fail if one changed.

    Commit SHAs (Hub) are immutable and are not re-checked. Returns one line per verified pin for
    the log. A mismatch fails the task without retry: a retry would read the same changed data.
    """
    from airflow_training_guard.preflight.data import (
        DataPinError,
        is_content_digest,
        open_location,
        verify_content_digest,
    )

    verified: list[str] = []
    for kind in ("datasets", "models"):
        for location, pin in (pins.get(kind) or {}).items():
            if not is_content_digest(pin):
                continue
            try:
                digest = verify_content_digest(open_location(location), pin, location=location)
            except DataPinError as err:
                raise AirflowFailException(f"task {task_id!r} will not train: {err}") from err
            verified.append(f"{location}: {digest.describe()} (matches the pre-flight pin)")
    return verified


def read_metrics_file(output_dir: Path, log: _Warns) -> dict[str, float]:
    """The numbers of ``metrics.json`` a training program wrote into its output directory.

    Missing file: ``{}``. Unreadable or not JSON: a warning and ``{}`` (the model itself may be fine;
    the promotion step refuses a manifest without the metric it compares).
    """
    metrics_file = output_dir / "metrics.json"
    if not metrics_file.is_file():
        return {}
    try:
        written = json.loads(metrics_file.read_text())
    except (OSError, ValueError) as err:
        log.warning("cannot read %s for the run manifest: %s", metrics_file, err)
        return {}
    if not isinstance(written, Mapping):
        log.warning("%s is not a JSON object; no metrics recorded from it", metrics_file)
        return {}
    return {
        str(k): float(v) for k, v in written.items() if isinstance(v, int | float) and not isinstance(v, bool)
    }


def failure_exception(
    diagnosis: Diagnosis,
    *,
    pod_name: str,
    namespace: str,
    last_log_lines: list[str],
    upstream: str | None = None,
) -> AirflowException:
    """The task's failure for a classified pod failure: retryable or not, as the diagnosis says.

    The program's log lines and KPO's pod spec (env values) can hold a token; the exception text is
    logged by the scheduler's copy of the task log too, whose masker never learns run-time secrets,
    so it goes through :func:`~airflow_training_guard.secrets.redact`.
    """
    message = failure_message(
        diagnosis, pod_name=pod_name, namespace=namespace, last_log_lines=last_log_lines, upstream=upstream
    )
    message = redact(message)
    return AirflowException(message) if diagnosis.retryable else AirflowFailException(message)


def pod_run_manifest(
    *,
    dag_id: str,
    run_id: str,
    task_id: str,
    partition_key: str,
    image: str,
    image_digest: str | None,
    pins: Mapping[str, Mapping[str, str]],
    cmds: list[str],
    arguments: list[str],
    output_dir: str | None,
    artifact_dir: str | None,
    dag_file: str | None,
    checkpoints: str,
    metrics: Mapping[str, float],
) -> RunManifest:
    """The run manifest of a pod run (``docs/run-manifest.md``): what it used, as the worker knows it."""
    return RunManifest(
        dag_id=dag_id,
        run_id=run_id,
        task_id=task_id,
        partition_key=partition_key,
        image_digest=image_digest,
        datasets=dict(pins.get("datasets", {})),
        models=dict(pins.get("models", {})),
        params={"image": image, "cmds": cmds, "arguments": arguments, "output_dir": output_dir},
        code={
            "package_version": __version__,
            "dag_file_sha256": file_sha256(dag_file) if dag_file and Path(dag_file).is_file() else "",
        },
        python_env=None,
        checkpoints=(checkpoints,),
        artifact_uri=artifact_dir,
        metrics=dict(metrics),
        created_at=utc_now_iso(),
    )


def manifest_summary(manifest: RunManifest, *, output_dir: Path, path: Path) -> dict[str, Any]:
    """A training task's return value once its manifest is written: the same keys for every launcher.

    Redacted: rendered ``cmds``/``arguments`` can carry a templated token.
    """
    summary = {
        "partition_key": manifest.partition_key,
        "output_dir": str(output_dir),
        "manifest_path": str(path),
        "metrics": dict(manifest.metrics),
        "manifest": manifest.to_dict(),
    }
    return redact(summary)
