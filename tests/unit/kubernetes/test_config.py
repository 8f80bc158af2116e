"""CheckpointSettings and GpuSettings validate themselves when built, naming the value and the fix."""

from __future__ import annotations

import dataclasses

import pytest

from airflow_training_guard.exceptions import GuardConfigError
from airflow_training_guard.kubernetes.config import (
    CheckpointSettings,
    GpuSettings,
    check_output_dirs,
    settings_from_arguments,
)
from airflow_training_guard.policies.gpus import FragmentationPolicy, NodeShape
from airflow_training_guard.policies.profiles import FAST, SAFE


def test_checkpoint_settings_without_steps_take_the_profiles_values() -> None:
    settings = CheckpointSettings(claim_name="training-checkpoints")
    assert (settings.policy(SAFE).every_steps, settings.policy(SAFE).keep_last) == (50, 3)
    assert (settings.policy(FAST).every_steps, settings.policy(FAST).keep_last) == (500, 1)
    explicit = CheckpointSettings(every_steps=7, keep_last=2).policy(SAFE)
    assert (explicit.every_steps, explicit.keep_last) == (7, 2)


def test_checkpoint_location_names_the_claim_or_an_empty_dir() -> None:
    assert CheckpointSettings(claim_name="ckpt").location("d/t/k") == "ckpt:d/t/k"
    assert CheckpointSettings().location("d/t/k") == "emptyDir:d/t/k"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (
            {"claim_name": "Training_Checkpoints"},
            r"checkpoint_claim_name='Training_Checkpoints' \(Checkpoint",
        ),
        ({"claim_name": ""}, r"is not a PersistentVolumeClaim name; use lower-case"),
        ({"root": "checkpoints"}, r"checkpoint_root='checkpoints' .* must be an absolute"),
        ({"root": "/"}, r"other than '/'"),
        ({"every_steps": 0}, r"checkpoint_every_steps=0 \(CheckpointSettings\.every_steps\) must be"),
        ({"keep_last": True}, r"checkpoint_keep_last=True .* must be an integer >= 1, or None"),
        ({"path_template": "{dag_id}/{task_id}"}, r"does not contain \{partition_key\}"),
    ],
)
def test_bad_checkpoint_settings_are_refused_naming_the_argument(
    kwargs: dict[str, object], match: str
) -> None:
    with pytest.raises(GuardConfigError, match=match):
        CheckpointSettings(**kwargs)  # type: ignore[arg-type]


def test_gpu_settings_coerce_the_fragmentation_policy_and_the_shapes() -> None:
    shape = NodeShape("gpu-a", gpus_allocatable=8, gpus_free=8)
    settings = GpuSettings(gpus=4, fragmentation="reject", node_shapes=[shape])
    assert settings.fragmentation_policy is FragmentationPolicy.REJECT
    assert settings.node_shapes == (shape,)
    assert settings.describe() == "4 nvidia.com/gpu"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"gpus": True}, r"gpus True is a bool, not an integer"),
        ({"gpus": -1}, r"gpus -1 is negative"),
        ({"resource": ""}, r"gpu_resource='' \(GpuSettings\.resource\) must be an extended resource name"),
        (
            {"fragmentation": "sometimes"},
            r"gpu_fragmentation='sometimes' \(GpuSettings\.fragmentation\) is not",
        ),
        ({"node_shapes": [{"name": "gpu-a"}]}, r"node_shapes=.* must be a list of NodeShape values"),
        ({"check_quota": "yes"}, r"check_gpu_quota='yes' \(GpuSettings\.check_quota\) must be True or False"),
    ],
)
def test_bad_gpu_settings_are_refused_naming_the_argument(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(GuardConfigError, match=match):
        GpuSettings(**kwargs)  # type: ignore[arg-type]


def test_flat_arguments_build_the_settings_and_none_means_not_given() -> None:
    built = settings_from_arguments(
        GpuSettings, None, {"gpus": 2, "gpu_resource": None, "check_gpu_quota": False}, argument="gpu"
    )
    assert built == GpuSettings(gpus=2, check_quota=False)


def test_an_object_and_flat_arguments_for_the_same_group_are_refused_naming_both() -> None:
    with pytest.raises(
        GuardConfigError,
        match=r"^gpus=4 and gpu=GpuSettings\(gpus=8.* both set the GpuSettings .*"
        r"e\.g\. gpu=dataclasses\.replace\(gpu, gpus=4\)",
    ):
        settings_from_arguments(GpuSettings, GpuSettings(gpus=8), {"gpus": 4}, argument="gpu")


def test_an_object_of_the_wrong_kind_is_refused() -> None:
    with pytest.raises(
        GuardConfigError, match=r"^checkpoint=\{'claim_name': 'x'\} is a dict, not a Checkpoint"
    ):
        settings_from_arguments(CheckpointSettings, {"claim_name": "x"}, {}, argument="checkpoint")


def test_settings_are_frozen_values() -> None:
    settings = CheckpointSettings(claim_name="ckpt")
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.claim_name = "other"  # type: ignore[misc]
    assert settings == CheckpointSettings(claim_name="ckpt")


def test_worker_output_dir_needs_the_containers_output_dir_and_no_xcom_push() -> None:
    check_output_dirs("/models", "/mnt/models", do_xcom_push=False)
    with pytest.raises(GuardConfigError, match=r"worker_output_dir='/mnt/models' needs output_dir"):
        check_output_dirs(None, "/mnt/models", do_xcom_push=False)
    with pytest.raises(GuardConfigError, match=r"worker_output_dir and do_xcom_push=True both set"):
        check_output_dirs("/models", "/mnt/models", do_xcom_push=True)
