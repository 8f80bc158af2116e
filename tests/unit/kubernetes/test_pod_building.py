"""Pod-in/pod-out helpers, tested without building an operator."""

from __future__ import annotations

import pytest
from kubernetes.client import models as k8s

from airflow_training_guard.exceptions import GuardConfigError
from airflow_training_guard.kubernetes import pod_building
from airflow_training_guard.policies.checkpoints import CheckpointPolicy


def make_pod() -> k8s.V1Pod:
    return k8s.V1Pod(
        metadata=k8s.V1ObjectMeta(name="p", annotations={"keep": "me"}),
        spec=k8s.V1PodSpec(
            init_containers=[k8s.V1Container(name="init", security_context={"runAsUser": 1000})],
            containers=[
                k8s.V1Container(name="base", env=[k8s.V1EnvVar(name="A", value="1")]),
                k8s.V1Container(name="airflow-xcom-sidecar"),
            ],
        ),
    )


def test_security_defaults_fill_every_container_and_keep_given_fields() -> None:
    pod = pod_building.with_security_defaults(make_pod())
    for container in [*pod.spec.init_containers, *pod.spec.containers]:
        assert container.security_context["allowPrivilegeEscalation"] is False
        assert container.security_context["capabilities"] == {"drop": ["ALL"]}
    assert pod.spec.init_containers[0].security_context["runAsUser"] == 1000
    assert pod.spec.security_context == {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}


def test_security_defaults_never_override_an_explicit_unsafe_value() -> None:
    pod = make_pod()
    pod.spec.containers[0].security_context = k8s.V1SecurityContext(allow_privilege_escalation=True)
    pod = pod_building.with_security_defaults(pod)
    assert pod.spec.containers[0].security_context["allowPrivilegeEscalation"] is True


def test_env_replaces_same_names_and_keeps_the_rest() -> None:
    pod = pod_building.with_env(make_pod(), "base", {"A": "2", "B": "3"})
    assert [(e.name, e.value) for e in pod.spec.containers[0].env] == [("A", "2"), ("B", "3")]


def test_missing_base_container_names_the_fix() -> None:
    with pytest.raises(GuardConfigError, match=r"no container named 'trainer'.*base_container_name"):
        pod_building.with_env(make_pod(), "trainer", {})


def test_checkpoint_volume_mounts_the_claims_sub_path() -> None:
    pod = pod_building.with_checkpoint_volume(
        make_pod(), "base", mount_path="/checkpoints", claim_name="ckpt", sub_path="d/t/k"
    )
    [volume] = pod.spec.volumes
    assert volume.persistent_volume_claim.claim_name == "ckpt"
    [mount] = pod.spec.containers[0].volume_mounts
    assert (mount.mount_path, mount.sub_path) == ("/checkpoints", "d/t/k")


@pytest.mark.parametrize("sub_path", ["../x", "/abs", "a/../b", ""])
def test_checkpoint_sub_path_outside_the_claim_is_refused(sub_path: str) -> None:
    with pytest.raises(GuardConfigError, match="not a relative path inside the claim"):
        pod_building.with_checkpoint_volume(
            make_pod(), "base", mount_path="/c", claim_name="ckpt", sub_path=sub_path
        )


def test_two_dags_never_share_a_checkpoint_sub_path_whatever_the_roots_spelling() -> None:
    """Regression: with checkpoint_mount_path='/mnt//checkpoints' the sub-path was cut one character
    short, so DAGs xa_ranker and ya_ranker both got 'a_ranker/train/berlin%7C2026-11-01'."""
    policy = CheckpointPolicy(root="/mnt//checkpoints")
    xa = policy.relative_dir(dag_id="xa_ranker", task_id="train", partition_key="berlin|2026-11-01")
    ya = policy.relative_dir(dag_id="ya_ranker", task_id="train", partition_key="berlin|2026-11-01")
    assert xa == "xa_ranker/train/berlin%7C2026-11-01"
    assert xa != ya
    assert policy.checkpoint_dir(dag_id="xa_ranker", task_id="train", partition_key="berlin|2026-11-01") == (
        "/mnt/checkpoints/" + xa
    )


@pytest.mark.parametrize("dag_id", ["..", "x..", "../x", "a/b"])
def test_sub_path_never_leaves_its_folder_whatever_the_dag_id(dag_id: str) -> None:
    relative = CheckpointPolicy(root="/c").relative_dir(dag_id=dag_id, task_id="t", partition_key="k")
    assert ".." not in relative.split("/") and not relative.startswith("/")
    assert len(relative.split("/")) == 3


def test_gpu_resources_set_requests_equal_limits_and_refuse_contradictions() -> None:
    given = k8s.V1ResourceRequirements(limits={"memory": "8Gi"})
    result = pod_building.gpu_resources(given, resource="nvidia.com/gpu", gpus=4)
    assert result.limits == {"memory": "8Gi", "nvidia.com/gpu": "4"}
    assert result.requests == {"nvidia.com/gpu": "4"}
    with pytest.raises(GuardConfigError, match="contradicts gpus=4"):
        pod_building.gpu_resources(
            k8s.V1ResourceRequirements(limits={"nvidia.com/gpu": "2"}), resource="nvidia.com/gpu", gpus=4
        )


def test_gpu_toleration_is_added_once() -> None:
    once = pod_building.gpu_tolerations(None, resource="nvidia.com/gpu")
    assert pod_building.gpu_tolerations(once, resource="nvidia.com/gpu") == once
    assert [t.key for t in once] == ["nvidia.com/gpu"]


def test_a_partition_key_object_reaches_the_pod_as_a_plain_string_kpo_can_yaml_dump() -> None:
    """KubernetesPodOperator logs ``yaml.safe_dump(pod.to_dict())`` before creating the pod; yaml's safe
    dumper refuses str subclasses, so a ``PartitionKey`` in env or annotations failed every attempt."""
    import yaml

    from airflow_training_guard.partitions.keys import PartitionKey

    key = PartitionKey("berlin|2026-11-20")
    pod = pod_building.with_annotations(
        pod_building.with_env(make_pod(), "base", {"TRAINING_GUARD_PARTITION_KEY": key}),
        {"partition-key": key},
    )
    dumped = yaml.safe_load(yaml.safe_dump(pod.to_dict()))
    assert dumped["metadata"]["annotations"]["training-guard.io/partition-key"] == "berlin|2026-11-20"
    env = {e["name"]: e["value"] for e in dumped["spec"]["containers"][0]["env"]}
    assert env["TRAINING_GUARD_PARTITION_KEY"] == "berlin|2026-11-20"
