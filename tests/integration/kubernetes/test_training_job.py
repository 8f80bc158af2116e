"""GuardedTrainingJobOperator: N ranks as one Indexed Job against the emulator and a Job controller.

Assertions are on what the API server received and holds (the Job, its Service, the rank pods)
and on the exception a real DAG run ends with.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pendulum
import pytest

from airflow_training_guard.kubernetes.pod_security import restricted_violations
from airflow_training_guard.runtime.heartbeat import format_heartbeat_line
from tests.integration.kubernetes.job_controller import JobController
from tests.integration.kubernetes.k8s_api import K8sApi

DIGEST = "sha256:" + "ab" * 32
IMAGE = f"registry.example.com:5000/ml/trainer@{DIGEST}"
START = pendulum.datetime(2026, 11, 1, tz="UTC")


@pytest.fixture
def jobs(k8s_api: K8sApi) -> Iterator[JobController]:
    with JobController(k8s_api) as controller:
        yield controller


def _dag(dag_id: str, k8s_api: K8sApi, **kwargs: Any) -> tuple[Any, list[BaseException]]:
    from airflow.sdk import DAG

    from airflow_training_guard.operators.training_job import GuardedTrainingJobOperator

    failures: list[BaseException] = []
    params: dict[str, Any] = {
        "task_id": "train",
        "name": "ddp",
        "image": IMAGE,
        "namespace": "default",
        "kubernetes_conn_id": k8s_api.airflow_conn_id,
        "expected_runtime": "10m",
        "partition_key": "berlin|2026-11-01",
        "ranks": 3,
        "job_poll_interval": "1s",
        "retries": 0,
        "checkpoint_claim_name": "training-checkpoints",
        "on_failure_callback": lambda context: failures.append(context["exception"]),
        **kwargs,
    }
    with DAG(dag_id=dag_id, schedule=None, start_date=START) as dag:
        GuardedTrainingJobOperator(**params)
    return dag, failures


def _objects(k8s_api: K8sApi, plural: str) -> list[dict[str, Any]]:
    return [r.body for r in k8s_api.requests if r.method == "POST" and r.path.endswith(f"/{plural}")]


def test_ranks_run_as_an_indexed_gang_with_rendezvous_and_every_pod_guard(
    k8s_api: K8sApi, jobs: JobController, run_dag: Callable[..., Any]
) -> None:
    k8s_api.auto_complete("ddp", outcome="succeeded", logs=format_heartbeat_line(5) + "\n")
    dag, failures = _dag("tg_job_gang", k8s_api)
    assert run_dag(dag) == {"train": "success"}, failures

    [job] = _objects(k8s_api, "jobs")
    [service] = _objects(k8s_api, "services")
    name = job["metadata"]["name"]
    spec = job["spec"]
    assert (spec["completionMode"], spec["completions"], spec["parallelism"], spec["backoffLimit"]) == (
        "Indexed",
        3,
        3,
        0,
    )
    assert spec["activeDeadlineSeconds"] == 780
    assert service["spec"]["clusterIP"] == "None" and service["spec"]["publishNotReadyAddresses"] is True
    pod_spec = spec["template"]["spec"]
    assert pod_spec["subdomain"] == name
    [container] = pod_spec["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["PET_MASTER_ADDR"]["value"] == f"{name}-0.{name}.default.svc"
    assert env["PET_NNODES"]["value"] == "3"
    assert "job-completion-index" in env["PET_NODE_RANK"]["valueFrom"]["fieldRef"]["fieldPath"]
    assert env["TRAINING_GUARD_PARTITION_KEY"]["value"] == "berlin|2026-11-01"
    assert restricted_violations({"spec": pod_spec}) == []
    # every rank ran; after success nothing is left behind
    assert len(jobs.created[name]) == 3
    k8s_api.wait_for(lambda: not k8s_api.pods(), timeout=10)


def test_a_lost_rank_fails_the_attempt_retryably_and_takes_every_rank_down(
    k8s_api: K8sApi, jobs: JobController, run_dag: Callable[..., Any]
) -> None:
    """A preempted rank left the others blocked in a collective; now the whole gang goes and retries."""
    from airflow.sdk.exceptions import AirflowFailException

    k8s_api.auto_complete("ddp-x", outcome="never", logs=format_heartbeat_line(5) + "\n")
    k8s_api.auto_complete("ddp-x-1", outcome="evicted", after=1.0)  # rank 1 only
    dag, failures = _dag("tg_job_lost_rank", k8s_api, name="ddp-x", random_name_suffix=False)
    assert run_dag(dag) == {"train": "failed"}
    [error] = failures
    assert not isinstance(error, AirflowFailException)
    message = str(error)
    assert "rank 1 of 3 was lost" in message and "retry starts them all again" in message, message
    deleted = [r.path for r in k8s_api.requests if r.method == "DELETE"]
    assert any(p.endswith("/jobs/ddp-x") for p in deleted) and any(
        p.endswith("/services/ddp-x") for p in deleted
    )
    k8s_api.wait_for(lambda: not k8s_api.pods(), timeout=10)  # the other two ranks went with the Job


def test_a_retry_removes_the_job_an_earlier_attempt_left(
    k8s_api: K8sApi, jobs: JobController, run_dag: Callable[..., Any]
) -> None:
    """A worker killed mid-run left its Job and ranks; the retry must not run a second gang beside it."""
    import kubernetes.client

    batch = kubernetes.client.BatchV1Api(k8s_api.core_v1().api_client)

    def leave_a_job_behind(context: Any) -> None:
        # What a killed earlier attempt of this task instance leaves: a Job with its labels.
        labels = context["task"]._job_labels(context)
        batch.create_namespaced_job(
            "default",
            {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "metadata": {"name": "ddp-old", "labels": labels},
                "spec": {
                    "suspend": True,
                    "completions": 3,
                    "template": {"metadata": {}, "spec": {"containers": [{"name": "base", "image": IMAGE}]}},
                },
            },
        )

    k8s_api.auto_complete("ddp", outcome="succeeded", logs=format_heartbeat_line(5) + "\n")
    dag, failures = _dag("tg_job_leftover", k8s_api, on_execute_callback=leave_a_job_behind)
    assert run_dag(dag) == {"train": "success"}, failures
    deleted = [r.path for r in k8s_api.requests if r.method == "DELETE" and "/jobs/" in r.path]
    assert any(path.endswith("/jobs/ddp-old") for path in deleted), deleted
    assert (
        deleted.index(next(p for p in deleted if p.endswith("/jobs/ddp-old"))) == 0
    )  # before the new gang ends


def test_a_stalled_rank_fails_the_attempt_naming_the_rank(
    k8s_api: K8sApi, jobs: JobController, run_dag: Callable[..., Any]
) -> None:
    k8s_api.auto_complete("ddp", outcome="never", logs="")
    dag, failures = _dag(
        "tg_job_stall", k8s_api, stall_after="2s", startup_timeout="1s", heartbeat_log_interval="1s"
    )
    assert run_dag(dag) == {"train": "failed"}
    [error] = failures
    assert "stalled" in str(error) and "rank 0" in str(error)
    k8s_api.wait_for(lambda: not k8s_api.pods(), timeout=10)


def test_kueue_queue_submits_the_gang_suspended_with_the_queue_label() -> None:
    """The operator's own Job (not a hand-built one) carries Kueue's label and starts suspended."""
    from airflow_training_guard.operators.training_job import GuardedTrainingJobOperator

    op = GuardedTrainingJobOperator(
        task_id="t", image=IMAGE, expected_runtime="1h", ranks=2, namespace="default", kueue_queue_name="ml"
    )
    job, service = op.build_gang(None, labels={"task_id": "t"}, dry_run=True)
    assert job.spec.suspend is True
    assert job.metadata.labels["kueue.x-k8s.io/queue-name"] == "ml"
    assert job.spec.template.metadata.labels["kueue.x-k8s.io/queue-name"] == "ml"
    assert service.spec.selector == {"training-guard.io/job": job.metadata.name}
    without = GuardedTrainingJobOperator(
        task_id="u", image=IMAGE, expected_runtime="1h", ranks=2, namespace="default"
    )
    assert without.build_gang(None, labels={}, dry_run=True)[0].spec.suspend is None


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"ranks": 0}, r"ranks=0 must be an integer from 1"),
        ({"ranks": True}, r"ranks=True must be an integer"),
        ({"ranks": 2, "deferrable": True}, r"deferrable=True is not available"),
        ({"ranks": 2, "do_xcom_push": True}, r"do_xcom_push=True is not available"),
        ({"ranks": 2, "rendezvous_port": 70000}, r"rendezvous_port=70000"),
    ],
)
def test_bad_job_settings_are_refused_when_the_dag_is_parsed(kwargs: dict[str, Any], match: str) -> None:
    from airflow_training_guard.exceptions import GuardConfigError
    from airflow_training_guard.operators.training_job import GuardedTrainingJobOperator

    with pytest.raises(GuardConfigError, match=match):
        GuardedTrainingJobOperator(task_id="t", image=IMAGE, expected_runtime="1h", **kwargs)


def test_a_straggling_rank_is_named_with_its_rates_and_restart_ends_the_attempt(
    k8s_api: K8sApi, jobs: JobController, run_dag: Callable[..., Any]
) -> None:
    """One slow node held every rank at each all-reduce; the same rule as the local launcher names it."""
    import contextlib
    import threading

    from airflow.sdk.exceptions import AirflowFailException

    k8s_api.auto_complete("ddp-s", outcome="never", logs="")
    stop = threading.Event()

    def progress() -> None:  # ranks 0 and 2 do 10 steps per tick, rank 1 does 2
        step = {0: 0, 1: 0, 2: 0}
        while not stop.wait(0.3):
            for rank in step:
                step[rank] += 2 if rank == 1 else 10
                with contextlib.suppress(Exception):  # the pod is not created yet, or already gone
                    k8s_api.set_logs(
                        f"ddp-s-{rank}", format_heartbeat_line(step[rank], rank=rank, node=f"node-{rank}")
                    )

    feeder = threading.Thread(target=progress, daemon=True)
    feeder.start()
    try:
        dag, failures = _dag(
            "tg_job_straggler",
            k8s_api,
            name="ddp-s",
            random_name_suffix=False,
            stall_after=False,
            straggler_policy={"fraction": 0.5, "window": "2s", "rate_window": 1.0, "action": "restart"},
        )
        assert run_dag(dag) == {"train": "failed"}
    finally:
        stop.set()
    [error] = failures
    assert not isinstance(error, AirflowFailException)
    message = str(error)
    assert "rank 1 on node-1 is a straggler" in message, message
    assert "retry resumes them from the newest checkpoint" in message
    k8s_api.wait_for(lambda: not k8s_api.pods(), timeout=10)
