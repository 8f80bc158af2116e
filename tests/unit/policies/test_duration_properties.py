"""Every value a user can type as a duration gets a result or a GuardConfigError with valid hints.

Issue 13: ``"1M"`` was read as one minute, the hint for ``"0"`` was ``'0s'`` (refused too), and
``"999999999d"`` crashed with a raw ``OverflowError``. The properties below fix the class, not the
three examples: no input escapes as another exception, and no suggested fix is itself refused.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings

from airflow_training_guard.exceptions import GuardConfigError
from airflow_training_guard.policies.durations import MAX_DURATION, parse_duration
from airflow_training_guard.policies.timeouts import TimeoutPolicy
from tests.duration_inputs import USER_DURATIONS, check_duration, check_rejection

pytestmark = pytest.mark.unit

_SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_SETTINGS
@given(USER_DURATIONS)
@example("1M")
@example("0")
@example("999999999d")
@example("P999999999D")
@example(10**400)
@example(timedelta.max)
def test_parse_duration_gives_a_duration_or_an_error_whose_hints_parse(value: object) -> None:
    try:
        result = parse_duration(value, name="deadline")  # type: ignore[arg-type]
    except GuardConfigError as err:
        check_rejection(err, value, name="deadline", first=True)
    else:
        check_duration(result, MAX_DURATION)


_BUILD_PARAMETERS: dict[str, Callable[[Any], TimeoutPolicy]] = {
    "expected_runtime": lambda v: TimeoutPolicy.build(expected_runtime=v),
    "deadline": lambda v: TimeoutPolicy.build(expected_runtime="1h", deadline=v),
    "startup_timeout": lambda v: TimeoutPolicy.build(expected_runtime="1h", startup_timeout=v),
    "stall_after": lambda v: TimeoutPolicy.build(expected_runtime="1h", stall_after=v),
    "poll_interval": lambda v: TimeoutPolicy.build(expected_runtime="1h", poll_interval=v),
}


@pytest.mark.parametrize("parameter", sorted(_BUILD_PARAMETERS))
def test_timeout_policy_build_gives_a_policy_or_an_error_naming_the_parameter(parameter: str) -> None:
    build = _BUILD_PARAMETERS[parameter]

    @settings(max_examples=100, deadline=None)
    @given(USER_DURATIONS)
    @example("999999999d")
    @example("36500d")
    def run(value: object) -> None:
        try:
            policy = build(value)
        except GuardConfigError as err:
            check_rejection(err, value, name=parameter)
        else:
            policy.describe()  # every field formats, nothing overflows
            assert policy.hard_deadline > timedelta(0)

    run()
