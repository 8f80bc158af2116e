"""What a UI user can type into the backfill form is validated before anything starts."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
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
    assert [key.split("|")[0] for key in request.partition_keys()] == ["berlin", "paris", "rome"]
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
