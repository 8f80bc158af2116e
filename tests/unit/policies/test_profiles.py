"""Profiles: "safe" is the default and reliability first, "fast" is an explicit opt-in."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from airflow_training_guard.exceptions import GuardConfigError
from airflow_training_guard.policies.profiles import (
    DEFAULT_PROFILE,
    FAST,
    PROFILES,
    SAFE,
    GuardProfile,
    get_profile,
)
from airflow_training_guard.policies.timeouts import DEFAULT_BUFFER

pytestmark = pytest.mark.unit


def test_safe_is_the_default_profile() -> None:
    assert DEFAULT_PROFILE == "safe"
    assert get_profile(DEFAULT_PROFILE) is SAFE


def test_safe_profile_values() -> None:
    assert dataclasses.astuple(SAFE)[2:] == (50, 3, 0.30, timedelta(minutes=10), 5, 3, "fail")
    assert SAFE.name == "safe"
    assert SAFE.description


def test_fast_profile_values() -> None:
    assert dataclasses.astuple(FAST)[2:] == (500, 1, 0.30, timedelta(minutes=30), 0, 1, "restart")
    assert FAST.name == "fast"
    assert FAST.description


@pytest.mark.parametrize("profile", [SAFE, FAST], ids=lambda p: p.name)
def test_no_profile_goes_below_the_thirty_percent_buffer(profile: GuardProfile) -> None:
    """A "fast" deadline of runtime + 10% killed healthy runs on every slow night."""
    assert profile.timeout_buffer >= DEFAULT_BUFFER


def test_safe_stops_on_corrupt_checkpoints_instead_of_restarting() -> None:
    """A silent restart from step 0 after corrupt checkpoints cost 14 GPU-hours before anyone noticed."""
    assert SAFE.on_corrupt_checkpoints == "fail"


def test_safe_runs_a_smoke_run_and_fast_does_not() -> None:
    assert SAFE.smoke_run_steps > 0
    assert FAST.smoke_run_steps == 0


def test_profiles_registry_holds_exactly_safe_and_fast_and_is_read_only() -> None:
    assert dict(PROFILES) == {"safe": SAFE, "fast": FAST}
    with pytest.raises(TypeError):
        PROFILES["yolo"] = FAST  # type: ignore[index]


@pytest.mark.parametrize(
    ("name", "expected"), [("safe", SAFE), ("fast", FAST), (" Fast ", FAST), ("SAFE", SAFE)]
)
def test_get_profile_by_name(name: str, expected: GuardProfile) -> None:
    assert get_profile(name) is expected


def test_get_profile_passes_a_custom_profile_through() -> None:
    custom = dataclasses.replace(SAFE, name="nightly", checkpoint_every_steps=20)
    assert get_profile(custom) is custom


def test_unknown_profile_name_lists_the_known_ones() -> None:
    with pytest.raises(
        GuardConfigError, match=r"profile 'fsat' is not known; use one of 'fast', 'safe' \(default 'safe'\)"
    ):
        get_profile("fsat")


def test_non_string_profile_is_rejected() -> None:
    with pytest.raises(GuardConfigError, match=r"profile None is a NoneType; pass a profile name"):
        get_profile(None)  # type: ignore[arg-type]


def test_profiles_are_immutable() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        SAFE.retries = 0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"name": ""}, r"profile name '' is empty"),
        (
            {"checkpoint_every_steps": 0},
            r"profile 'custom': checkpoint_every_steps 0 must be an integer >= 1",
        ),
        ({"checkpoint_keep_last": 0}, r"checkpoint_keep_last 0 must be an integer >= 1"),
        ({"smoke_run_steps": -1}, r"smoke_run_steps -1 must be an integer >= 0"),
        ({"retries": -1}, r"retries -1 must be an integer >= 0"),
        ({"retries": True}, r"retries True must be an integer"),
        ({"timeout_buffer": -0.5}, r"timeout_buffer -0.5 is negative"),
        ({"timeout_buffer": 30}, r"timeout_buffer 30 is larger than 10"),
        ({"stall_after": timedelta(0)}, r"stall_after 0s must be a positive timedelta"),
        ({"stall_after": "10m"}, r"stall_after '10m' must be a positive timedelta"),
        ({"on_corrupt_checkpoints": "ignore"}, r"on_corrupt_checkpoints 'ignore' is not valid; use 'fail'"),
    ],
)
def test_bad_custom_profiles_are_rejected(changes: dict[str, object], match: str) -> None:
    with pytest.raises(GuardConfigError, match=match):
        dataclasses.replace(SAFE, **{"name": "custom", **changes})  # type: ignore[arg-type]


def test_stall_detection_can_be_disabled_in_a_custom_profile() -> None:
    assert dataclasses.replace(FAST, name="no-stall", stall_after=None).stall_after is None
