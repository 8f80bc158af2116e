"""TimeoutPolicy: deadline = expected runtime + buffer, and every limit that could never work is rejected."""

from __future__ import annotations

import dataclasses
import math
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from airflow_training_guard.exceptions import GuardConfigError
from airflow_training_guard.policies.timeouts import DEFAULT_BUFFER, TimeoutPolicy

pytestmark = pytest.mark.unit


def test_default_deadline_is_expected_runtime_plus_thirty_percent() -> None:
    policy = TimeoutPolicy.build(expected_runtime="2h")
    assert policy.buffer == DEFAULT_BUFFER == 0.30
    assert policy.minimum_deadline == timedelta(hours=2, minutes=36)
    assert policy.hard_deadline == timedelta(hours=2, minutes=36)


def test_defaults_match_the_documented_values() -> None:
    policy = TimeoutPolicy(expected_runtime=timedelta(hours=1))
    assert policy.deadline is None
    assert policy.startup_timeout == timedelta(minutes=10)
    assert policy.stall_after == timedelta(minutes=15)
    assert policy.poll_interval == timedelta(seconds=5)


def test_build_and_constructor_defaults_agree() -> None:
    assert TimeoutPolicy.build(expected_runtime="1h") == TimeoutPolicy(expected_runtime=timedelta(hours=1))


def test_explicit_deadline_at_or_above_the_minimum_is_used() -> None:
    policy = TimeoutPolicy.build(expected_runtime="2h", deadline="4h")
    assert policy.hard_deadline == timedelta(hours=4)
    assert policy.minimum_deadline == timedelta(hours=2, minutes=36)
    exact = TimeoutPolicy.build(expected_runtime="2h", deadline="2h36m")
    assert exact.hard_deadline == timedelta(hours=2, minutes=36)


def test_deadline_shorter_than_runtime_plus_buffer_is_rejected() -> None:
    """A 2h job with a 2h timeout was killed at 99% every night."""
    with pytest.raises(
        GuardConfigError,
        match=(
            r"^deadline 2h is shorter than expected_runtime 2h plus the 30% buffer \(2h36m\); "
            r"set deadline >= 2h36m or lower expected_runtime$"
        ),
    ):
        TimeoutPolicy.build(expected_runtime="2h", deadline="2h")


def test_deadline_message_uses_the_configured_buffer() -> None:
    with pytest.raises(GuardConfigError, match=r"plus the 50% buffer \(1h30m\); set deadline >= 1h30m"):
        TimeoutPolicy.build(expected_runtime="1h", buffer=0.5, deadline="1h15m")


def test_zero_buffer_allows_deadline_equal_to_runtime() -> None:
    policy = TimeoutPolicy.build(expected_runtime="1h", buffer=0, deadline="1h")
    assert policy.hard_deadline == timedelta(hours=1)


def test_larger_buffer_lengthens_the_deadline() -> None:
    policy = TimeoutPolicy.build(expected_runtime="1h", buffer=1.0)
    assert policy.hard_deadline == timedelta(hours=2)


@pytest.mark.parametrize(
    ("buffer", "match"),
    [
        (-0.1, r"buffer -0.1 is negative"),
        (math.nan, r"buffer nan is negative or not a number"),
        (30, r"buffer 30 is larger than 10 .*did you mean 0.3\?"),
        (10.5, r"buffer 10.5 is larger than 10"),
        (True, r"buffer True is not a number"),
        ("0.3", r"buffer '0.3' is not a number"),
    ],
)
def test_negative_huge_or_non_numeric_buffer_is_rejected(buffer: object, match: str) -> None:
    with pytest.raises(GuardConfigError, match=match):
        TimeoutPolicy.build(expected_runtime="1h", buffer=buffer)  # type: ignore[arg-type]


def test_buffer_of_ten_is_the_largest_accepted() -> None:
    assert TimeoutPolicy.build(expected_runtime="1h", buffer=10).hard_deadline == timedelta(hours=11)


def test_buffer_given_as_percentage_gets_a_hint() -> None:
    """buffer=30 (meant as 30%) gave a 31h deadline, so a hung job held its GPU for a day."""
    with pytest.raises(GuardConfigError, match="fraction, not a percentage"):
        TimeoutPolicy.build(expected_runtime="1h", buffer=30)


def test_stall_after_not_longer_than_poll_interval_is_rejected() -> None:
    """A stall limit equal to the poll interval flagged healthy runs as hung between two polls."""
    with pytest.raises(
        GuardConfigError,
        match=r"stall_after 5s is not longer than poll_interval 5s.*set stall_after > 5s",
    ):
        TimeoutPolicy.build(expected_runtime="1h", stall_after="5s", poll_interval="5s")
    with pytest.raises(GuardConfigError, match=r"stall_after 2s is not longer than poll_interval 5s"):
        TimeoutPolicy.build(expected_runtime="1h", stall_after="2s")


def test_stall_detection_can_be_disabled() -> None:
    policy = TimeoutPolicy.build(expected_runtime="1h", stall_after=None)
    assert policy.stall_after is None
    assert policy.describe()["stall_after"] == "disabled"


@pytest.mark.parametrize("poll_interval", [0, "0s", -1, timedelta(0)])
def test_poll_interval_must_be_positive(poll_interval: object) -> None:
    with pytest.raises(GuardConfigError, match=r"poll_interval .* (is zero|is negative)"):
        TimeoutPolicy.build(expected_runtime="1h", poll_interval=poll_interval)  # type: ignore[arg-type]


def test_non_positive_poll_interval_is_rejected_by_the_constructor_too() -> None:
    with pytest.raises(GuardConfigError, match=r"poll_interval 0s must be positive"):
        TimeoutPolicy(expected_runtime=timedelta(hours=1), poll_interval=timedelta(0))


def test_startup_timeout_longer_than_hard_deadline_is_rejected() -> None:
    with pytest.raises(
        GuardConfigError,
        match=r"startup_timeout 10m is longer than the hard deadline 3m54s.*set startup_timeout <= 3m54s",
    ):
        TimeoutPolicy.build(expected_runtime="3m")


def test_explicit_deadline_makes_room_for_the_default_startup_timeout() -> None:
    policy = TimeoutPolicy.build(expected_runtime="3m", deadline="20m")
    assert policy.startup_timeout == timedelta(minutes=10)


@pytest.mark.parametrize(
    "name",
    ["expected_runtime", "deadline", "startup_timeout", "stall_after", "poll_interval"],
)
def test_build_names_the_parameter_that_does_not_parse(name: str) -> None:
    kwargs: dict[str, object] = {"expected_runtime": "1h", name: "soon"}
    with pytest.raises(GuardConfigError, match=rf"^{name} 'soon' is not a duration"):
        TimeoutPolicy.build(**kwargs)  # type: ignore[arg-type]


def test_constructor_rejects_strings_and_points_to_build() -> None:
    with pytest.raises(
        GuardConfigError, match=r"expected_runtime '2h' is a str, not a timedelta; use TimeoutPolicy.build"
    ):
        TimeoutPolicy(expected_runtime="2h")  # type: ignore[arg-type]


def test_absurd_expected_runtime_is_rejected_not_an_overflow_error() -> None:
    with pytest.raises(GuardConfigError, match="too large"):
        TimeoutPolicy(expected_runtime=timedelta(days=999_999_000), buffer=1)


def test_policy_is_immutable() -> None:
    policy = TimeoutPolicy.build(expected_runtime="1h")
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.buffer = 0.0  # type: ignore[misc]


def test_describe_reports_the_effective_configuration() -> None:
    policy = TimeoutPolicy.build(
        expected_runtime="2h", startup_timeout="2m", stall_after="10m", poll_interval="1s"
    )
    assert policy.describe() == {
        "expected_runtime": "2h",
        "buffer": "30%",
        "minimum_deadline": "2h36m",
        "hard_deadline": "2h36m",
        "hard_deadline_source": "expected_runtime + 30%",
        "startup_timeout": "2m",
        "stall_after": "10m",
        "poll_interval": "1s",
    }


def test_describe_says_when_the_deadline_is_explicit() -> None:
    described = TimeoutPolicy.build(expected_runtime="2h", deadline="3h").describe()
    assert described["hard_deadline"] == "3h"
    assert described["hard_deadline_source"] == "explicit"


@given(
    runtime=st.integers(min_value=60, max_value=7 * 86_400),
    buffer=st.floats(min_value=0, max_value=10, allow_nan=False),
)
def test_hard_deadline_is_never_below_expected_runtime_plus_buffer(runtime: int, buffer: float) -> None:
    policy = TimeoutPolicy.build(
        expected_runtime=runtime, buffer=buffer, startup_timeout=30, stall_after=None
    )
    assert policy.hard_deadline >= timedelta(seconds=runtime)
    assert policy.hard_deadline == policy.minimum_deadline
