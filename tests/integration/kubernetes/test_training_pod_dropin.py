"""GuardedTrainingPodOperator where it meets what users bring: templates, sidecars, default_args.

Every assertion is on what the Kubernetes API emulator received (the pod manifest) or on the
exception a real DAG run ends with.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pendulum
import pytest
from kubernetes.client import models as k8s

from airflow_training_guard.kubernetes.pod_security import restricted_violations
from airflow_training_guard.runtime.heartbeat import format_heartbeat_line
from tests.integration.kubernetes.k8s_api import K8sApi

DIGEST = "sha256:" + "ab" * 32
IMAGE = f"registry.example.com:5000/ml/trainer@{DIGEST}"
START = pendulum.datetime(2026, 11, 1, tz="UTC")


def _dag(
    dag_id: str, k8s_api: K8sApi, *, default_args: dict[str, Any] | None = None, **kwargs: Any
) -> tuple[Any, list[BaseException]]:
    from airflow.sdk import DAG

    from airflow_training_guard.operators.training_pod import GuardedTrainingPodOperator

    failures: list[BaseException] = []
    params: dict[str, Any] = {
        "task_id": "train",
        "name": "train",
        "namespace": "default",
        "kubernetes_conn_id": k8s_api.airflow_conn_id,
        "expected_runtime": "10m",
        "partition_key": "berlin|2026-11-01",
        "startup_check_interval_seconds": 1,
        "retries": 0,
        "on_failure_callback": lambda context: failures.append(context["exception"]),
        **kwargs,
    }
    with DAG(dag_id=dag_id, schedule=None, start_date=START, default_args=default_args or {}) as dag:
        GuardedTrainingPodOperator(**params)
    return dag, failures


def _unsafe_template(tmp_path: Path, image: str = IMAGE) -> str:
    path = tmp_path / "pod.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            apiVersion: v1
            kind: Pod
            metadata:
              name: from-template
            spec:
              hostNetwork: true
              hostPID: true
              volumes:
                - name: host-root
                  hostPath:
                    path: /
              initContainers:
                - name: setup
                  image: {image}
                  securityContext:
                    privileged: true
              containers:
                - name: base
                  image: {image}
            """
        )
    )
    return str(path)


def test_xcom_sidecar_and_init_containers_get_the_safe_defaults_and_the_pod_is_restricted(
    k8s_api: K8sApi, run_dag: Callable[..., Any]
) -> None:
    """Regression: with do_xcom_push=True the airflow-xcom-sidecar kept its capabilities and could escalate."""
    k8s_api.auto_complete("train-", outcome="succeeded", logs=format_heartbeat_line(1) + "\n")
    dag, _ = _dag(
        "tg_dropin_sidecar",
        k8s_api,
        image=IMAGE,
        do_xcom_push=True,
        init_containers=[k8s.V1Container(name="fetch", image=IMAGE)],
    )
    run_dag(dag)  # the emulator cannot exec into the sidecar; the manifest is what matters here
    [pod] = k8s_api.created_pods()
    names = [c["name"] for c in pod["spec"]["containers"]] + [
        c["name"] for c in pod["spec"]["initContainers"]
    ]
    assert "airflow-xcom-sidecar" in names and "fetch" in names
    for container in [*pod["spec"]["containers"], *pod["spec"]["initContainers"]]:
        assert container["securityContext"]["allowPrivilegeEscalation"] is False, container["name"]
        assert container["securityContext"]["capabilities"]["drop"] == ["ALL"], container["name"]
    assert restricted_violations(pod) == []


def test_template_with_host_namespaces_host_path_and_privileged_init_is_refused_before_any_pod(
    k8s_api: K8sApi, run_dag: Callable[..., Any], tmp_path: Path
) -> None:
    """Regression: a pod_template_file with hostNetwork, hostPID, hostPath / and a privileged init
    container was submitted unchanged and unmentioned."""
    from airflow.sdk.exceptions import AirflowFailException

    dag, failures = _dag("tg_dropin_unsafe", k8s_api, pod_template_file=_unsafe_template(tmp_path))
    assert run_dag(dag) == {"train": "failed"}
    [error] = failures
    assert isinstance(error, AirflowFailException)
    message = str(error)
    for field in (
        "spec.hostNetwork=True",
        "spec.hostPID=True",
        "spec.volumes[host-root].hostPath='/'",
        "spec.initContainers[setup].securityContext.privileged=True",
    ):
        assert field in message, message
    assert "pod_security='warn'" in message
    assert k8s_api.created_pods() == []


def test_pod_security_warn_submits_the_pod_and_logs_every_violation(
    k8s_api: K8sApi, run_dag: Callable[..., Any], tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    k8s_api.auto_complete("from-template", outcome="succeeded", logs=format_heartbeat_line(1) + "\n")
    dag, failures = _dag(
        "tg_dropin_warn",
        k8s_api,
        pod_template_file=_unsafe_template(tmp_path),
        pod_security="warn",
        name=None,
    )
    assert run_dag(dag) == {"train": "success"}, failures
    [pod] = k8s_api.created_pods()
    assert pod["spec"]["hostNetwork"] is True
    out, err = capfd.readouterr()
    assert "spec.volumes[host-root].hostPath='/'" in out + err


def test_image_comes_from_the_pod_template_when_not_given(
    k8s_api: K8sApi, run_dag: Callable[..., Any], tmp_path: Path
) -> None:
    """Regression: image=None with a template crashed with TypeError; a required image overrode the template's."""
    path = tmp_path / "pod.yaml"
    path.write_text(
        f"apiVersion: v1\nkind: Pod\nspec:\n  containers:\n    - name: base\n      image: {IMAGE}\n"
    )
    k8s_api.auto_complete("train-", outcome="succeeded", logs=format_heartbeat_line(1) + "\n")
    dag, failures = _dag("tg_dropin_template_image", k8s_api, pod_template_file=str(path))
    assert run_dag(dag) == {"train": "success"}, failures
    [pod] = k8s_api.created_pods()
    assert pod["spec"]["containers"][0]["image"] == IMAGE
    assert pod["metadata"]["annotations"]["training-guard.io/image-digest"] == DIGEST


def test_default_args_reach_the_pod_and_the_task(k8s_api: K8sApi, run_dag: Callable[..., Any]) -> None:
    """Regression: default_args={"retries": 7, ...} were silently replaced by the guard's defaults."""
    k8s_api.auto_complete("train-", outcome="succeeded", logs=format_heartbeat_line(1) + "\n")
    dag, failures = _dag(
        "tg_dropin_default_args",
        k8s_api,
        image=IMAGE,
        default_args={"termination_grace_period": 45, "active_deadline_seconds": 3600},
    )
    assert run_dag(dag) == {"train": "success"}, failures
    [pod] = k8s_api.created_pods()
    assert pod["spec"]["terminationGracePeriodSeconds"] == 45
    assert pod["spec"]["activeDeadlineSeconds"] == 3600


def _failed_remote_pod(name: str) -> k8s.V1Pod:
    return k8s.V1Pod(
        metadata=k8s.V1ObjectMeta(name=name, namespace="default"),
        status=k8s.V1PodStatus(
            phase="Failed",
            container_statuses=[
                k8s.V1ContainerStatus(
                    name="base",
                    image=IMAGE,
                    image_id=IMAGE,
                    ready=False,
                    restart_count=0,
                    state=k8s.V1ContainerState(
                        terminated=k8s.V1ContainerStateTerminated(
                            exit_code=3, reason="Error", message="loss is NaN at step 1200"
                        )
                    ),
                )
            ],
        ),
    )


@pytest.mark.parametrize("log_pod_spec_on_failure", [True, False])
def test_failure_message_keeps_exit_code_termination_message_and_kpo_text_when_the_pod_is_gone(
    k8s_api: K8sApi, log_pod_spec_on_failure: bool
) -> None:
    """Regression: the pod was already deleted (404 on re-read), the guard diagnosed the request pod
    (no status) and replaced KPO's message with 'unknown ... pod phase unknown'."""
    from airflow.sdk.exceptions import AirflowException

    from airflow_training_guard.operators.training_pod import GuardedTrainingPodOperator

    op = GuardedTrainingPodOperator(
        task_id="train",
        image=IMAGE,
        namespace="default",
        expected_runtime="10m",
        kubernetes_conn_id=k8s_api.airflow_conn_id,
        log_pod_spec_on_failure=log_pod_spec_on_failure,
    )
    request = k8s.V1Pod(metadata=k8s.V1ObjectMeta(name="train-gone", namespace="default"))
    with pytest.raises(AirflowException) as raised:
        op.cleanup(pod=request, remote_pod=_failed_remote_pod("train-gone"))  # never existed: 404s
    message = str(raised.value)
    assert "nonzero_exit" in message and "exited with code 3" in message, message
    assert "loss is NaN at step 1200" in message
    assert "Pod train-gone returned a failure." in message
    assert ("remote_pod: " in message) is log_pod_spec_on_failure


def test_failure_message_redacts_a_token_the_program_wrote_in_its_termination_message(
    k8s_api: K8sApi,
) -> None:
    """A program that wrote its Hub token into its termination message put it into the exception text."""
    from airflow.sdk.exceptions import AirflowException

    from airflow_training_guard.operators.training_pod import GuardedTrainingPodOperator

    op = GuardedTrainingPodOperator(
        task_id="train",
        image=IMAGE,
        namespace="default",
        expected_runtime="10m",
        kubernetes_conn_id=k8s_api.airflow_conn_id,
    )
    remote = _failed_remote_pod("train-gone")
    terminated = remote.status.container_statuses[0].state.terminated
    terminated.message = "loss is NaN; the Hub said 401 to Authorization: Bearer hf_abcdefghijklmnop1234"
    request = k8s.V1Pod(metadata=k8s.V1ObjectMeta(name="train-gone", namespace="default"))
    with pytest.raises(AirflowException) as raised:
        op.cleanup(pod=request, remote_pod=remote)
    assert "hf_abcdefghijklmnop1234" not in str(raised.value)
    assert "loss is NaN" in str(raised.value) and "exited with code 3" in str(raised.value)
