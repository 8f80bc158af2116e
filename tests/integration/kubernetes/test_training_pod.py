"""GuardedTrainingPodOperator in real DAG runs against the Kubernetes API emulator.

Assertions are on what the API server received (the pod manifest, deletes) and on the exception
each classified failure ends with: ``AirflowFailException`` when a retry cannot help,
``AirflowException`` when it can.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pendulum
import pytest

from airflow_training_guard.runtime.heartbeat import format_heartbeat_line
from tests.integration.kubernetes.k8s_api import K8sApi

DIGEST = "sha256:" + "ab" * 32
IMAGE = f"registry.example.com:5000/ml/trainer@{DIGEST}"
START = pendulum.datetime(2026, 11, 1, tz="UTC")
PARTITION = "berlin|2026-11-01"


def _dag(dag_id: str, k8s_api: K8sApi, **kwargs: Any) -> tuple[Any, list[BaseException]]:
    from airflow.sdk import DAG

    from airflow_training_guard.operators.training_pod import GuardedTrainingPodOperator

    failures: list[BaseException] = []
    params: dict[str, Any] = {
        "task_id": "train",
        "name": "train",
        "image": IMAGE,
        "namespace": "default",
        "kubernetes_conn_id": k8s_api.airflow_conn_id,
        "expected_runtime": "10m",
        "partition_key": PARTITION,
        "startup_check_interval_seconds": 1,
        "retries": 0,
        "on_failure_callback": lambda context: failures.append(context["exception"]),
        **kwargs,
    }
    with DAG(dag_id=dag_id, schedule=None, start_date=START) as dag:
        GuardedTrainingPodOperator(**params)
    return dag, failures


def _gpu_nodes(k8s_api: K8sApi, count: int = 2, gpus: int = 8) -> None:
    for i in range(count):
        k8s_api.add_node(f"gpu-{i}", gpus=gpus, labels={"pool": "a100"})


def test_pod_manifest_carries_digest_gpus_checkpoint_volume_contract_and_safe_defaults(
    k8s_api: K8sApi, run_dag: Callable[..., Any]
) -> None:
    _gpu_nodes(k8s_api)
    k8s_api.auto_complete("train-", outcome="succeeded", logs=format_heartbeat_line(10) + "\ndone\n")
    dag, failures = _dag(
        "tg_pod_manifest",
        k8s_api,
        gpus=4,
        node_selector={"pool": "a100"},
        checkpoint_claim_name="training-checkpoints",
        kueue_queue_name="ml-team",
        output_dir="/models",
    )
    assert run_dag(dag) == {"train": "success"}, failures

    [manifest] = k8s_api.created_pods()
    spec = manifest["spec"]
    [container] = spec["containers"]
    assert container["image"] == IMAGE
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "4"
    assert container["resources"]["requests"]["nvidia.com/gpu"] == "4"
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
    assert spec["activeDeadlineSeconds"] == 780  # 10m + 30%
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }
    # Checkpoints: one PVC, a sub-path per (dag, task, partition_key), mounted where the contract says.
    [volume] = [v for v in spec["volumes"] if v["name"] == "training-guard-checkpoints"]
    assert volume["persistentVolumeClaim"] == {"claimName": "training-checkpoints"}
    [mount] = [m for m in container["volumeMounts"] if m["name"] == "training-guard-checkpoints"]
    assert mount["mountPath"] == "/checkpoints"
    assert mount["subPath"] == "tg_pod_manifest/train/berlin%7C2026-11-01"
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["TRAINING_GUARD_PARTITION_KEY"] == PARTITION
    assert env["TRAINING_GUARD_CHECKPOINT_DIR"] == "/checkpoints"
    assert env["TRAINING_GUARD_OUTPUT_DIR"] == "/models"
    assert env["TRAINING_GUARD_ATTEMPT"] == "1"
    assert "TRAINING_GUARD_HEARTBEAT_LOG_INTERVAL" in env
    labels, annotations = manifest["metadata"]["labels"], manifest["metadata"]["annotations"]
    assert labels["kueue.x-k8s.io/queue-name"] == "ml-team"
    assert annotations["training-guard.io/partition-key"] == PARTITION
    assert annotations["training-guard.io/image-digest"] == DIGEST
    assert k8s_api.pods() == {}  # deleted when done


def test_gpu_request_that_fits_no_node_fails_before_any_pod_is_created(
    k8s_api: K8sApi, run_dag: Callable[..., Any]
) -> None:
    """16-GPU jobs queued for days on a cluster of 8-GPU nodes while the GPUs sat idle."""
    from airflow.sdk.exceptions import AirflowFailException

    _gpu_nodes(k8s_api)
    dag, failures = _dag("tg_pod_no_fit", k8s_api, gpus=16)
    assert run_dag(dag) == {"train": "failed"}
    [error] = failures
    assert isinstance(error, AirflowFailException)
    assert "gpu-0" in str(error)
    assert "gpu-1" in str(error)
    assert k8s_api.created_pods() == []


def test_gpu_request_above_the_namespace_quota_fails_retryably_without_a_pod(
    k8s_api: K8sApi, run_dag: Callable[..., Any]
) -> None:
    from airflow.sdk.exceptions import AirflowException, AirflowFailException

    _gpu_nodes(k8s_api)
    k8s_api.add_resource_quota(
        "gpu-quota", hard={"requests.nvidia.com/gpu": "8"}, used={"requests.nvidia.com/gpu": "6"}
    )
    dag, failures = _dag("tg_pod_quota", k8s_api, gpus=4)
    assert run_dag(dag) == {"train": "failed"}
    [error] = failures
    assert isinstance(error, AirflowException)
    assert not isinstance(error, AirflowFailException)
    assert re.search(r"has 2 nvidia.com/gpu left in its ResourceQuota, this pod requests 4", str(error))
    assert k8s_api.created_pods() == []


def test_quota_is_left_to_kueue_when_a_queue_is_named(k8s_api: K8sApi, run_dag: Callable[..., Any]) -> None:
    _gpu_nodes(k8s_api)
    k8s_api.add_resource_quota(
        "gpu-quota", hard={"requests.nvidia.com/gpu": "8"}, used={"requests.nvidia.com/gpu": "8"}
    )
    k8s_api.auto_complete("train-", outcome="succeeded")
    dag, failures = _dag("tg_pod_kueue", k8s_api, gpus=4, kueue_queue_name="ml-team")
    assert run_dag(dag) == {"train": "success"}, failures


def test_oom_killed_pod_fails_without_retry_with_reason_hint_logs_and_events(
    k8s_api: K8sApi, run_dag: Callable[..., Any]
) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    k8s_api.auto_complete("train-", outcome="oom", logs="loading shard 7\nallocating 80GiB\n")
    dag, failures = _dag("tg_pod_oom", k8s_api)
    assert run_dag(dag) == {"train": "failed"}
    [error] = failures
    assert isinstance(error, AirflowFailException)
    text = str(error)
    assert "OOMKilled" in text
    assert "allocating 80GiB" in text  # last log lines
    assert "hint" in text.lower()


def test_evicted_pod_fails_retryably(k8s_api: K8sApi, run_dag: Callable[..., Any]) -> None:
    from airflow.sdk.exceptions import AirflowException, AirflowFailException

    k8s_api.auto_complete("train-", outcome="evicted")
    dag, failures = _dag("tg_pod_evicted", k8s_api)
    assert run_dag(dag) == {"train": "failed"}
    [error] = failures
    assert isinstance(error, AirflowException)
    assert not isinstance(error, AirflowFailException)
    assert re.search(r"evict", str(error), re.IGNORECASE)


def test_bad_image_fails_without_retry_naming_image_pull(
    k8s_api: K8sApi, run_dag: Callable[..., Any]
) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    k8s_api.auto_complete("train-", outcome="image_pull")
    dag, failures = _dag("tg_pod_image_pull", k8s_api, startup_timeout="3s")
    assert run_dag(dag) == {"train": "failed"}
    [error] = failures
    assert isinstance(error, AirflowFailException)
    assert "ImagePullBackOff" in str(error)


def test_unschedulable_pod_reports_the_schedulers_reason(
    k8s_api: K8sApi, run_dag: Callable[..., Any]
) -> None:
    k8s_api.auto_complete("train-", outcome="unschedulable")
    dag, failures = _dag("tg_pod_unschedulable", k8s_api, startup_timeout="3s")
    assert run_dag(dag) == {"train": "failed"}
    [error] = failures
    assert "Unschedulable" in str(error) or "unschedulable" in str(error)
    assert "nodes are available" in str(error)


def test_stalled_pod_is_deleted_and_fails_retryably(k8s_api: K8sApi, run_dag: Callable[..., Any]) -> None:
    """A training job hung in a collective for 9 hours holding 8 GPUs."""
    from airflow.sdk.exceptions import AirflowException, AirflowFailException

    stuck_log = "\n".join(format_heartbeat_line(step) for step in (1, 2, 3)) + "\n"
    k8s_api.auto_complete("train-", outcome="never", logs=stuck_log)
    dag, failures = _dag("tg_pod_stall", k8s_api, stall_after="2s", heartbeat_log_interval="0.5s")
    assert run_dag(dag) == {"train": "failed"}
    [error] = failures
    assert isinstance(error, AirflowException)
    assert not isinstance(error, AirflowFailException)
    assert "stalled" in str(error)
    assert "last step 3" in str(error) and "the watchdog deleted the pod" in str(error)
    assert any(r.method == "DELETE" for r in k8s_api.requests)
    # The log the watchdog read before deleting the pod, not "the container may never have started".
    assert "may never have started" not in str(error)
    assert 'TRAINING_GUARD_HEARTBEAT {"step":3' in str(error)


def test_deferred_stalled_pod_is_caught_by_the_triggerer_deleted_and_fails_retryably(
    k8s_api: K8sApi, run_dag: Callable[..., Any]
) -> None:
    """Deferrable mode frees the worker slot; the triggerer must still notice the hung job."""
    from airflow.sdk.exceptions import AirflowException, AirflowFailException

    stuck_log = "\n".join(format_heartbeat_line(step) for step in (1, 2, 3)) + "\n"
    k8s_api.auto_complete("train-", outcome="never", logs=stuck_log)
    dag, failures = _dag(
        "tg_pod_stall_deferred",
        k8s_api,
        stall_after="2s",
        heartbeat_log_interval="0.5s",
        deferrable=True,
        poll_interval=0.2,
    )
    assert run_dag(dag) == {"train": "failed"}
    [error] = failures
    assert isinstance(error, AirflowException) and not isinstance(error, AirflowFailException)
    assert "stalled: no heartbeat progress for" in str(error) and "last step 3" in str(error)
    assert "the watchdog deleted the pod" in str(error)
    assert 'TRAINING_GUARD_HEARTBEAT {"step":3' in str(error), "the log tail read before the delete"
    assert any(r.method == "DELETE" for r in k8s_api.requests)


def test_unpinned_templated_image_is_refused_when_rendered(
    k8s_api: K8sApi, run_dag: Callable[..., Any]
) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    dag, failures = _dag("tg_pod_templated_image", k8s_api, image="{{ 'acme/train' }}:{{ 'latest' }}")
    assert run_dag(dag) == {"train": "failed"}
    [error] = failures
    assert isinstance(error, AirflowFailException)  # retrying renders the same image
    assert "not pinned" in str(error)
    assert k8s_api.created_pods() == []


def test_xcom_and_logs_do_not_leak_secret_env_values(
    k8s_api: K8sApi, run_dag: Callable[..., Any], capfd
) -> None:
    """The effective-configuration log line must not print environment variables (they hold tokens)."""
    k8s_api.auto_complete("train-", outcome="succeeded")
    dag, failures = _dag("tg_pod_secret", k8s_api, env_vars={"HF_TOKEN": "hf_supersecret_value"})
    assert run_dag(dag) == {"train": "success"}, failures
    out, err = capfd.readouterr()
    assert "hf_supersecret_value" not in out + err
    assert json.dumps("hf_supersecret_value") not in json.dumps([str(f) for f in failures])


@pytest.mark.parametrize("deferrable", [True])
def test_deferrable_mode_runs_the_same_guards(
    k8s_api: K8sApi, run_dag: Callable[..., Any], deferrable: bool
) -> None:
    _gpu_nodes(k8s_api)
    k8s_api.auto_complete("train-", outcome="succeeded", logs="done\n")
    dag, failures = _dag("tg_pod_deferrable", k8s_api, gpus=2, deferrable=deferrable, poll_interval=0.2)
    assert run_dag(dag) == {"train": "success"}, failures
    [manifest] = k8s_api.created_pods()
    assert manifest["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "2"


def test_pins_reach_the_pod_and_the_manifest_is_pushed_to_xcom(
    k8s_api: K8sApi, run_dag: Callable[..., Any]
) -> None:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    sha = "0123456789abcdef0123456789abcdef01234567"
    k8s_api.auto_complete("train-", outcome="succeeded")
    dag, failures = _dag(
        "tg_pod_pins",
        k8s_api,
        pins={"datasets": {"org/events": sha}, "models": {"org/base": sha}},
        checkpoint_claim_name="training-checkpoints",
        output_dir="/models",
    )
    assert run_dag(dag) == {"train": "success"}, failures
    [manifest] = k8s_api.created_pods()
    env = {e["name"]: e["value"] for e in manifest["spec"]["containers"][0]["env"]}
    assert json.loads(env["TRAINING_GUARD_PINS"]) == {
        "datasets": {"org/events": sha},
        "models": {"org/base": sha},
    }
    with create_session() as session:
        row = (
            session.query(XComModel)
            .filter(XComModel.dag_id == "tg_pod_pins", XComModel.key == "manifest")
            .one()
        )
        pushed = row.value if isinstance(row.value, dict) else json.loads(row.value)
    assert pushed["image_digest"] == DIGEST
    assert pushed["partition_key"] == PARTITION
    assert pushed["datasets"] == {"org/events": sha}
    assert pushed["checkpoints"] == ["training-checkpoints:tg_pod_pins/train/berlin%7C2026-11-01"]
