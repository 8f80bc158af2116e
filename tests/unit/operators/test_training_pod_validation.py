"""GuardedTrainingPodOperator rejects unsafe training pods when the DAG is parsed."""

from __future__ import annotations

from datetime import timedelta

import pytest

from airflow_training_guard.exceptions import GuardConfigError
from airflow_training_guard.operators.training_pod import GuardedTrainingPodOperator

DIGEST = "sha256:" + "a" * 64
PINNED = f"registry.example.com:5000/ml/trainer@{DIGEST}"


def make(**kwargs) -> GuardedTrainingPodOperator:
    kwargs.setdefault("task_id", "train")
    kwargs.setdefault("image", PINNED)
    kwargs.setdefault("expected_runtime", "2h")
    return GuardedTrainingPodOperator(**kwargs)


def test_moving_tag_is_rejected_with_how_to_get_the_digest() -> None:
    """A patch release behind ':latest' silently changed preprocessing for a week."""
    with pytest.raises(
        GuardConfigError, match=r"acme/train:latest.*not pinned.*crane digest acme/train:latest"
    ):
        make(image="acme/train:latest")


def test_pinned_image_is_accepted_and_its_digest_recorded() -> None:
    op = make()
    assert op.image_reference is not None
    assert op.image_reference.digest == DIGEST


def test_unpinned_opt_out_is_allowed_for_development() -> None:
    op = make(image="acme/train:dev", allow_unpinned_image=True)
    assert op.image_reference is not None
    assert not op.image_reference.is_pinned


def test_cluster_setting_forbids_the_unpinned_opt_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__TRAINING_GUARD__FORBID_UNPINNED_IMAGES", "True")
    with pytest.raises(GuardConfigError, match="forbid_unpinned_images"):
        make(image="acme/train:dev", allow_unpinned_image=True)


def test_templated_image_is_checked_when_rendered_not_at_parse_time() -> None:
    op = make(image="{{ var.value.trainer_image }}")
    assert op.image_reference is None


def test_hard_deadline_becomes_active_deadline_seconds_and_execution_timeout() -> None:
    op = make(expected_runtime="2h")
    assert op.active_deadline_seconds == int(timedelta(hours=2, minutes=36).total_seconds())
    assert op.execution_timeout is not None
    assert op.execution_timeout > timedelta(hours=2, minutes=36)


def test_active_deadline_shorter_than_runtime_plus_buffer_is_rejected() -> None:
    with pytest.raises(
        GuardConfigError, match=r"active_deadline_seconds=3600 is shorter than the hard deadline 2h36m"
    ):
        make(active_deadline_seconds=3600)


def test_gpus_set_equal_requests_and_limits_and_tolerate_the_gpu_taint() -> None:
    op = make(gpus=4)
    assert op.container_resources.limits["nvidia.com/gpu"] == "4"
    assert op.container_resources.requests["nvidia.com/gpu"] == "4"
    assert any(t.key == "nvidia.com/gpu" and t.operator == "Exists" for t in op.tolerations)


def test_gpu_count_given_twice_and_differently_is_rejected() -> None:
    from kubernetes.client import models as k8s

    resources = k8s.V1ResourceRequirements(limits={"nvidia.com/gpu": "2", "memory": "16Gi"})
    with pytest.raises(GuardConfigError, match=r"contradicts gpus=4"):
        make(gpus=4, container_resources=resources)


@pytest.mark.parametrize("bad", [-1, True, 1.5])
def test_invalid_gpu_count_is_rejected(bad: object) -> None:
    with pytest.raises(GuardConfigError):
        make(gpus=bad)


def test_safe_pod_defaults_run_as_non_root_without_privilege_escalation() -> None:
    pod = make(namespace="default").build_pod_request_obj(None, dry_run=True)
    assert pod.spec.security_context["runAsNonRoot"] is True
    [container] = pod.spec.containers
    assert container.security_context["allowPrivilegeEscalation"] is False
    assert container.security_context["capabilities"] == {"drop": ["ALL"]}


def test_explicit_security_context_is_kept_as_kpo_keeps_it_and_defaults_fill_the_rest() -> None:
    op = make(namespace="default", security_context={"runAsUser": 1000})
    assert op.security_context == {"runAsUser": 1000}
    pod = op.build_pod_request_obj(None, dry_run=True)
    assert pod.spec.security_context == {
        "runAsUser": 1000,
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def test_kueue_queue_name_becomes_the_local_queue_label() -> None:
    op = make(kueue_queue_name="team-a", labels={"team": "a"})
    assert op.labels["kueue.x-k8s.io/queue-name"] == "team-a"
    assert op.labels["team"] == "a"


def test_checkpoint_template_without_partition_key_is_rejected() -> None:
    with pytest.raises(GuardConfigError, match="partition_key"):
        make(checkpoint_path_template="{dag_id}/{task_id}")


def test_retries_never_create_duplicate_pods_by_default() -> None:
    op = make()
    assert op.reattach_on_restart is True
    assert op.on_finish_action.value == "delete_pod"


def test_every_kubernetes_pod_operator_parameter_still_works() -> None:
    op = make(
        namespace="ml",
        cmds=["python"],
        arguments=["train.py"],
        node_selector={"pool": "a100"},
        get_logs=False,
    )
    assert op.namespace == "ml"
    assert op.arguments == ["train.py"]
    assert op.node_selector == {"pool": "a100"}


def test_worker_output_dir_without_the_containers_output_dir_is_rejected() -> None:
    with pytest.raises(
        GuardConfigError, match=r"worker_output_dir='/mnt/models' needs output_dir .*e\.g\. output_dir="
    ):
        make(worker_output_dir="/mnt/models")


def test_worker_output_dir_with_do_xcom_push_is_rejected_naming_both() -> None:
    with pytest.raises(
        GuardConfigError, match=r"worker_output_dir and do_xcom_push=True both set the task's return"
    ):
        make(output_dir="/models", worker_output_dir="/mnt/models", do_xcom_push=True)
