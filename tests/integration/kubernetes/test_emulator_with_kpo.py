"""The real KubernetesPodOperator and the real kubernetes client against the kmock-based emulator.

The operator runs inside real DAG runs (``run_dag`` -> ``dag.test()``): the task runner builds the
context, computes the task-instance labels KPO puts on the pod, pushes XComs and runs the failure
callback. That exercises more real code than ``op.execute(context)`` with a hand-made context, for
about 1 s of DAG-run overhead per test (the first ``run_dag`` of a session also pays about 4 s to
start Airflow's in-process task runner). The failure callback is how a test gets the exception the
task failed with.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import re
import types
from collections.abc import Callable
from typing import Any

import kubernetes
import pendulum
import pytest

from tests.integration.kubernetes.k8s_api import (
    K8sApi,
    SelectorError,
    label_selector_matches,
    parse_label_selector,
)

IMAGE = "acme/train@sha256:" + "ab" * 32
START = pendulum.datetime(2026, 11, 1, tz="UTC")
POD_PATH = re.compile(r"/api/v1/namespaces/default/pods/(?P<name>[^/]+)$")


def _kpo_dag(dag_id: str, k8s_api: K8sApi, **operator_kwargs: Any) -> tuple[Any, list[BaseException]]:
    """A one-task DAG running KPO against the emulator, and the list its failures land in."""
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
    from airflow.sdk import DAG

    failures: list[BaseException] = []
    kwargs: dict[str, Any] = {
        "task_id": "train",
        "name": "train",
        "image": IMAGE,
        "namespace": "default",
        "kubernetes_conn_id": k8s_api.airflow_conn_id,
        # KPO polls the pod start every N seconds (an int, default 5): keep the tests short.
        "startup_check_interval_seconds": 1,
        "on_failure_callback": lambda context: failures.append(context["exception"]),
        **operator_kwargs,
    }
    with DAG(dag_id=dag_id, schedule=None, start_date=START) as dag:
        KubernetesPodOperator(**kwargs)
    return dag, failures


def _pod_name(k8s_api: K8sApi) -> str:
    [manifest] = k8s_api.created_pods()
    return str(manifest["metadata"]["name"])


def _sent(k8s_api: K8sApi, method: str, path: str | re.Pattern[str]) -> list[Any]:
    return [
        r
        for r in k8s_api.requests
        if r.method == method and (r.path == path if isinstance(path, str) else path.fullmatch(r.path))
    ]


# --- KubernetesPodOperator in real DAG runs ------------------------------------------------------


def test_kpo_pod_that_succeeds_is_logged_and_deleted(k8s_api: K8sApi, run_dag: Callable[..., Any]) -> None:
    k8s_api.auto_complete("train-", outcome="succeeded", logs="epoch 1 loss=0.91\nepoch 2 loss=0.42")
    dag, failures = _kpo_dag(
        "tg_k8s_kpo_success", k8s_api, labels={"team": "ml"}, get_logs=True, on_finish_action="delete_pod"
    )

    assert run_dag(dag) == {"train": "success"}, failures

    [manifest] = k8s_api.created_pods()
    name = manifest["metadata"]["name"]
    assert name.startswith("train-")
    assert [(c["name"], c["image"]) for c in manifest["spec"]["containers"]] == [("base", IMAGE)]
    labels = manifest["metadata"]["labels"]
    assert labels["team"] == "ml"
    assert labels["dag_id"] == "tg_k8s_kpo_success"
    assert labels["task_id"] == "train"
    assert labels["kubernetes_pod_operator"] == "True"
    assert labels["try_number"] == "1"
    assert "status" not in manifest
    # KPO followed the logs of its main container, with server-side timestamps.
    [log_request] = _sent(k8s_api, "GET", f"/api/v1/namespaces/default/pods/{name}/log")[:1]
    assert log_request.query["container"] == "base"
    assert log_request.query["timestamps"] == "True"
    # ...and deleted the pod at the end.
    assert [r.path for r in _sent(k8s_api, "DELETE", POD_PATH)] == [f"/api/v1/namespaces/default/pods/{name}"]
    assert k8s_api.pods() == {}


def test_kpo_oom_killed_pod_fails_the_task_after_reading_events_and_logs(
    k8s_api: K8sApi, run_dag: Callable[..., Any]
) -> None:
    from airflow.sdk.exceptions import AirflowException

    k8s_api.auto_complete("train-", outcome="oom", logs="allocating 80GiB\n")
    dag, failures = _kpo_dag("tg_k8s_kpo_oom", k8s_api, log_events_on_failure=True)

    assert run_dag(dag) == {"train": "failed"}

    name = _pod_name(k8s_api)
    [error] = failures
    assert isinstance(error, AirflowException)
    assert re.match(rf"Pod {name} returned a failure\.", str(error))
    assert "OOMKilled" in str(error)  # the remote pod, logged because log_pod_spec_on_failure=True
    assert _sent(k8s_api, "GET", f"/api/v1/namespaces/default/pods/{name}/log")
    event_reads = _sent(k8s_api, "GET", "/api/v1/namespaces/default/events")
    assert event_reads and {r.query["fieldSelector"] for r in event_reads} == {f"involvedObject.name={name}"}
    # A failed pod is labelled so that a retry never reattaches to it, then deleted.
    [patch] = _sent(k8s_api, "PATCH", POD_PATH)
    assert patch.body == {"metadata": {"labels": {"already_checked": "True"}}}
    assert _sent(k8s_api, "DELETE", f"/api/v1/namespaces/default/pods/{name}")


def test_kpo_unschedulable_pod_times_out_at_startup(k8s_api: K8sApi, run_dag: Callable[..., Any]) -> None:
    """KPO's PodLaunchTimeoutException is replaced by cleanup's "returned a failure" (raised in a finally)."""
    from airflow.providers.cncf.kubernetes.utils.pod_manager import PodLaunchTimeoutException
    from airflow.sdk.exceptions import AirflowException

    k8s_api.auto_complete("train-", outcome="unschedulable")
    dag, failures = _kpo_dag("tg_k8s_kpo_unschedulable", k8s_api, startup_timeout_seconds=2)

    assert run_dag(dag) == {"train": "failed"}

    name = _pod_name(k8s_api)
    [error] = failures
    assert isinstance(error, AirflowException)
    assert str(error).startswith(f"Pod {name} returned a failure.")
    assert "Unschedulable" in str(error)
    cause = error.__context__
    assert isinstance(cause, PodLaunchTimeoutException)
    assert str(cause) == (
        "Pod took too long to be scheduled on the cluster, giving up. More than 2s. "
        "Check the pod events in kubernetes."
    )
    # KPO logged the scheduler's events while it waited.
    assert any(e["reason"] == "FailedScheduling" for e in k8s_api.events())
    assert _sent(k8s_api, "GET", "/api/v1/namespaces/default/events")


def test_kpo_reattaches_to_the_running_pod_of_its_task_instance(
    k8s_api: K8sApi, run_dag: Callable[..., Any]
) -> None:
    from airflow.models.dagrun import DagRun
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
    from airflow.utils.types import DagRunType

    run_after = pendulum.datetime(2026, 11, 2, 6, tz="UTC")
    run_id = DagRun.generate_run_id(run_type=DagRunType.MANUAL, logical_date=run_after, run_after=run_after)
    # The labels KPO computes for this task instance, by KPO's own code.
    ti = types.SimpleNamespace(dag_id="tg_k8s_kpo_reattach", task_id="train", map_index=-1, try_number=1)
    labels = KubernetesPodOperator._get_ti_pod_labels(
        {"ti": ti, "run_id": run_id, "dag": types.SimpleNamespace()}  # type: ignore[arg-type]
    )
    v1 = k8s_api.core_v1()

    def create(name: str, extra_labels: dict[str, str]) -> None:
        body = {
            "metadata": {"name": name, "labels": {**labels, **extra_labels}},
            "spec": {"containers": [{"name": "base", "image": IMAGE}], "restartPolicy": "Never"},
        }
        v1.create_namespaced_pod("default", body)

    create("train-survivor", {})  # the pod a crashed worker left running
    create("train-previous-try", {"already_checked": "True"})  # finished and checked by try 0
    create("train-worker", {"airflow-worker": "1234"})  # a CeleryKubernetes worker pod
    create("other-task", {"task_id": "other"})
    k8s_api.run_pod("train-survivor")
    # It finishes once KPO has attached to it (the DAG run takes a few seconds to get there).
    k8s_api.auto_complete(
        "train-survivor", outcome="succeeded", logs="resumed from step 900\n", start="first_read"
    )
    before, pods_before = len(k8s_api.requests), k8s_api.pods()

    # `durable` is what Airflow 3.3 calls reattach_on_restart (deprecated, same meaning).
    dag, failures = _kpo_dag(
        # A new pod would never start: fail in seconds, not after the default 120 s.
        "tg_k8s_kpo_reattach",
        k8s_api,
        durable=True,
        on_finish_action="delete_pod",
        startup_timeout_seconds=5,
    )
    assert run_dag(dag, logical_date=run_after, run_after=run_after) == {"train": "success"}, failures

    during = k8s_api.requests[before:]
    assert [r for r in during if r.method == "POST"] == []
    finds = [r for r in during if r.method == "GET" and r.path == "/api/v1/namespaces/default/pods"]
    assert finds, "KPO did not look for an existing pod"
    selector = finds[0].query["labelSelector"]
    assert selector.endswith(",already_checked!=True,!airflow-worker")
    requirements = parse_label_selector(selector)  # the parser the emulator filters lists with
    assert [name for name, pod in pods_before.items() if label_selector_matches(requirements, pod)] == [
        "train-survivor"
    ]
    assert [r.path for r in during if r.method == "DELETE"] == [
        "/api/v1/namespaces/default/pods/train-survivor"
    ]
    assert sorted(k8s_api.pods()) == ["other-task", "train-previous-try", "train-worker"]


def test_deferrable_kpo_runs_its_trigger_against_the_emulator(
    k8s_api: K8sApi, run_dag: Callable[..., Any]
) -> None:
    """The trigger talks kubernetes_asyncio to the same server; dag.test() runs it inline."""
    k8s_api.auto_complete("train-", outcome="succeeded", logs="epoch 1 loss=0.91\n")
    dag, failures = _kpo_dag("tg_k8s_kpo_deferrable", k8s_api, deferrable=True, poll_interval=1)

    assert run_dag(dag) == {"train": "success"}, failures

    name = _pod_name(k8s_api)
    assert _sent(k8s_api, "GET", f"/api/v1/namespaces/default/pods/{name}/log")
    assert _sent(k8s_api, "DELETE", f"/api/v1/namespaces/default/pods/{name}")


# --- the real client against the emulator -------------------------------------------------------


def test_nodes_quotas_and_pods_across_namespaces_through_the_real_client(k8s_api: K8sApi) -> None:
    k8s_api.add_node("gpu-a", gpus=8, labels={"nvidia.com/gpu.product": "H100"})
    k8s_api.add_node(
        "gpu-b",
        gpus=4,
        gpu_resource="amd.com/gpu",
        taints=[{"key": "dedicated", "value": "training", "effect": "NoSchedule"}],
        cpu="32",
        memory="256Gi",
    )
    k8s_api.add_resource_quota(
        "gpu-quota",
        hard={"requests.nvidia.com/gpu": "16"},
        used={"requests.nvidia.com/gpu": "12"},
        namespace="ml",
    )
    v1 = k8s_api.core_v1()

    nodes = {n.metadata.name: n for n in v1.list_node().items}
    assert sorted(nodes) == ["gpu-a", "gpu-b"]
    assert nodes["gpu-a"].status.allocatable["nvidia.com/gpu"] == "8"
    assert nodes["gpu-b"].status.capacity == {
        "cpu": "32",
        "memory": "256Gi",
        "pods": "110",
        "ephemeral-storage": "1Ti",
        "amd.com/gpu": "4",
    }
    assert nodes["gpu-b"].spec.taints[0].effect == "NoSchedule"
    assert nodes["gpu-a"].metadata.namespace is None  # nodes are cluster-scoped
    assert [n.metadata.name for n in v1.list_node(label_selector="nvidia.com/gpu.product=H100").items] == [
        "gpu-a"
    ]

    [quota] = v1.list_namespaced_resource_quota("ml").items
    assert [ns.metadata.name for ns in v1.list_namespace().items] == [
        "default",
        "kube-node-lease",
        "kube-public",
        "kube-system",
        "ml",
    ]
    assert quota.status.hard == {"requests.nvidia.com/gpu": "16"}
    assert quota.status.used == {"requests.nvidia.com/gpu": "12"}
    assert v1.list_namespaced_resource_quota("default").items == []

    for namespace, name, node in [("ml", "a", "gpu-a"), ("ml", "b", "gpu-b"), ("default", "c", "gpu-a")]:
        body = {
            "metadata": {"name": name},
            "spec": {"nodeName": node, "containers": [{"name": "base", "image": IMAGE}]},
        }
        v1.create_namespaced_pod(namespace, body)
    k8s_api.run_pod("b", namespace="ml")

    on_a = v1.list_pod_for_all_namespaces(field_selector="spec.nodeName=gpu-a").items
    assert sorted((p.metadata.namespace, p.metadata.name) for p in on_a) == [("default", "c"), ("ml", "a")]
    running = v1.list_pod_for_all_namespaces(field_selector="status.phase=Running").items
    assert [p.metadata.name for p in running] == ["b"]
    not_running = v1.list_pod_for_all_namespaces(field_selector="status.phase!=Running,spec.nodeName=gpu-a")
    assert len(not_running.items) == 2


def test_watch_sees_phase_changes_driven_over_http(k8s_api: K8sApi) -> None:
    v1 = k8s_api.core_v1()
    body = {
        "metadata": {"name": "watched", "labels": {"app": "train"}},
        "spec": {"containers": [{"name": "base", "image": IMAGE}]},
    }
    v1.create_namespaced_pod("default", body)
    v1.create_namespaced_pod("default", {**body, "metadata": {"name": "other", "labels": {"app": "serve"}}})

    seen: list[tuple[str, str]] = []
    watch = kubernetes.watch.Watch()
    for event in watch.stream(
        v1.list_namespaced_pod, "default", label_selector="app=train", timeout_seconds=5
    ):
        pod = event["object"]
        seen.append((event["type"], f"{pod.metadata.name}:{pod.status.phase}"))
        if pod.status.phase == "Pending":
            k8s_api.run_pod("watched")
        elif pod.status.phase == "Running":
            k8s_api.succeed_pod("watched")
        else:
            watch.stop()

    assert seen == [
        ("ADDED", "watched:Pending"),
        ("MODIFIED", "watched:Running"),
        ("MODIFIED", "watched:Succeeded"),
    ]
    # What the client sent, before the emulator normalised it for kmock.
    [watch_request] = [r for r in k8s_api.requests if "watch" in r.query]
    assert watch_request.query["watch"] == "True"


def test_kubernetes_asyncio_watch_is_normalised_too(k8s_api: K8sApi) -> None:
    import kubernetes_asyncio

    k8s_api.core_v1().create_namespaced_pod(
        "default", {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "base", "image": IMAGE}]}}
    )

    async def watch() -> list[tuple[str, str]]:
        configuration = kubernetes_asyncio.client.Configuration(host=k8s_api.url)
        async with kubernetes_asyncio.client.ApiClient(configuration) as api_client:
            v1 = kubernetes_asyncio.client.CoreV1Api(api_client)
            seen: list[tuple[str, str]] = []
            async with kubernetes_asyncio.watch.Watch() as watcher:
                async for event in watcher.stream(v1.list_namespaced_pod, "default", timeout_seconds=5):
                    seen.append((event["type"], event["object"].status.phase))
                    if event["object"].status.phase == "Pending":
                        await asyncio.to_thread(k8s_api.run_pod, "p")
                    else:
                        watcher.stop()
            return seen

    assert asyncio.run(watch()) == [("ADDED", "Pending"), ("MODIFIED", "Running")]
    assert [r.query["watch"] for r in k8s_api.requests if "watch" in r.query] == ["True"]


def test_watch_ends_after_timeout_seconds_and_resumes_from_a_resource_version(k8s_api: K8sApi) -> None:
    v1 = k8s_api.core_v1()

    def create(name: str) -> None:
        body = {"metadata": {"name": name}, "spec": {"containers": [{"name": "base", "image": IMAGE}]}}
        v1.create_namespaced_pod("default", body)

    create("p")
    create("q")
    events = list(kubernetes.watch.Watch().stream(v1.list_namespaced_pod, "default", timeout_seconds=1))
    assert [(e["type"], e["object"].metadata.name) for e in events] == [("ADDED", "p"), ("ADDED", "q")]

    listed = v1.list_namespaced_pod("default").metadata.resource_version
    k8s_api.run_pod("p")
    v1.delete_namespaced_pod("q", "default")
    create("r")
    resumed = kubernetes.watch.Watch().stream(
        v1.list_namespaced_pod, "default", resource_version=listed, timeout_seconds=1
    )
    assert [(e["type"], e["object"].metadata.name, e["object"].status.phase) for e in resumed] == [
        ("MODIFIED", "p", "Running"),
        ("DELETED", "q", "Pending"),
        ("ADDED", "r", "Pending"),
    ]


# --- realism of the emulator itself --------------------------------------------------------------


def test_created_objects_get_server_side_metadata_and_a_pending_status(k8s_api: K8sApi) -> None:
    v1 = k8s_api.core_v1()
    body = {
        "metadata": {"name": "p"},
        "spec": {
            "containers": [
                {
                    "name": "base",
                    "image": "acme/train:latest",
                    "resources": {"limits": {"cpu": "1", "memory": "1Gi"}},
                }
            ]
        },
        "status": {"phase": "Succeeded"},  # ignored, as by the real API server
    }
    first = v1.create_namespaced_pod("default", body)
    second = v1.create_namespaced_pod("default", {**body, "metadata": {"name": "q"}})

    assert first.metadata.uid != second.metadata.uid
    assert int(second.metadata.resource_version) > int(first.metadata.resource_version)
    assert first.metadata.namespace == "default"
    assert first.metadata.creation_timestamp <= datetime.datetime.now(tz=datetime.UTC)
    assert first.status.phase == "Pending"
    assert [(c.type, c.status) for c in first.status.conditions] == [("PodScheduled", "True")]
    assert first.status.qos_class == "Guaranteed"
    assert first.spec.containers[0].image_pull_policy == "Always"

    patched = v1.patch_namespaced_pod("p", "default", {"metadata": {"labels": {"x": "y"}}})
    assert int(patched.metadata.resource_version) > int(second.metadata.resource_version)
    assert patched.metadata.uid == first.metadata.uid

    with pytest.raises(kubernetes.client.ApiException) as conflict:
        v1.create_namespaced_pod("default", body)
    assert conflict.value.status == 409
    with pytest.raises(kubernetes.client.ApiException) as invalid:
        v1.create_namespaced_pod("default", {**body, "metadata": {"name": "r", "labels": {"run_id": "a:b"}}})
    assert invalid.value.status == 422
    assert "metadata.labels: Invalid value: 'a:b'" in json.loads(invalid.value.body)["message"]


@pytest.mark.parametrize(
    ("outcome", "phase", "check"),
    [
        (
            "succeeded",
            "Succeeded",
            lambda s: s["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 0,
        ),
        ("failed", "Failed", lambda s: s["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 3),
        (
            "oom",
            "Failed",
            lambda s: s["containerStatuses"][0]["state"]["terminated"]["reason"] == "OOMKilled",
        ),
        (
            "evicted",
            "Failed",
            lambda s: s["reason"] == "Evicted" and s["conditions"][0]["type"] == "DisruptionTarget",
        ),
        (
            "image_pull",
            "Pending",
            lambda s: s["containerStatuses"][0]["state"]["waiting"]["reason"] == "ImagePullBackOff",
        ),
        (
            "unschedulable",
            "Pending",
            lambda s: (
                [(c["type"], c["status"], c["reason"]) for c in s["conditions"]]
                == [("PodScheduled", "False", "Unschedulable")]
            ),
        ),
        ("never", "Running", lambda s: "running" in s["containerStatuses"][0]["state"]),
    ],
)
def test_auto_complete_outcomes(
    k8s_api: K8sApi, outcome: Any, phase: str, check: Callable[[dict[str, Any]], bool]
) -> None:
    k8s_api.auto_complete("job-", outcome=outcome, after=0.05, exit_code=3)
    k8s_api.core_v1().create_namespaced_pod(
        "default", {"metadata": {"name": "job-1"}, "spec": {"containers": [{"name": "base", "image": IMAGE}]}}
    )

    def settled() -> dict[str, Any] | None:
        status = k8s_api.pod("job-1")["status"]
        has_state = outcome == "unschedulable" or status.get("containerStatuses")
        return status if status["phase"] == phase and has_state else None

    status = k8s_api.wait_for(settled, what=f"job-1 to reach {phase}")
    assert check(status), status


def test_logs_honour_timestamps_tail_lines_and_container_state(k8s_api: K8sApi) -> None:
    v1 = k8s_api.core_v1()
    v1.create_namespaced_pod(
        "default", {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "base", "image": IMAGE}]}}
    )
    with pytest.raises(kubernetes.client.ApiException) as waiting:
        v1.read_namespaced_pod_log("p", "default", container="base")
    assert waiting.value.status == 400
    assert json.loads(waiting.value.body)["message"] == (
        'container "base" in pod "p" is waiting to start: ContainerCreating'
    )

    k8s_api.run_pod("p")
    k8s_api.set_logs("p", "one\ntwo\nthree")
    response = v1.read_namespaced_pod_log(
        "p", "default", container="base", tail_lines=2, _preload_content=False
    )
    assert response.headers["Content-Type"].startswith("text/plain")
    assert response.data == b"two\nthree\n"
    stamped = v1.read_namespaced_pod_log("p", "default", timestamps=True, follow=True, _preload_content=False)
    lines = stamped.data.decode().splitlines()
    assert [line.split(" ", 1)[1] for line in lines] == ["one", "two", "three"]
    assert all(re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z ", line) for line in lines)


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ("a=b,c=d", {"a": "b", "c": "d"}, True),
        ("a=b,c=d", {"a": "b"}, False),
        ("a==b", {"a": "b"}, True),
        ("a!=b", {"a": "c"}, True),
        ("a!=b", {}, True),  # != also matches objects without the label
        ("a!=b", {"a": "b"}, False),
        ("!a", {"b": "c"}, True),
        ("!a", {"a": ""}, False),
        ("a", {"a": ""}, True),
        ("a", {}, False),
        ("a in (x, y),b notin (z)", {"a": "y"}, True),
        ("a in (x,y)", {"a": "z"}, False),
        ("example.com/tier=gpu,already_checked!=True,!airflow-worker", {"example.com/tier": "gpu"}, True),
    ],
)
def test_label_selector_forms(selector: str, labels: dict[str, str], expected: bool) -> None:
    requirements = parse_label_selector(selector)
    assert label_selector_matches(requirements, {"metadata": {"labels": labels}}) is expected


@pytest.mark.parametrize("selector", ["a=b=c", "a in x", "=b", "a,,b", "a=b c"])
def test_malformed_label_selectors_are_rejected(selector: str, k8s_api: K8sApi) -> None:
    with pytest.raises(SelectorError):
        parse_label_selector(selector)
    with pytest.raises(kubernetes.client.ApiException) as bad:
        k8s_api.core_v1().list_namespaced_pod("default", label_selector=selector)
    assert bad.value.status == 400
