"""Expected sets: the right keys on every day of the year, immutable values, parse-time errors."""

from __future__ import annotations

import datetime as dt

import pytest

from airflow_training_guard.exceptions import GuardConfigError
from airflow_training_guard.partitions.expected import (
    MAX_EXPECTED_KEYS,
    DaysOfRange,
    ExpectedPartitions,
    ExplicitKeys,
    HoursOfDay,
    HoursOfRange,
    Product,
    as_expected,
)

pytestmark = pytest.mark.unit


# -- HoursOfDay ----------------------------------------------------------------------------------


def test_a_utc_day_has_24_hour_keys_in_the_mapper_input_format() -> None:
    keys = HoursOfDay("2026-11-01").keys()
    assert len(keys) == 24
    assert keys[0] == "2026-11-01T00:00:00"
    assert keys[9] == "2026-11-01T09:00:00"
    assert keys[-1] == "2026-11-01T23:00:00"


def test_spring_forward_day_in_berlin_has_23_hours_without_2am() -> None:
    keys = HoursOfDay("2026-03-29", "Europe/Berlin").keys()
    assert len(keys) == 23
    assert keys[:3] == ("2026-03-29T00:00:00+01:00", "2026-03-29T01:00:00+01:00", "2026-03-29T03:00:00+02:00")
    assert not any("T02:" in key for key in keys)


def test_fall_back_day_in_berlin_has_25_hours_and_two_distinct_2am_keys() -> None:
    keys = HoursOfDay("2026-10-25", "Europe/Berlin").keys()
    assert len(keys) == 25
    assert len(set(keys)) == 25
    assert keys[2:4] == ("2026-10-25T02:00:00+02:00", "2026-10-25T02:00:00+01:00")
    assert keys[-1] == "2026-10-25T23:00:00+01:00"


@pytest.mark.parametrize(("day", "hours"), [("2026-03-08", 23), ("2026-11-01", 25), ("2026-07-04", 24)])
def test_new_york_days_have_the_hours_of_their_dst_rules(day: str, hours: int) -> None:
    assert len(HoursOfDay(day, "America/New_York")) == hours


def test_every_day_of_the_year_has_23_24_or_25_hours_and_the_year_adds_up() -> None:
    total = 0
    for offset in range(365):
        day = dt.date(2026, 1, 1) + dt.timedelta(days=offset)
        hours = len(HoursOfDay(day, "Europe/Berlin"))
        assert hours in {23, 24, 25}
        total += hours
    assert total == 365 * 24


def test_unknown_timezone_is_rejected_naming_it_and_the_closest_name() -> None:
    with pytest.raises(
        GuardConfigError,
        match="timezone 'Europe/Berln' is not a known IANA time zone; did you mean 'Europe/Berlin'",
    ):
        HoursOfDay("2026-11-01", "Europe/Berln")


@pytest.mark.parametrize("value", ["2026-11-1", "yesterday", "2026-02-30", 20261101])
def test_a_date_that_is_not_yyyy_mm_dd_is_rejected(value: object) -> None:
    with pytest.raises(GuardConfigError, match="is not a date; use 'YYYY-MM-DD'"):
        HoursOfDay(value)  # type: ignore[arg-type]


def test_a_datetime_is_rejected_in_favour_of_a_date() -> None:
    with pytest.raises(GuardConfigError, match="is a datetime; pass a date such as '2026-11-01'"):
        HoursOfDay(dt.datetime(2026, 11, 1, 5))


def test_utc_aliases_give_the_same_set() -> None:
    assert HoursOfDay("2026-11-01", "Etc/UTC") == HoursOfDay("2026-11-01", "UTC")


def test_hours_of_day_closes_at_the_next_local_midnight() -> None:
    closes = HoursOfDay("2026-10-25", "Europe/Berlin").closes_at()
    assert closes is not None
    assert closes.astimezone(dt.UTC) == dt.datetime(2026, 10, 25, 23, tzinfo=dt.UTC)


# -- ranges --------------------------------------------------------------------------------------


def test_days_of_range_includes_both_ends() -> None:
    assert DaysOfRange("2026-11-01", "2026-11-03").keys() == ("2026-11-01", "2026-11-02", "2026-11-03")
    assert DaysOfRange("2026-11-01", "2026-11-01").keys() == ("2026-11-01",)


def test_a_reversed_range_is_rejected_with_the_swapped_call() -> None:
    with pytest.raises(
        GuardConfigError,
        match=r"start 2026-11-07 is after end 2026-11-01: the range is reversed\. Both ends are included, so write DaysOfRange\('2026-11-01', '2026-11-07'\)",
    ):
        DaysOfRange("2026-11-07", "2026-11-01")


def test_a_range_far_too_large_is_rejected_as_a_likely_typo() -> None:
    with pytest.raises(GuardConfigError, match=f"more than the limit of {MAX_EXPECTED_KEYS:,}"):
        HoursOfRange("2026-01-01", "2040-01-01")


def test_hours_of_range_is_the_hours_of_each_day_in_order() -> None:
    hours = HoursOfRange("2026-10-24", "2026-10-25", "Europe/Berlin").keys()
    assert (
        hours
        == HoursOfDay("2026-10-24", "Europe/Berlin").keys() + HoursOfDay("2026-10-25", "Europe/Berlin").keys()
    )
    assert len(HoursOfRange("2026-01-01", "2026-12-31")) == 8760


# -- product and explicit keys -------------------------------------------------------------------


def test_product_makes_composite_keys_with_the_first_set_slowest() -> None:
    cities = ExplicitKeys(["berlin", "paris"], names="city")
    product = Product(cities, DaysOfRange("2026-11-01", "2026-11-02"))
    assert product.keys() == (
        "berlin|2026-11-01",
        "berlin|2026-11-02",
        "paris|2026-11-01",
        "paris|2026-11-02",
    )
    assert product.names == ("city", None)
    assert product.dimensions == 2


def test_product_accepts_plain_lists() -> None:
    assert Product(["us", "eu"], ["a", "b"]).keys() == ("us|a", "us|b", "eu|a", "eu|b")


def test_product_rejects_a_bare_string_argument() -> None:
    with pytest.raises(GuardConfigError, match="Product argument 0 is the string 'berlin'; pass a list"):
        Product("berlin", DaysOfRange("2026-11-01", "2026-11-02"))  # type: ignore[arg-type]


def test_product_rejects_two_dimensions_with_one_name() -> None:
    with pytest.raises(GuardConfigError, match=r"share the name\(s\) \['city'\]"):
        Product(ExplicitKeys(["a"], names="city"), ExplicitKeys(["b"], names="city"))


def test_product_needs_two_sets() -> None:
    with pytest.raises(GuardConfigError, match="at least two sets"):
        Product(DaysOfRange("2026-11-01", "2026-11-02"))


def test_explicit_keys_must_not_be_empty() -> None:
    with pytest.raises(
        GuardConfigError, match=r"ExplicitKeys\(\[\]\) is empty: an empty expected set would pass every check"
    ):
        ExplicitKeys([])


def test_explicit_keys_reject_duplicates_and_invalid_keys() -> None:
    with pytest.raises(GuardConfigError, match="lists 'berlin' twice"):
        ExplicitKeys(["berlin", "paris", "berlin"])
    with pytest.raises(GuardConfigError, match="path separator"):
        ExplicitKeys(["../etc"])


def test_explicit_keys_reject_a_string_in_place_of_a_list() -> None:
    with pytest.raises(GuardConfigError, match="must be a list of keys"):
        ExplicitKeys("berlin")  # type: ignore[arg-type]


def test_explicit_keys_must_share_their_number_of_parts() -> None:
    with pytest.raises(GuardConfigError, match=r"mixes keys with \[1, 2\] parts"):
        ExplicitKeys(["berlin", "paris|2026-11-01"])


@pytest.mark.parametrize("name", ["date", "hour", "partition_key"])
def test_dimension_names_cannot_shadow_derived_placeholders(name: str) -> None:
    with pytest.raises(GuardConfigError, match=f"name '{name}' is reserved"):
        ExplicitKeys(["berlin"], names=name)


def test_explicit_keys_closes_at_comes_from_their_dates() -> None:
    keys = ExplicitKeys(["berlin|2026-11-01", "paris|2026-11-03"])
    assert keys.closes_at() == dt.datetime(2026, 11, 4, tzinfo=dt.UTC)
    assert ExplicitKeys(["berlin"]).closes_at() is None


def test_as_expected_turns_a_list_into_explicit_keys_and_rejects_others() -> None:
    assert as_expected(["a", "b"]) == ExplicitKeys(["a", "b"])
    with pytest.raises(GuardConfigError, match="is not an expected set"):
        as_expected("a")


# -- value semantics -----------------------------------------------------------------------------


def test_sets_are_values_equal_hashable_and_printable() -> None:
    one = Product(ExplicitKeys(["berlin"], names="city"), DaysOfRange("2026-11-01", "2026-11-02"))
    two = Product(ExplicitKeys(["berlin"], names="city"), DaysOfRange(dt.date(2026, 11, 1), "2026-11-02"))
    assert one == two
    assert hash(one) == hash(two)
    assert {one, two} == {one}
    assert (
        repr(one)
        == "Product(ExplicitKeys(['berlin'], names=('city',)), DaysOfRange('2026-11-01', '2026-11-02'))"
    )
    assert (
        repr(HoursOfDay("2026-11-01", "Europe/Berlin"))
        == "HoursOfDay('2026-11-01', timezone='Europe/Berlin')"
    )
    assert DaysOfRange("2026-11-01", "2026-11-02") != HoursOfRange("2026-11-01", "2026-11-02")


def test_sets_are_immutable() -> None:
    hours = HoursOfDay("2026-11-01")
    with pytest.raises(AttributeError):
        hours.date = "2026-11-02"  # type: ignore[misc]


def test_len_iter_and_in_follow_the_keys() -> None:
    hours = HoursOfDay("2026-11-01")
    assert len(hours) == 24
    assert list(hours) == list(hours.keys())
    assert "2026-11-01T05:00:00" in hours
    assert "2026-11-02T05:00:00" not in hours


@pytest.mark.parametrize(
    "expected",
    [
        HoursOfDay("2026-10-25", "Europe/Berlin", name="hour_key"),
        HoursOfRange("2026-11-01", "2026-11-02"),
        DaysOfRange("2026-11-01", "2026-11-07", "America/New_York"),
        ExplicitKeys(["berlin|2026-11-01"], names=("city", None)),
        Product(ExplicitKeys(["berlin", "paris"], names="city"), HoursOfDay("2026-11-01")),
        HoursOfDay("{{ ds }}"),
    ],
)
def test_serialize_round_trips(expected: ExpectedPartitions) -> None:
    assert ExpectedPartitions.deserialize(expected.serialize()) == expected


def test_serialize_is_plain_json_data() -> None:
    assert HoursOfDay("2026-11-01").serialize() == {
        "kind": "hours_of_day",
        "date": "2026-11-01",
        "timezone": "UTC",
        "name": None,
    }


def test_deserialize_rejects_an_unknown_kind() -> None:
    with pytest.raises(GuardConfigError, match="unknown kind 'weeks'"):
        ExpectedPartitions.deserialize({"kind": "weeks"})


# -- templates -----------------------------------------------------------------------------------


def test_templated_dates_are_kept_until_rendered_and_checked_then() -> None:
    hours = HoursOfDay("{{ macros.ds_add(ds, -1) }}", "Europe/Berlin")
    assert hours.is_templated
    with pytest.raises(GuardConfigError, match="not rendered yet"):
        hours.keys()
    rendered = hours.render(lambda text: "2026-10-25")
    assert rendered == HoursOfDay("2026-10-25", "Europe/Berlin")
    assert len(rendered) == 25


def test_a_template_that_renders_to_a_bad_date_fails_at_render() -> None:
    with pytest.raises(GuardConfigError, match="'2026-13-01' is not a date"):
        HoursOfDay("{{ ds }}").render(lambda text: "2026-13-01")


def test_timezone_is_checked_at_parse_time_even_when_the_date_is_a_template() -> None:
    with pytest.raises(GuardConfigError, match="'Mars/Olympus' is not a known IANA time zone"):
        HoursOfDay("{{ ds }}", "Mars/Olympus")


def test_a_templated_range_end_is_rendered_and_checked_for_reversal() -> None:
    days = DaysOfRange("2026-11-05", "{{ ds }}")
    with pytest.raises(GuardConfigError, match="reversed"):
        days.render(lambda text: "2026-11-01")


def test_the_example_of_a_templated_hour_set_is_the_zones_longest_day() -> None:
    example = HoursOfDay("{{ ds }}", "Europe/Berlin").example()
    assert example == HoursOfDay("2026-10-25", "Europe/Berlin")


def test_a_templated_product_renders_every_child() -> None:
    product = Product(["berlin", "paris"], DaysOfRange("{{ ds }}", "{{ ds }}"))
    assert product.render(lambda text: "2026-11-01").keys() == ("berlin|2026-11-01", "paris|2026-11-01")


def test_rendering_explicit_keys_checks_the_rendered_keys() -> None:
    keys = ExplicitKeys(["{{ dag_run.partition_key }}"])
    assert keys.render(lambda text: "berlin|2026-11-01").keys() == ("berlin|2026-11-01",)
    with pytest.raises(GuardConfigError, match="shell or glob metacharacter"):
        keys.render(lambda text: "berlin;rm -rf")
