"""One kind registry for expected sets and partition sources: a kind names one class in the package."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from airflow_training_guard.exceptions import GuardConfigError
from airflow_training_guard.partitions import (
    CallableSource,
    ExpectedPartitions,
    HoursOfDay,
    ObjectStorageSource,
    PartitionSource,
    SqlSource,
)
from airflow_training_guard.partitions.registry import known_kinds, register_kind

pytestmark = pytest.mark.unit

EXPECTED_KINDS = ("days_of_range", "explicit_keys", "hours_of_day", "hours_of_range", "product")
SOURCE_KINDS = ("callable", "object_storage", "sql")


def test_each_family_knows_its_own_kinds() -> None:
    assert known_kinds(ExpectedPartitions) == EXPECTED_KINDS
    assert known_kinds(PartitionSource) == SOURCE_KINDS


def test_an_unknown_source_kind_names_the_value_and_lists_the_known_kinds() -> None:
    with pytest.raises(
        GuardConfigError,
        match=r"cannot rebuild a partition source from fields \['kind'\]: unknown kind 'kafka'; "
        r"known kinds: callable, object_storage, sql$",
    ):
        PartitionSource.deserialize({"kind": "kafka"})


def test_a_dict_without_a_kind_is_rejected_with_the_known_kinds() -> None:
    with pytest.raises(
        GuardConfigError, match=r"unknown kind None; known kinds: days_of_range, explicit_keys"
    ):
        ExpectedPartitions.deserialize({"date": "2026-11-01"})


def test_the_kind_of_the_other_family_is_named_as_such() -> None:
    """A source's dict passed where an expected set belongs (swapped trigger kwargs) says so."""
    with pytest.raises(
        GuardConfigError,
        match=r"unknown kind 'object_storage' \(the kind of ObjectStorageSource, not of an expected set\)",
    ):
        ExpectedPartitions.deserialize(ObjectStorageSource("/data/date={date}").serialize())
    with pytest.raises(GuardConfigError, match=r"the kind of HoursOfDay, not of a partition source"):
        PartitionSource.deserialize(HoursOfDay("2026-11-01").serialize())


def test_an_unknown_kind_error_names_the_fields_but_never_their_values() -> None:
    """A SQL source's ``hook_params`` may carry a credential: the error lists field names only."""
    with pytest.raises(GuardConfigError) as raised:
        PartitionSource.deserialize({"kind": "kafka", "hook_params": {"password": "pw-SECRET-4711"}})
    assert "hook_params" in str(raised.value)
    assert "pw-SECRET-4711" not in str(raised.value)


def test_a_kind_taken_by_another_class_is_rejected() -> None:
    with pytest.raises(
        GuardConfigError, match=r"kind 'sql' of .*Warehouse is already the kind of .*SqlSource"
    ):

        @register_kind("sql")
        @dataclasses.dataclass(frozen=True)
        class Warehouse(PartitionSource):
            def observe(self, expected: ExpectedPartitions) -> dict[str, Any]:
                return {}

            def describe(self) -> str:
                return "warehouse"


def test_a_kind_must_be_a_lower_case_name() -> None:
    with pytest.raises(GuardConfigError, match=r"kind 'Object Storage' must be a lower-case name"):
        register_kind("Object Storage")


# -- sources are frozen dataclasses ---------------------------------------------------------------


SOURCES = [
    ObjectStorageSource("s3://aws@bucket/e/date={date}/hour={hour}", marker=None, listing="per_parent"),
    SqlSource(
        "pg",
        "SELECT k, count(*) FROM t WHERE d = %(day)s GROUP BY 1",
        parameters={"day": "2026-11-01"},
        min_rows=0,
        hook_params={"schema": "events"},
    ),
    CallableSource("json.dumps", min_count=3),
]


@pytest.mark.parametrize("source", SOURCES, ids=lambda source: source.kind)
def test_a_source_rebuilt_from_its_dict_is_equal_hashes_equal_and_serializes_identically(
    source: PartitionSource,
) -> None:
    rebuilt = PartitionSource.deserialize(source.serialize())
    assert rebuilt == source
    assert hash(rebuilt) == hash(source)
    assert rebuilt.serialize() == source.serialize()
    assert list(rebuilt.serialize()) == list(source.serialize())  # same key order in the kwargs


@pytest.mark.parametrize("source", SOURCES, ids=lambda source: source.kind)
def test_a_source_cannot_be_changed_after_it_is_built(source: PartitionSource) -> None:
    first = dataclasses.fields(source)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(source, first, None)


def test_serialize_hands_out_copies_not_the_sources_own_dicts() -> None:
    source = SOURCES[1]
    assert isinstance(source, SqlSource)
    source.serialize()["parameters"]["day"] = "1999-01-01"
    assert source.parameters == {"day": "2026-11-01"}


def test_sql_parameters_given_as_a_tuple_are_kept_as_the_list_the_trigger_receives() -> None:
    one = SqlSource("pg", "SELECT k FROM t WHERE d = %s", parameters=("2026-11-01",))
    assert one.parameters == ["2026-11-01"]
    assert one == SqlSource("pg", "SELECT k FROM t WHERE d = %s", parameters=["2026-11-01"])
    assert PartitionSource.deserialize(one.serialize()) == one


def test_a_callable_source_is_equal_whether_given_the_function_or_its_import_path() -> None:
    import json

    assert CallableSource(json.dumps) == CallableSource("json.dumps")
    assert CallableSource(json.dumps) != CallableSource(json.loads)
    assert repr(CallableSource(json.dumps, min_count=2)) == "CallableSource(check='json.dumps', min_count=2)"
