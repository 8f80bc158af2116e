"""A KubernetesPodOperator user changes one import and nothing else changes.

Regression: ``default_args={"retries": 7}`` gave a guarded task 3 retries, and eight more
parameters (``on_finish_action``, ``durable``, ``execution_timeout``, ...) lost their
``default_args`` value the same way, because the guard's ``kwargs.setdefault`` ran before Airflow
filled in ``default_args``.

The test walks the signatures of ``KubernetesPodOperator.__init__`` and ``BaseOperator.__init__``.
For every parameter, given explicitly, through ``default_args`` or not at all, the guard must end
with the same attribute values as KubernetesPodOperator, except the parameters listed in the table
of deliberate differences in ``docs/training-pod-operator.md``; that table is read from the docs,
so the docs and the code cannot drift apart. A provider upgrade that adds a parameter fails here
until the parameter has a sample value below.
"""

from __future__ import annotations

import inspect
import re
import warnings
from datetime import timedelta
from pathlib import Path
from typing import Any

import pendulum
import pytest
from kubernetes.client import models as k8s

DIGEST = "sha256:" + "c" * 64
IMAGE = f"registry.example.com/ml/trainer@{DIGEST}"
DOCS = Path(__file__).resolve().parents[3] / "docs" / "training-pod-operator.md"
START = pendulum.datetime(2026, 11, 1, tz="UTC")

#: Parameters that are not task settings (identity, structure) and cannot come from default_args.
STRUCTURAL = {"self", "kwargs", "task_id", "dag", "task_group", "default_args", "params"}
#: Attributes that hold bookkeeping, not parameter values.
IGNORED_ATTRIBUTES = {
    "_BaseOperator__init_kwargs",
    "_log",
    "_BaseOperator__instantiated",
    "task_group",
    "_dag",
    "dag",
    "upstream_task_ids",
    "downstream_task_ids",
}


def _pod_template(tmp: Path) -> str:
    path = tmp / "pod.yaml"
    path.write_text(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: from-template\nspec:\n  containers:\n"
        f"    - name: base\n      image: {IMAGE}\n"
    )
    return str(path)


def _callback() -> Any:
    from airflow.providers.cncf.kubernetes.callbacks import KubernetesPodOperatorCallback

    class Callback(KubernetesPodOperatorCallback):
        pass

    return Callback


def _noop(*args: Any, **kwargs: Any) -> None:
    return None


def samples(tmp: Path) -> dict[str, Any]:
    """A value for every parameter, different from its default and valid for both operators."""
    from airflow.providers.cncf.kubernetes.secret import Secret

    return {
        # -- KubernetesPodOperator ------------------------------------------------------------------
        "kubernetes_conn_id": "k8s_other",
        "namespace": "ml",
        "image": IMAGE,
        "name": "trainer",
        "random_name_suffix": False,
        "cmds": ["python"],
        "arguments": ["train.py"],
        "ports": [k8s.V1ContainerPort(container_port=8080)],
        "volume_mounts": [k8s.V1VolumeMount(name="data", mount_path="/data")],
        "volumes": [k8s.V1Volume(name="data", empty_dir=k8s.V1EmptyDirVolumeSource())],
        "env_vars": {"SEED": "1"},
        "env_from": [k8s.V1EnvFromSource(config_map_ref=k8s.V1ConfigMapEnvSource(name="cfg"))],
        "secrets": [Secret("env", "TOKEN", "hub-secret", "token")],
        "in_cluster": False,
        "cluster_context": "gpu-cluster",
        "labels": {"team": "ranking"},
        "reattach_on_restart": False,
        "durable": False,
        "startup_timeout_seconds": 900,
        "startup_check_interval_seconds": 3,
        "schedule_timeout_seconds": 1200,
        "get_logs": False,
        "base_container_name": "trainer",
        "base_container_status_polling_interval": 2.5,
        "init_container_logs": True,
        "container_logs": ["base"],
        "image_pull_policy": "Always",
        "annotations": {"owner": "ml"},
        "container_resources": k8s.V1ResourceRequirements(limits={"memory": "8Gi"}),
        "affinity": k8s.V1Affinity(),
        "config_file": "/etc/kube/config",
        "runtime_class_name": "nvidia",
        "node_selector": {"pool": "a100"},
        "image_pull_secrets": [k8s.V1LocalObjectReference(name="regcred")],
        "service_account_name": "trainer",
        "automount_service_account_token": False,
        "hostnetwork": True,
        "host_aliases": [k8s.V1HostAlias(ip="10.0.0.1", hostnames=["hub"])],
        "tolerations": [k8s.V1Toleration(key="spot", operator="Exists")],
        "security_context": {"runAsUser": 1000},
        "container_security_context": {"readOnlyRootFilesystem": True},
        "xcom_sidecar_container_security_context": {"runAsUser": 1000},
        "dnspolicy": "ClusterFirst",
        "dns_config": k8s.V1PodDNSConfig(nameservers=["1.1.1.1"]),
        "hostname": "trainer",
        "subdomain": "ranks",
        "schedulername": "volcano",
        "full_pod_spec": k8s.V1Pod(
            spec=k8s.V1PodSpec(containers=[k8s.V1Container(name="base", image=IMAGE)])
        ),
        "init_containers": [k8s.V1Container(name="fetch", image=IMAGE)],
        "log_events_on_failure": True,
        "log_events_on_startup": False,
        "do_xcom_push": True,
        "pod_template_file": _pod_template(tmp),
        "pod_template_dict": {"spec": {"containers": [{"name": "base", "image": IMAGE}]}},
        "priority_class_name": "high",
        "pod_runtime_info_envs": [k8s.V1EnvVar(name="NODE", value="x")],
        "termination_grace_period": 45,
        "configmaps": ["cfg"],
        "skip_on_exit_code": 99,
        "deferrable": True,
        "poll_interval": 7.0,
        "log_pod_spec_on_failure": False,
        "on_finish_action": "keep_pod",
        "on_kill_action": "keep_pod",
        "is_delete_operator_pod": False,
        "termination_message_policy": "FallbackToLogsOnError",
        "active_deadline_seconds": 7200,
        "callbacks": _callback(),
        "progress_callback": _noop,
        "logging_interval": 30,
        "trigger_kwargs": {"on_finish_action": "keep_pod"},
        "container_name_log_prefix_enabled": False,
        "log_formatter": _noop,
        # -- BaseOperator ------------------------------------------------------------------------------
        "owner": "ml-platform",
        "email": "ml@example.com",
        "email_on_retry": False,
        "email_on_failure": False,
        "retries": 7,
        "retry_delay": timedelta(seconds=42),
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": timedelta(hours=1),
        "retry_policy": None,
        "start_date": START,
        "end_date": START.add(days=30),
        "depends_on_past": True,
        "ignore_first_depends_on_past": True,
        "wait_for_past_depends_before_skipping": True,
        "wait_for_downstream": True,
        "priority_weight": 7,
        "weight_rule": "upstream",
        "queue": "gpu",
        "pool": "training_sla",
        "pool_slots": 2,
        "sla": None,
        "execution_timeout": timedelta(hours=3),
        "on_execute_callback": _noop,
        "on_failure_callback": _noop,
        "on_success_callback": _noop,
        "on_retry_callback": _noop,
        "on_skipped_callback": _noop,
        "pre_execute": _noop,
        "post_execute": _noop,
        "trigger_rule": "all_done",
        "resources": {"cpus": 2},
        "run_as_user": "trainer",
        "map_index_template": "{{ task.task_id }}",
        "max_active_tis_per_dag": 2,
        "max_active_tis_per_dagrun": 2,
        "executor": "LocalExecutor",
        "executor_config": {"pod_override": None},
        "multiple_outputs": True,
        "inlets": [],
        "outlets": [],
        "doc": "doc",
        "doc_md": "doc",
        "doc_json": "{}",
        "doc_yaml": "a: 1",
        "doc_rst": "doc",
        "task_display_name": "Train",
        "logger_name": "trainer",
        "allow_nested_operators": False,
        "render_template_as_native_obj": True,
    }


def parameters() -> list[str]:
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
    from airflow.sdk import BaseOperator

    names: list[str] = []
    for cls in (KubernetesPodOperator, BaseOperator):
        for name in inspect.signature(cls.__init__).parameters:
            if name not in STRUCTURAL and name not in names:
                names.append(name)
    return names


def documented_differences() -> set[str]:
    """The parameters named in the first column of the deliberate-differences table."""
    text = DOCS.read_text()
    section = text.split("## Drop-in for KubernetesPodOperator: the deliberate differences", 1)[1]
    section = section.split("\n## ", 1)[0]
    names: set[str] = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            first = line.split("|")[1]
            names.update(re.findall(r"`([a-z_]+)`", first))
    return names


def _build(cls: type, *, dag_default_args: dict[str, Any] | None, **kwargs: Any) -> Any:
    from airflow.sdk import DAG

    from airflow_training_guard.operators.training_pod import GuardedTrainingPodOperator

    if cls is GuardedTrainingPodOperator:
        kwargs.setdefault("expected_runtime", "10m")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with DAG(dag_id="parity", schedule=None, start_date=START, default_args=dag_default_args or {}):
            return cls(task_id="train", **kwargs)


def _state(op: Any) -> dict[str, Any]:
    return {key: value for key, value in vars(op).items() if key not in IGNORED_ATTRIBUTES}


def _attrs_touched_by(name: str, value: Any, mode: str) -> dict[str, Any]:
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

    base = {"image": IMAGE}
    plain = _state(_build(KubernetesPodOperator, dag_default_args=None, **base))
    if mode == "explicit":
        given = _state(_build(KubernetesPodOperator, dag_default_args=None, **{**base, name: value}))
    else:
        given = _state(_build(KubernetesPodOperator, dag_default_args={name: value}, **base))
    return {key: val for key, val in given.items() if key not in plain or plain[key] != val}


def test_every_parameter_has_a_sample_value(tmp_path: Path) -> None:
    missing = [name for name in parameters() if name not in samples(tmp_path)]
    assert not missing, f"add sample values for new KubernetesPodOperator/BaseOperator parameters: {missing}"


def test_the_differences_table_names_only_real_parameters() -> None:
    unknown = documented_differences() - set(parameters())
    assert not unknown, f"docs table names parameters KPO does not have: {unknown}"
    assert {"retries", "execution_timeout", "image"} <= documented_differences()


@pytest.mark.parametrize("mode", ["explicit", "default_args"])
def test_a_given_parameter_ends_with_the_value_kpo_gives_it(mode: str, tmp_path: Path) -> None:
    """Given in the call or through default_args, every parameter keeps KPO's resulting value."""
    from airflow_training_guard.operators.training_pod import GuardedTrainingPodOperator

    values = samples(tmp_path)
    mismatches: list[str] = []
    for name in parameters():
        value = values[name]
        touched = _attrs_touched_by(name, value, mode)
        if mode == "explicit":
            guard = _build(GuardedTrainingPodOperator, dag_default_args=None, **{"image": IMAGE, name: value})
        else:
            guard = _build(GuardedTrainingPodOperator, dag_default_args={name: value}, image=IMAGE)
        state = _state(guard)
        for key, expected in touched.items():
            if state.get(key) != expected:
                mismatches.append(f"{name} -> {key}: KPO {expected!r}, guard {state.get(key)!r}")
    assert not mismatches, "\n".join(mismatches)


def test_a_parameter_not_given_ends_as_in_kpo_except_the_documented_differences() -> None:
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

    from airflow_training_guard.operators.training_pod import GuardedTrainingPodOperator

    kpo = _state(_build(KubernetesPodOperator, dag_default_args=None, image=IMAGE))
    guard = _state(_build(GuardedTrainingPodOperator, dag_default_args=None, image=IMAGE))
    documented = documented_differences()
    differing = {key for key, value in kpo.items() if guard.get(key) != value}
    undocumented = {key for key in differing if key.lstrip("_") not in documented}
    assert not undocumented, {key: (kpo[key], guard.get(key)) for key in undocumented}
    # Every defaulting row of the table is real (a stale row would hide a future difference).
    assert {
        "retries",
        "execution_timeout",
        "active_deadline_seconds",
        "startup_timeout_seconds",
        "termination_grace_period",
        "log_events_on_failure",
    } <= differing


def test_default_args_values_are_what_the_guard_checks_against_the_deadline() -> None:
    """execution_timeout from default_args is checked against the hard deadline, not ignored."""
    from airflow_training_guard.exceptions import GuardConfigError
    from airflow_training_guard.operators.training_pod import GuardedTrainingPodOperator

    with pytest.raises(GuardConfigError, match=r"execution_timeout 5m is shorter than the hard deadline 13m"):
        _build(
            GuardedTrainingPodOperator,
            dag_default_args={"execution_timeout": timedelta(minutes=5)},
            image=IMAGE,
        )
    with pytest.raises(GuardConfigError, match=r"active_deadline_seconds=60 is shorter"):
        _build(GuardedTrainingPodOperator, dag_default_args={"active_deadline_seconds": 60}, image=IMAGE)
