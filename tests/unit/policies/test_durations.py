"""parse_duration / format_duration: every accepted form, every rejection, and the round trip."""

from __future__ import annotations

import math
import re
from datetime import timedelta

import pendulum
import pytest
from hypothesis import given
from hypothesis import strategies as st

from airflow_training_guard.exceptions import GuardConfigError
from airflow_training_guard.policies.durations import (
    MAX_DURATION,
    DurationError,
    format_duration,
    is_valid_duration,
    parse_duration,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("15m", timedelta(minutes=15)),
        ("2h", timedelta(hours=2)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1h 30m", timedelta(hours=1, minutes=30)),
        ("1d", timedelta(days=1)),
        ("1.5h", timedelta(hours=1, minutes=30)),
        (".5h", timedelta(minutes=30)),
        ("500ms", timedelta(milliseconds=500)),
        ("2w", timedelta(weeks=2)),
        ("2 hours", timedelta(hours=2)),
        ("10 min", timedelta(minutes=10)),
        ("2H", timedelta(hours=2)),
        ("  45s  ", timedelta(seconds=45)),
        ("1d2h3m4s", timedelta(days=1, hours=2, minutes=3, seconds=4)),
    ],
)
def test_compact_strings_are_parsed(value: str, expected: timedelta) -> None:
    assert parse_duration(value, name="expected_runtime") == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("PT2H30M", timedelta(hours=2, minutes=30)),
        ("P1D", timedelta(days=1)),
        ("P1DT12H", timedelta(days=1, hours=12)),
        ("PT90S", timedelta(seconds=90)),
        ("PT1.5H", timedelta(hours=1, minutes=30)),
        ("PT0,5S", timedelta(milliseconds=500)),
        ("P2W", timedelta(weeks=2)),
        ("pt10m", timedelta(minutes=10)),
    ],
)
def test_iso_8601_durations_are_parsed(value: str, expected: timedelta) -> None:
    assert parse_duration(value, name="deadline") == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (90, timedelta(seconds=90)),
        (0.25, timedelta(milliseconds=250)),
        (timedelta(hours=3), timedelta(hours=3)),
    ],
)
def test_numbers_are_seconds_and_timedeltas_pass_through(
    value: int | float | timedelta, expected: timedelta
) -> None:
    assert parse_duration(value, name="stall_after") == expected


def test_fractions_are_exact_not_float_rounded() -> None:
    """'0.1s' * 3 must not drift: the string is read as a decimal, not a binary float."""
    assert parse_duration("0.1s", name="x") == timedelta(microseconds=100_000)
    assert parse_duration("1.000001s", name="x") == timedelta(seconds=1, microseconds=1)


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ("", r"expected_runtime '' is empty"),
        ("   ", r"expected_runtime '   ' is empty"),
        ("2y", r"uses the unit 'y': months and years have no fixed length; use days, e.g. '30d'"),
        ("3 fortnights", r'unknown unit "fortnights"'),
        ("soon", r"'soon' is not a duration"),
        ("1h-30m", r"is not a duration"),
        ("1.5.5h", r"is not a duration"),
        ("nan", r"'nan' is not a duration"),
        ("1h1h", r"gives the unit 'h' twice"),
        ("90", r"'90' has no unit, so it is ambiguous; write '90s' for seconds or '90m' for minutes"),
        ("-5m", r"'-5m' is negative"),
        ("0s", r"'0s' is zero"),
        ("PT", r"'PT' is not a valid ISO-8601 duration"),
        ("P", r"'P' is not a valid ISO-8601 duration"),
        ("P1DT", r"'P1DT' is not a valid ISO-8601 duration"),
        ("P1M", r"'P1M' uses years or months, which have no fixed length; use days"),
        ("P1Y2D", r"uses years or months"),
        ("99999999999999d", r"too large for a duration"),
    ],
)
def test_bad_strings_are_rejected_with_the_name_the_value_and_valid_forms(value: str, match: str) -> None:
    with pytest.raises(GuardConfigError, match=match) as raised:
        parse_duration(value, name="expected_runtime")
    message = str(raised.value)
    assert message.startswith("expected_runtime ")
    assert "'1h30m'" in message
    assert "'PT2H30M'" in message


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (True, r"startup_timeout True is a boolean, not a duration"),
        (False, r"startup_timeout False is a boolean"),
        (0, r"startup_timeout 0 is zero"),
        (0.0, r"startup_timeout 0.0 is zero"),
        (1e-9, r"is zero \(or shorter than one microsecond\)"),
        (-1, r"startup_timeout -1 is negative"),
        (timedelta(0), r"is zero"),
        (timedelta(seconds=-5), r"is negative"),
        (math.nan, r"startup_timeout nan is not a finite number of seconds"),
        (math.inf, r"startup_timeout inf is not a finite number of seconds"),
        (-math.inf, r"not a finite number"),
        (1e300, r"too large for a duration"),
        (None, r"startup_timeout None \(NoneType\) is not a duration"),
        ([60], r"\(list\) is not a duration"),
    ],
)
def test_bad_values_are_rejected(value: object, match: str) -> None:
    with pytest.raises(GuardConfigError, match=match):
        parse_duration(value, name="startup_timeout")  # type: ignore[arg-type]


def test_rejections_are_value_errors_so_dag_import_errors_show_them() -> None:
    with pytest.raises(ValueError, match="stall_after"):
        parse_duration("ten minutes", name="stall_after")


def test_a_bool_is_not_read_as_one_second() -> None:
    """stall_after=True once became a 1-second stall limit that killed every healthy run."""
    with pytest.raises(GuardConfigError, match="boolean"):
        parse_duration(True, name="stall_after")


def test_a_bare_number_string_is_not_guessed() -> None:
    """expected_runtime="90" (meant as minutes) became 90 seconds and every run hit the deadline."""
    with pytest.raises(GuardConfigError, match="ambiguous"):
        parse_duration("90", name="expected_runtime")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (timedelta(hours=2) * 1.3, "2h36m"),
        (timedelta(seconds=45), "45s"),
        (timedelta(days=1, hours=2), "1d2h"),
        (timedelta(hours=1, seconds=5), "1h5s"),
        (timedelta(seconds=1.5), "1.5s"),
        (timedelta(milliseconds=500), "500ms"),
        (timedelta(microseconds=1500), "0.0015s"),
        (timedelta(days=3), "3d"),
        (timedelta(0), "0s"),
        (timedelta(minutes=-5), "-5m"),
    ],
)
def test_format_duration_is_compact(value: timedelta, expected: str) -> None:
    assert format_duration(value) == expected


@given(st.integers(min_value=1, max_value=int(MAX_DURATION.total_seconds())))
def test_format_then_parse_round_trips_whole_seconds(seconds: int) -> None:
    duration = timedelta(seconds=seconds)
    assert parse_duration(format_duration(duration), name="x") == duration


@given(st.timedeltas(min_value=timedelta(microseconds=1), max_value=MAX_DURATION))
def test_format_then_parse_round_trips_any_positive_duration(duration: timedelta) -> None:
    assert parse_duration(format_duration(duration), name="x") == duration


# -- issue 13 section 3: months, hints, huge values; issue 19: ISO-8601 through pendulum ----------


@pytest.mark.parametrize(
    ("value", "fix"),
    [("1M", "1m"), ("90M", "90m"), ("1h30M", "1h30m"), ("2 M", "2 m"), ("5MS", "5ms"), ("5Ms", "5ms")],
)
def test_an_upper_case_m_is_refused_as_ambiguous_not_read_as_minutes(value: str, fix: str) -> None:
    """'1M' was read as one minute: a user who meant one month got a limit 43,000 times shorter."""
    with pytest.raises(DurationError, match=r"upper-case 'M' means months in ISO-8601") as raised:
        parse_duration(value, name="deadline")
    message = str(raised.value)
    assert message.startswith(f"deadline {value!r} uses the unit")
    assert f"write {fix!r}" in message
    assert raised.value.hints[:2] == (fix, "30d")


@pytest.mark.parametrize("value", ["1m", "1min", "1MIN", "2 Minutes", "500ms", "1H", "2D"])
def test_other_spellings_keep_their_meaning(value: str) -> None:
    assert parse_duration(value, name="deadline") > timedelta(0)


@pytest.mark.parametrize(
    ("value", "unit"), [("1mo", "mo"), ("2 months", "months"), ("1y", "y"), ("3 Years", "Years")]
)
def test_calendar_units_are_refused_with_a_days_example(value: str, unit: str) -> None:
    with pytest.raises(
        DurationError, match=rf"uses the unit '{unit}': months and years have no fixed length; use days"
    ) as raised:
        parse_duration(value, name="grace_period")
    assert {"30d", "365d"} <= set(raised.value.hints)


@pytest.mark.parametrize("value", ["0", "0.0", "+0", "0.000000001"])
def test_a_bare_zero_is_not_told_to_write_a_zero_duration(value: str) -> None:
    """The hint for "0" was '0s' / '0m', which the parser refuses too: a fix that does not fix."""
    with pytest.raises(DurationError, match=rf"expected_runtime '{re.escape(value)}' is zero") as raised:
        parse_duration(value, name="expected_runtime")
    assert "'0s'" not in str(raised.value)
    assert "'0m'" not in str(raised.value)
    assert all(is_valid_duration(hint) for hint in raised.value.hints)


def test_a_bare_tiny_number_is_offered_only_the_unit_that_works() -> None:
    with pytest.raises(DurationError, match=r"write '0\.0000001m' for minutes; valid forms") as raised:
        parse_duration("0.0000001", name="expected_runtime")
    assert "0.0000001s" not in raised.value.hints


@pytest.mark.parametrize(
    "value",
    [
        "999999999d",
        "P999999999D",
        "36501d",
        "9" * 5000 + "s",
        "99999999999999",
        10**400,
        1e300,
        timedelta.max,
        MAX_DURATION + timedelta(microseconds=1),
    ],
)
def test_huge_values_are_refused_with_the_maximum_not_an_overflow(value: object) -> None:
    """deadline="999999999d" crashed with a raw OverflowError when the operator added its margins."""
    with pytest.raises(
        DurationError, match=r"^deadline .* is too large for a duration: the longest accepted is 36500d"
    ):
        parse_duration(value, name="deadline")  # type: ignore[arg-type]


def test_the_maximum_itself_is_accepted() -> None:
    assert parse_duration("36500d", name="deadline") == MAX_DURATION
    assert parse_duration(MAX_DURATION, name="deadline") == MAX_DURATION


@pytest.mark.parametrize(
    "value",
    [
        "PT1H30M",
        "PT0.5H",
        "P1.5D",
        "PT1,5H",
        "P1DT2H",
        "PT36H",
        "P1WT1H",
        "PT1H1.5M",
        "P0.5W",
        "PT0.0000015S",
    ],
)
def test_iso_8601_durations_are_read_by_pendulum(value: str) -> None:
    parsed = pendulum.parse(value, exact=True)
    assert isinstance(parsed, pendulum.Duration)
    assert parse_duration(value, name="deadline").total_seconds() == pytest.approx(parsed.total_seconds())


@given(
    st.builds(
        lambda w, d, h, m, s: (
            "P"
            + (f"{w}W" if w is not None else "")
            + (f"{d}D" if d is not None else "")
            + ("T" if (h, m, s) != (None, None, None) else "")
            + (f"{h}H" if h is not None else "")
            + (f"{m}M" if m is not None else "")
            + (f"{s}S" if s is not None else "")
        ),
        *(st.none() | st.integers(min_value=0, max_value=60) for _ in range(5)),
    )
)
def test_every_iso_duration_pendulum_reads_parses_to_the_same_length(text: str) -> None:
    try:
        parsed = pendulum.parse(text, exact=True)
    except ValueError:
        with pytest.raises(DurationError, match=r"is not a valid ISO-8601 duration"):
            parse_duration(text, name="deadline")
        return
    assert isinstance(parsed, pendulum.Duration)
    if parsed.total_seconds() == 0 or text.endswith("T"):
        assert not is_valid_duration(text)
    else:
        assert parse_duration(text, name="deadline") == timedelta(seconds=parsed.total_seconds())


@pytest.mark.parametrize("value", ["P1M", "P1Y", "P1Y2M3D", "PT1H/P1D", "P\uff11D"])
def test_iso_forms_without_a_fixed_length_or_not_durations_are_refused(value: str) -> None:
    with pytest.raises(
        DurationError, match=rf"deadline '{re.escape(value)}' (uses years or months|is not a valid)"
    ):
        parse_duration(value, name="deadline")
