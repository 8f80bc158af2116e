"""What a UI user can type into the backfill form is validated before anything starts."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_training_guard.backfill.validation import (
    BackfillRequestError,
    Dimension,
    validate_request,
)
from airflow_training_guard.exceptions import GuardConfigError
from airflow_training_guard.partitions.keys import DELIMITER, parse_key
from airflow_training_guard.partitions.ledger import ReprocessMode

CITIES = Dimension("city", ("berlin", "paris", "rome"))
TODAY = dt.date(2026, 11, 21)


def _validate(**conf: object):
    return validate_request(conf, dimensions=(CITIES,), max_days=90, today=TODAY)


def test_valid_request_gives_composite_keys_city_then_date() -> None:
    request = _validate(
        start_date="2026-11-01", end_date="2026-11-02", city=["rome", "berlin"], reprocess="all"
    )
    assert request.reprocess is ReprocessMode.ALL
    assert request.partition_keys() == (
        "berlin|2026-11-01",
        "berlin|2026-11-02",
        "rome|2026-11-01",
        "rome|2026-11-02",
    )
    assert "2 days, both included" in request.describe()


def test_missing_city_selection_means_every_known_city() -> None:
    request = _validate(start_date="2026-11-01", end_date="2026-11-01")
    assert [key.part("city") for key in request.partition_keys()] == ["berlin", "paris", "rome"]
    assert request.reprocess is ReprocessMode.MISSING


@pytest.mark.parametrize(
    ("conf", "message"),
    [
        (
            {"start_date": "2026/11/01", "end_date": "2026-11-02"},
            r"start_date '2026/11/01' is not a date in the form YYYY-MM-DD",
        ),
        ({"start_date": "2026-02-30", "end_date": "2026-03-01"}, r"'2026-02-30' is not a real calendar date"),
        (
            {"start_date": "2026-11-05", "end_date": "2026-11-01"},
            r"start_date 2026-11-05 is after end_date 2026-11-01; swap them",
        ),
        (
            {"start_date": "2026-11-20", "end_date": "2026-11-21"},
            r"end_date 2026-11-21 is in the future or today .*newest date a backfill may cover is 2026-11-20",
        ),
        (
            {"start_date": "2026-01-01", "end_date": "2026-11-01"},
            r"is 305 days; at most 90 are allowed per backfill",
        ),
        (
            {"start_date": "2026-11-01", "end_date": "2026-11-01", "city": ["berln"]},
            r"city 'berln' is not a known city; did you mean 'berlin'\?",
        ),
        ({"start_date": "2026-11-01", "end_date": "2026-11-01", "city": []}, r"select at least one city"),
        (
            {"start_date": "2026-11-01", "end_date": "2026-11-01", "city": ["berlin|2026-11-01"]},
            r"contains the delimiter '\|'",
        ),
        ({"start_date": "2026-11-01", "end_date": "2026-11-01", "city": ["../etc"]}, r"path separator"),
        (
            {"start_date": "2026-11-01", "end_date": "2026-11-01", "city": ["berlin;rm -rf"]},
            r"shell or glob metacharacter",
        ),
        (
            {"start_date": "2026-11-01", "end_date": "2026-11-01", "reprocess": "everything"},
            r"reprocess mode 'everything' is not valid",
        ),
        (
            {"start_date": "2026-11-01", "end_date": "2026-11-01", "town": ["x"]},
            r"unknown field\(s\) \['town'\]",
        ),
    ],
)
def test_each_bad_input_is_named_with_the_fix(conf: dict[str, object], message: str) -> None:
    with pytest.raises(BackfillRequestError, match=message):
        validate_request(conf, dimensions=(CITIES,), max_days=90, today=TODAY)


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(BackfillRequestError) as err:
        _validate(start_date="2026-11-05", end_date="2026-11-01", city=["nowhere"], reprocess="x")
    assert len(err.value.problems) == 3
    assert str(err.value).startswith("the backfill request is invalid; nothing was started:\n- ")


def test_too_many_keys_for_one_run_names_max_map_length() -> None:
    with pytest.raises(
        BackfillRequestError,
        match=r"makes 90 partition keys, more than the 50 .*AIRFLOW__CORE__MAX_MAP_LENGTH",
    ):
        validate_request(
            {"start_date": "2026-08-01", "end_date": "2026-08-30"},
            dimensions=(CITIES,),
            max_days=90,
            today=TODAY,
            max_keys=50,
        )


def test_dimension_rejects_bad_values_when_the_dag_is_parsed() -> None:
    with pytest.raises(GuardConfigError, match="path separator"):
        Dimension("city", ("berlin", "a/b"))
    with pytest.raises(GuardConfigError, match="more than once"):
        Dimension("city", ("berlin", "berlin"))
    with pytest.raises(GuardConfigError, match="lower-case identifier"):
        Dimension("date", ("x",))


@given(st.text(min_size=1, max_size=30))
def test_any_typed_city_is_either_a_known_city_or_rejected(city: str) -> None:
    """Property: no text a user types can produce a key other than a known city's."""
    try:
        request = _validate(start_date="2026-11-01", end_date="2026-11-01", city=[city])
    except BackfillRequestError:
        return
    assert city in CITIES.values
    (key,) = request.partition_keys()
    assert parse_key(key) == (city, "2026-11-01")


@given(
    st.dates(min_value=dt.date(2000, 1, 1), max_value=dt.date(2030, 12, 31)),
    st.dates(min_value=dt.date(2000, 1, 1), max_value=dt.date(2030, 12, 31)),
)
def test_accepted_ranges_are_ordered_past_and_bounded(start: dt.date, end: dt.date) -> None:
    try:
        request = _validate(start_date=start.isoformat(), end_date=end.isoformat(), city=["paris"])
    except BackfillRequestError:
        assert start > end or end >= TODAY or (end - start).days + 1 > 90
        return
    assert start <= end < TODAY and request.days <= 90
    assert len(request.partition_keys()) == request.days
    assert all(key.count(DELIMITER) == 1 for key in request.partition_keys())


# --- issue 14: bad values are quoted short; no input crashes the validator ------------------------

MESSAGE_BOUND = 8_000  # characters; the whole error, whatever was typed


def _nested_list(depth: int) -> object:
    value: object = []
    for _ in range(depth):
        value = [value]
    return value


def test_a_million_character_city_is_quoted_short_with_its_length() -> None:
    """Regression: a 1,000,000-character city gave a 1,000,332-character error (issue 14)."""
    with pytest.raises(
        BackfillRequestError, match=r"city 'xxxx[x]*'\.\.\. \(1,000,000 characters\) is not a known"
    ):
        _validate(start_date="2026-11-01", end_date="2026-11-01", city=["x" * 1_000_000])
    with pytest.raises(BackfillRequestError) as err:
        _validate(
            start_date="s" * 1_000_000, end_date="2026-11-01", city=["x" * 1_000_000], reprocess="r" * 10**6
        )
    assert len(str(err.value)) < 1_000, len(str(err.value))


def test_a_5000_digit_integer_is_refused_as_a_bad_request_not_a_value_error() -> None:
    """Regression: a 5,000-digit integer crashed validate_request with ValueError (int repr limit)."""
    huge = 10**5000
    with pytest.raises(
        BackfillRequestError, match=r"start_date <an integer of about 5,001 digits> is not a date"
    ):
        _validate(start_date=huge, end_date="2026-11-01")
    with pytest.raises(
        BackfillRequestError, match=r"city <an integer of about 5,001 digits> is of type int, not a string"
    ):
        _validate(start_date="2026-11-01", end_date="2026-11-01", city=[huge], reprocess=huge)


def test_a_5000_deep_list_is_refused_as_a_bad_request_not_a_recursion_error() -> None:
    """Regression: a 5,000-deep list crashed validate_request with RecursionError."""
    deep = _nested_list(5000)
    with pytest.raises(BackfillRequestError, match=r"start_date \[\[\[\[\.\.\.\]\]\]\] is not a date") as err:
        _validate(start_date=deep, end_date=deep, city=[deep], reprocess=deep, **{"x" * 10_000: deep})
    assert len(str(err.value)) < 2_000


def test_many_bad_cities_are_listed_five_and_counted() -> None:
    with pytest.raises(BackfillRequestError) as err:
        _validate(start_date="2026-11-01", end_date="2026-11-01", city=[f"c{i}" for i in range(10_000)])
    assert len(err.value.problems) == 6
    assert err.value.problems[-1].startswith("... and 9,995 more city value(s) rejected the same way")


_JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(["2026-11-01", "2026-11-20", "2026-02-30", "berlin", "paris", "all", "failed", "none"])
    | st.dates(min_value=dt.date(2025, 1, 1), max_value=dt.date(2027, 1, 1)).map(dt.date.isoformat)
    | st.integers(min_value=4000, max_value=6000).map(lambda digits: 10**digits)
    | st.integers(min_value=0, max_value=300_000).map(lambda size: "é" * size)
    | st.integers(min_value=0, max_value=6000).map(_nested_list)
)
_JSON = st.recursive(
    _JSON_SCALARS,
    lambda children: (
        st.lists(children, max_size=8) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
_FIELDS = st.sampled_from(["start_date", "end_date", "city", "reprocess"]) | st.text(max_size=300)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_FIELDS, _JSON, max_size=6))
def test_any_json_input_gives_a_request_or_a_bounded_backfill_request_error(conf: dict[str, object]) -> None:
    """Property (issue 14): nothing typed crashes the validator or makes a huge error message."""
    try:
        request = _validate(**conf)
    except BackfillRequestError as err:
        message = str(err)
    else:
        assert request.start <= request.end < TODAY
        for key in request.partition_keys():
            city, _ = parse_key(key)
            assert city in CITIES.values
        return
    assert len(message) <= MESSAGE_BOUND, len(message)
