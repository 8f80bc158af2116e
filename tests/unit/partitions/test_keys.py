"""Partition keys: the canonical form, every rejection rule, ProductMapper compatibility, fields."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from airflow_training_guard.exceptions import GuardConfigError
from airflow_training_guard.partitions.keys import (
    DELIMITER,
    MAX_KEY_LENGTH,
    SHELL_METACHARACTERS,
    PartitionKey,
    format_key,
    is_valid_key,
    key_fields,
    parse_key,
    parse_temporal,
    require_key,
    validate_part,
)

pytestmark = pytest.mark.unit

VALID_PART = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:+-]{0,30}", fullmatch=True).filter(
    lambda p: ".." not in p
)


def test_composite_keys_join_parts_with_the_product_mapper_delimiter() -> None:
    assert DELIMITER == "|"
    assert format_key("berlin", "2026-11-01") == "berlin|2026-11-01"
    assert parse_key("berlin|2026-11-01") == ("berlin", "2026-11-01")


@pytest.mark.parametrize(
    "part",
    [
        "berlin",
        "2026-11-01",
        "2026-11-01T09",
        "2026-11-01T09:00:00",
        "2026-11-01T09:00:00+01:00",
        "2026-Q1",
        "us",
        "a_b.c",
    ],
)
def test_forms_airflow_mappers_write_are_valid_parts(part: str) -> None:
    assert validate_part(part) == part
    assert is_valid_key(part)


@pytest.mark.parametrize(
    ("part", "rule"),
    [
        ("", "is empty"),
        (" berlin", "whitespace at the start or the end"),
        ("berlin\n", "whitespace at the start or the end"),
        ("a/b", "'/', a path separator"),
        ("a\\b", "path separator"),
        ("..", r"contains '\.\.'"),
        ("a..b", r"contains '\.\.'"),
        ("a\x00b", "control character"),
        ("a\x1bb", "control character"),
        ("a;rm", "';', a shell or glob metacharacter"),
        ("$(id)", "'\\$', a shell or glob metacharacter"),
        ("a`b", "metacharacter"),
        ("a*b", "metacharacter"),
        ("a b", "whitespace"),
        ("caf\u00e9", "non-ASCII"),
        ("-rf", "starts with '-'"),
        (".hidden", "starts with '.'"),
        ("a/../b", "path separator"),
    ],
)
def test_invalid_parts_are_rejected_naming_the_value_and_the_rule(part: str, rule: str) -> None:
    with pytest.raises(GuardConfigError, match=rule) as raised:
        validate_part(part)
    assert repr(part) in str(raised.value)
    assert "ASCII letters, digits and - _ . : +" in str(raised.value)


def test_a_part_that_is_not_a_string_is_rejected_with_a_hint_for_dates() -> None:
    with pytest.raises(GuardConfigError, match=r"is a date, not a string \(use \.isoformat\(\) for dates\)"):
        format_key("berlin", dt.date(2026, 11, 1))  # type: ignore[arg-type]


def test_the_delimiter_inside_a_part_is_rejected_by_format_key() -> None:
    with pytest.raises(GuardConfigError, match="contains the delimiter '\\|'; pass the parts separately"):
        format_key("berlin|paris", "2026-11-01")


def test_parse_key_names_the_whole_key_and_the_bad_part() -> None:
    with pytest.raises(GuardConfigError, match=r"part 'a/b' of 'berlin\|a/b'"):
        parse_key("berlin|a/b")


def test_empty_part_between_delimiters_is_rejected() -> None:
    with pytest.raises(GuardConfigError, match="is empty"):
        parse_key("berlin||2026-11-01")


def test_parse_key_checks_the_number_of_dimensions() -> None:
    with pytest.raises(GuardConfigError, match=r"'berlin' has 1 part\(s\) but 2 are expected"):
        parse_key("berlin", dimensions=2)


def test_keys_longer_than_airflows_partition_key_column_are_rejected() -> None:
    with pytest.raises(GuardConfigError, match=f"at most {MAX_KEY_LENGTH}"):
        format_key("a" * 200, "b" * 60)


def test_format_key_needs_a_part() -> None:
    with pytest.raises(GuardConfigError, match="at least one part"):
        format_key()


@given(st.lists(VALID_PART, min_size=1, max_size=5))
def test_parse_of_format_round_trips_for_valid_parts(parts: list[str]) -> None:
    assert parse_key(format_key(*parts)) == tuple(parts)


@given(
    prefix=st.text(max_size=10),
    bad=st.sampled_from(sorted(SHELL_METACHARACTERS | {"/", "\\", "..", "\n", "\x00", " ", "\t", "\u202e"})),
    suffix=st.text(max_size=10),
)
def test_text_with_a_dangerous_character_never_parses(prefix: str, bad: str, suffix: str) -> None:
    text = prefix + bad + suffix
    with pytest.raises(GuardConfigError):
        parse_key(text)
    assert not is_valid_key(text)


@given(st.text(max_size=40))
def test_whatever_parses_is_made_of_allowed_characters_only(text: str) -> None:
    if is_valid_key(text):
        allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:+|")
        assert set(text) <= allowed
        assert ".." not in text
        assert all(part[0].isalnum() for part in text.split("|"))


def test_keys_are_what_airflows_product_mapper_produces_and_splits() -> None:
    from airflow.partition_mappers import IdentityMapper, ProductMapper, StartOfHourMapper

    mapper = ProductMapper(IdentityMapper(), StartOfHourMapper(output_format="%Y-%m-%dT%H:%M:%S"))
    downstream = mapper.to_downstream("us|2026-03-10T09:42:00")
    assert downstream == "us|2026-03-10T09:00:00"
    assert parse_key(downstream) == ("us", "2026-03-10T09:00:00")
    assert downstream.split(mapper.delimiter) == list(parse_key(downstream))


def test_hour_keys_with_an_offset_are_read_by_airflows_temporal_mapper() -> None:
    from airflow.partition_mappers import StartOfHourMapper

    mapper = StartOfHourMapper(timezone="Europe/Berlin", input_format="%Y-%m-%dT%H:%M:%S%z")
    assert mapper.to_downstream("2026-10-25T02:00:00+01:00") == "2026-10-25T02"
    assert is_valid_key(mapper.to_downstream("2026-10-25T02:00:00+01:00"))


def test_start_of_week_mapper_default_output_is_not_a_valid_key() -> None:
    """Documented incompatibility: '2026-03-09 (W11)' has a space and parentheses."""
    from airflow.partition_mappers import StartOfWeekMapper

    assert not is_valid_key(StartOfWeekMapper().to_downstream("2026-03-10T09:00:00"))


@pytest.mark.parametrize(
    ("part", "start", "has_time"),
    [
        ("2026-11-01", dt.datetime(2026, 11, 1, tzinfo=dt.UTC), False),
        ("2026-11-01T09", dt.datetime(2026, 11, 1, 9, tzinfo=dt.UTC), True),
        ("2026-11-01T09:00:00", dt.datetime(2026, 11, 1, 9, tzinfo=dt.UTC), True),
        ("2026-11-01T09:00:00Z", dt.datetime(2026, 11, 1, 9, tzinfo=dt.UTC), True),
        ("2026-10-25T02:00:00+01:00", dt.datetime(2026, 10, 25, 1, tzinfo=dt.UTC), True),
    ],
)
def test_temporal_parts_are_recognised(part: str, start: dt.datetime, has_time: bool) -> None:
    found = parse_temporal(part)
    assert found is not None
    assert found.start == start
    assert found.has_time is has_time


@pytest.mark.parametrize("part", ["berlin", "2026-13-01", "2026-02-30", "20261101", "2026-11-01T25"])
def test_non_temporal_or_impossible_dates_are_not_temporal(part: str) -> None:
    assert parse_temporal(part) is None


def test_key_fields_give_positions_names_and_calendar_fields() -> None:
    fields = key_fields("berlin|2026-10-25T02:00:00+01:00", ("city", None))
    assert fields == {
        "partition_key": "berlin|2026-10-25T02:00:00+01:00",
        "0": "berlin",
        "1": "2026-10-25T02:00:00+01:00",
        "city": "berlin",
        "date": "2026-10-25",
        "year": "2026",
        "month": "10",
        "day": "25",
        "hour": "02",
        "minute": "00",
        "second": "00",
        "offset": "+0100",
        "utc_date": "2026-10-25",
        "utc_hour": "01",
    }


def test_key_fields_leave_calendar_fields_out_when_two_parts_are_dates() -> None:
    fields = key_fields("2026-11-01|2026-11-02")
    assert "date" not in fields
    assert fields["0"] == "2026-11-01"


def test_naive_hour_keys_are_utc_and_have_an_empty_offset() -> None:
    fields = key_fields("2026-11-01T23:00:00")
    assert (fields["date"], fields["hour"], fields["offset"], fields["utc_hour"]) == (
        "2026-11-01",
        "23",
        "",
        "23",
    )


# -- PartitionKey: the key parsed once, with its parts ---------------------------------------------


def test_a_partition_key_is_the_string_and_knows_its_parts_and_dimensions() -> None:
    key = PartitionKey("berlin|2026-11-01", dimensions=("city", "date"))
    assert key == "berlin|2026-11-01" and isinstance(key, str)
    assert hash(key) == hash("berlin|2026-11-01")
    assert {"berlin|2026-11-01": 1}[key] == 1
    assert repr(key) == repr("berlin|2026-11-01")  # logs and error messages read as before
    assert key.parts == ("berlin", "2026-11-01")
    assert key.dimensions == ("city", "date")
    assert key.parts_by_dimension == {"city": "berlin", "date": "2026-11-01"}
    assert key.part("date") == "2026-11-01"


def test_making_a_partition_key_from_a_partition_key_does_not_parse_it_again() -> None:
    key = PartitionKey("berlin|2026-11-01", dimensions=("city", "date"))
    assert PartitionKey(key) is key
    assert PartitionKey(key, dimensions=("city", "date")) is key
    renamed = PartitionKey(key, dimensions=("region", "day"))
    assert renamed == key and renamed.dimensions == ("region", "day")


def test_format_key_and_from_parts_return_partition_keys() -> None:
    key = format_key("berlin", "2026-11-01")
    assert isinstance(key, PartitionKey) and key.parts == ("berlin", "2026-11-01") and key.dimensions == ()
    named = PartitionKey.from_parts("berlin", "2026-11-01", dimensions=("city", "date"))
    assert named.parts_by_dimension == {"city": "berlin", "date": "2026-11-01"}


def test_require_key_returns_a_partition_key() -> None:
    assert require_key("berlin|2026-11-01").parts == ("berlin", "2026-11-01")


def test_a_partition_key_is_immutable() -> None:
    key = PartitionKey("berlin|2026-11-01")
    with pytest.raises(AttributeError, match="immutable"):
        key.parts = ("paris", "2026-11-01")  # type: ignore[misc]
    with pytest.raises(AttributeError, match="immutable"):
        del key.dimensions  # type: ignore[misc]
    assert key.parts == ("berlin", "2026-11-01")


def test_a_partition_key_survives_pickling_with_its_dimensions() -> None:
    import copy
    import pickle

    key = PartitionKey("berlin|2026-11-01", dimensions=("city", "date"))
    for copied in (pickle.loads(pickle.dumps(key)), copy.deepcopy(key)):
        assert copied == key and copied.parts == key.parts and copied.dimensions == ("city", "date")


def test_an_invalid_partition_key_names_the_value_and_the_rule() -> None:
    with pytest.raises(GuardConfigError, match=r"part 'a/b' of 'berlin\|a/b' contains '/', a path separator"):
        PartitionKey("berlin|a/b")
    with pytest.raises(GuardConfigError, match=r"partition key 5 is a int, not a string"):
        PartitionKey(5)


def test_a_partition_key_must_have_one_part_per_named_dimension() -> None:
    with pytest.raises(
        GuardConfigError, match=r"'2026-11-01' has 1 part\(s\) but 2 are expected \(city\|date\)"
    ):
        PartitionKey("2026-11-01", dimensions=("city", "date"))
    with pytest.raises(GuardConfigError, match="not one string"):
        PartitionKey("berlin", dimensions="city")
    with pytest.raises(GuardConfigError, match="distinct, non-empty"):
        PartitionKey("a|b", dimensions=("city", "city"))


def test_an_unnamed_partition_key_says_how_to_name_its_dimensions() -> None:
    key = PartitionKey("berlin|2026-11-01")
    with pytest.raises(GuardConfigError, match=r"has no dimension names; make it with PartitionKey\("):
        _ = key.parts_by_dimension
    named = PartitionKey(key, dimensions=("city", "date"))
    with pytest.raises(
        GuardConfigError, match=r"has no dimension 'hour'; its dimensions are \['city', 'date'\]"
    ):
        named.part("hour")


@given(st.lists(VALID_PART, min_size=1, max_size=5))
def test_a_partition_key_of_formatted_parts_has_those_parts(parts: list[str]) -> None:
    assert PartitionKey("|".join(parts)).parts == tuple(parts)
