"""``gpu=``/``checkpoint=`` objects and the flat arguments are two spellings of the same pod.

The flat arguments stay the documented way; an object groups them so several tasks can share one
(``gpu=A100_X8``). Given both for one group, in the call or through ``default_args``, the DAG fails
to parse with an error that names both.
"""

from __future__ import annotations

import warnings
from typing import Any

import pendulum
import pytest

from airflow_training_guard.exceptions import GuardConfigError
from airflow_training_guard.operators.training_pod import (
    CheckpointSettings,
    GpuSettings,
    GuardedTrainingPodOperator,
)

PINNED = "registry.example.com/ml/trainer@sha256:" + "a" * 64
START = pendulum.datetime(2026, 11, 1, tz="UTC")


def make(default_args: dict[str, Any] | None = None, **kwargs: Any) -> GuardedTrainingPodOperator:
    from airflow.sdk import DAG

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with DAG(dag_id="settings", schedule=None, start_date=START, default_args=default_args or {}):
            return GuardedTrainingPodOperator(
                task_id="train", image=PINNED, expected_runtime="2h", namespace="ml", **kwargs
            )


def pod_of(op: GuardedTrainingPodOperator) -> dict[str, Any]:
    from kubernetes.client import ApiClient

    pod = ApiClient().sanitize_for_serialization(op.build_pod_request_obj(None, dry_run=True))
    pod["metadata"].pop("name")  # random suffix
    return dict(pod)


def test_gpu_settings_object_builds_the_same_pod_as_the_flat_arguments() -> None:
    flat = make(gpus=4, gpu_resource="amd.com/gpu", gpu_fragmentation="reject", check_gpu_quota=False)
    grouped = make(gpu=GpuSettings(gpus=4, resource="amd.com/gpu", fragmentation="reject", check_quota=False))
    assert flat.gpu == grouped.gpu
    assert pod_of(flat) == pod_of(grouped)


def test_checkpoint_settings_object_builds_the_same_pod_as_the_flat_arguments() -> None:
    flat = make(
        checkpoint_claim_name="training-checkpoints", checkpoint_root="/ckpt", checkpoint_every_steps=25
    )
    grouped = make(
        checkpoint=CheckpointSettings(claim_name="training-checkpoints", root="/ckpt", every_steps=25)
    )
    assert flat.checkpoint_policy == grouped.checkpoint_policy
    assert pod_of(flat) == pod_of(grouped)
    [container] = pod_of(grouped)["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert (env["TRAINING_GUARD_CHECKPOINT_DIR"], env["TRAINING_GUARD_CHECKPOINT_EVERY"]) == ("/ckpt", "25")


def test_one_settings_object_serves_many_tasks_through_default_args() -> None:
    shared = GpuSettings(gpus=8, check_node_inventory=False)
    op = make(default_args={"gpu": shared})
    assert op.gpu is shared
    assert op.container_resources.limits["nvidia.com/gpu"] == "8"


@pytest.mark.parametrize("where", ["call", "default_args"])
def test_flat_gpu_arguments_and_a_gpu_object_are_refused_naming_both(where: str) -> None:
    """A flat ``gpus=`` in default_args would otherwise silently lose to (or beat) the task's object."""
    call: dict[str, Any] = {"gpu": GpuSettings(gpus=8)}
    defaults: dict[str, Any] = {}
    (call if where == "call" else defaults)["gpus"] = 4
    with pytest.raises(
        GuardConfigError, match=r"^gpus=4 and gpu=GpuSettings\(gpus=8.*both set the GpuSettings"
    ):
        make(default_args=defaults, **call)


def test_flat_checkpoint_arguments_and_a_checkpoint_object_are_refused_naming_both() -> None:
    with pytest.raises(
        GuardConfigError,
        match=r"^checkpoint_keep_last=5 and checkpoint=CheckpointSettings\(.*replace\(checkpoint, keep_last=5\)",
    ):
        make(checkpoint=CheckpointSettings(claim_name="ckpt"), checkpoint_keep_last=5)


def test_a_bad_value_in_a_flat_argument_names_the_argument() -> None:
    with pytest.raises(GuardConfigError, match=r"^gpu_fragmentation='often' \(GpuSettings\.fragmentation\)"):
        make(gpus=3, gpu_fragmentation="often")
    with pytest.raises(GuardConfigError, match=r"^checkpoint_claim_name='My Claim'"):
        make(checkpoint_claim_name="My Claim")


@pytest.mark.parametrize("kind", [GpuSettings, CheckpointSettings])
def test_every_settings_field_has_exactly_one_flat_operator_parameter(kind: type) -> None:
    """The operator looks its flat arguments up by the ARGUMENTS table; a field missing there is unreachable."""
    import dataclasses
    import inspect

    parameters = inspect.signature(GuardedTrainingPodOperator.__init__).parameters
    assert sorted(kind.ARGUMENTS.values()) == sorted(f.name for f in dataclasses.fields(kind))
    for name in kind.ARGUMENTS:
        assert parameters[name].default is None, f"{name} must default to None (= not given)"


def test_former_checkpoint_mount_path_still_works_with_a_deprecation_warning() -> None:
    """``checkpoint_root`` is the one name for the checkpoint root (local, backfill and pod operators)."""
    from airflow.exceptions import AirflowProviderDeprecationWarning
    from airflow.sdk import DAG

    for where in ("call", "default_args"):
        given = {"checkpoint_mount_path": "/ckpt"}
        with (
            pytest.warns(
                AirflowProviderDeprecationWarning, match="checkpoint_mount_path is renamed checkpoint_root"
            ),
            DAG(
                dag_id=f"renamed_{where}",
                schedule=None,
                start_date=START,
                default_args=given if where != "call" else {},
            ),
        ):
            op = GuardedTrainingPodOperator(
                task_id="train",
                image=PINNED,
                expected_runtime="2h",
                namespace="ml",
                **(given if where == "call" else {}),
            )
        assert op.checkpoint.root == "/ckpt", where
        mounts = pod_of(op)["spec"]["containers"][0]["volumeMounts"]
        assert any(mount["mountPath"] == "/ckpt" for mount in mounts), (where, mounts)


def test_both_names_of_the_checkpoint_root_are_refused_naming_both() -> None:
    with pytest.raises(GuardConfigError, match="checkpoint_mount_path='/a' and checkpoint_root='/b'"):
        make(checkpoint_mount_path="/a", checkpoint_root="/b")
