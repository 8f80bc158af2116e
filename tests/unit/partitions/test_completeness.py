"""CompletenessResult: present/expected, missing keys as ranges, the XCom value, disappearances."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from airflow_training_guard.partitions.completeness import (
    CompletenessResult,
    PartitionObservation,
    PartitionStatus,
    format_key_ranges,
    key_ranges,
    keys_in_ranges,
    late_message,
    timeout_message,
    xcom_keys,
)
from airflow_training_guard.partitions.expected import HoursOfDay, HoursOfRange, Product

pytestmark = pytest.mark.unit

HOURS = HoursOfDay("2026-11-01").keys()
PRESENT = PartitionObservation(PartitionStatus.PRESENT, bytes=100, files=1)


def _result(present: list[str]) -> CompletenessResult:
    return CompletenessResult.evaluate(HOURS, {key: PRESENT for key in present})


def test_eighteen_of_twenty_four_is_incomplete_and_lists_six_hours_as_one_range() -> None:
    """Regression: training started on 18 of 24 hourly partitions; the result must say so."""
    result = _result(list(HOURS[:18]))
    assert not result.is_complete
    assert result.ratio == "18/24"
    assert result.incomplete_keys == HOURS[18:]
    assert result.summary() == (
        "18/24 partitions present; 6 missing (nothing there): 2026-11-01T18:00:00..2026-11-01T23:00:00 (6)"
    )


def test_a_complete_set_says_so() -> None:
    result = _result(list(HOURS))
    assert result.is_complete
    assert result.summary() == "24/24 partitions present: complete"


def test_problems_are_grouped_by_status_and_reason() -> None:
    observed = {key: PRESENT for key in HOURS[:22]}
    observed[HOURS[22]] = PartitionObservation(
        PartitionStatus.TOO_SMALL, reason="0 bytes of data", bytes=0, files=1
    )
    observed[HOURS[23]] = PartitionObservation(PartitionStatus.NOT_FINALIZED, reason="no _SUCCESS marker")
    result = CompletenessResult.evaluate(HOURS, observed)
    assert result.summary() == (
        "22/24 partitions present; 1 too small (0 bytes of data): 2026-11-01T22:00:00; "
        "1 not finalized (no _SUCCESS marker): 2026-11-01T23:00:00"
    )


def test_ranges_are_runs_in_expected_order_pairs_and_singles_written_out() -> None:
    text = format_key_ranges([HOURS[0], HOURS[1], HOURS[5], HOURS[10], HOURS[11], HOURS[12]], HOURS)
    assert text == (
        "2026-11-01T00:00:00, 2026-11-01T01:00:00, 2026-11-01T05:00:00, "
        "2026-11-01T10:00:00..2026-11-01T12:00:00 (3)"
    )


def test_composite_ranges_print_shared_leading_parts_once() -> None:
    keys = Product(["berlin", "paris"], HoursOfDay("2026-11-01")).keys()
    missing = [key for key in keys if key.startswith("paris|")]
    assert format_key_ranges(missing, keys) == "paris|2026-11-01T00:00:00..2026-11-01T23:00:00 (24)"


def test_long_lists_are_cut_with_a_count_of_the_rest() -> None:
    every_other = HOURS[::2]
    text = format_key_ranges(every_other, HOURS, max_ranges=3)
    assert text.endswith("... and 9 more in 9 more range(s)")
    assert text.count("2026-11-01T") == 3


def test_keys_outside_the_order_are_listed_last() -> None:
    assert format_key_ranges(["zzz", HOURS[0]], HOURS) == "2026-11-01T00:00:00, zzz"


def test_unexpected_observations_are_counted_and_ignored() -> None:
    result = CompletenessResult.evaluate(HOURS[:1], {HOURS[0]: PRESENT, "2026-10-31T23:00:00": PRESENT})
    assert result.is_complete
    assert result.unexpected == 1


def test_xcom_holds_ranges_and_totals_and_keys_only_on_request() -> None:
    result = CompletenessResult.evaluate(HOURS[:2], {HOURS[0]: PRESENT})
    compact = {
        "complete": False,
        "expected_count": 2,
        "present_count": 1,
        "present_ranges": [["2026-11-01T00:00:00", "2026-11-01T00:00:00"]],
        "missing_ranges": [["2026-11-01T01:00:00", "2026-11-01T01:00:00"]],
        "totals": {"bytes": 100, "files": 1},
        "summary": "1/2 partitions present; 1 missing (nothing there): 2026-11-01T01:00:00",
    }
    assert result.to_xcom() == compact
    assert result.to_xcom(detail="keys") == {
        **compact,
        "present_keys": ["2026-11-01T00:00:00"],
        "missing_keys": ["2026-11-01T01:00:00"],
        "counts": {"2026-11-01T00:00:00": {"bytes": 100, "files": 1}},
    }


def test_a_complete_year_of_hours_is_one_range_and_well_under_16_kb() -> None:
    """Regression (issue 17): the success payload at 8,760 partitions was 631 KB (every key and its counts)."""
    year = HoursOfRange("2026-01-01", "2026-12-31")
    result = CompletenessResult.evaluate(year.keys(), dict.fromkeys(year.keys(), PRESENT))
    value = result.to_xcom(expected=year.serialize())
    assert value["present_ranges"] == [["2026-01-01T00:00:00", "2026-12-31T23:00:00"]]
    assert value["totals"] == {"bytes": 876_000, "files": 8_760}
    assert len(json.dumps(value)) <= 16 * 1024
    assert len(json.dumps(result.to_xcom(detail="keys"))) > 300 * 1024


def test_the_full_key_lists_are_rebuilt_on_demand_from_the_ranges() -> None:
    year = HoursOfRange("2026-01-01", "2026-12-31")
    keys = year.keys()
    present = [key for index, key in enumerate(keys) if index % 100 != 7]
    result = CompletenessResult.evaluate(keys, dict.fromkeys(present, PRESENT))
    value = json.loads(json.dumps(result.to_xcom(expected=year.serialize())))
    assert xcom_keys(value) == present
    assert xcom_keys(value, "missing") == [key for index, key in enumerate(keys) if index % 100 == 7]
    assert xcom_keys(result.to_xcom(detail="keys")) == present


def test_ranges_without_the_expected_set_cannot_be_expanded() -> None:
    with pytest.raises(ValueError, match="has ranges but no 'expected' set to expand them with"):
        xcom_keys(_result(list(HOURS)).to_xcom())


def test_key_ranges_are_inclusive_runs_in_expected_order() -> None:
    assert key_ranges([HOURS[0], HOURS[1], HOURS[2], HOURS[5]], HOURS) == [
        [HOURS[0], HOURS[2]],
        [HOURS[5], HOURS[5]],
    ]
    assert keys_in_ranges([[HOURS[0], HOURS[2]], [HOURS[5], HOURS[5]]], HOURS) == [
        HOURS[0],
        HOURS[1],
        HOURS[2],
        HOURS[5],
    ]
    assert key_ranges([], HOURS) == []


def test_a_partition_that_disappears_is_named_and_no_longer_counts() -> None:
    """Regression: completeness must not be remembered from an earlier check."""
    before = _result(list(HOURS))
    after = _result(list(HOURS[:5]) + list(HOURS[6:]))
    assert after.disappeared_since(before) == (HOURS[5],)
    assert not after.is_complete
    assert after.disappeared_since(None) == ()


def test_late_and_timeout_messages_list_the_missing_keys() -> None:
    result = _result(list(HOURS[:23]))
    late = late_message(
        result, deadline=datetime(2026, 11, 2, 3, tzinfo=UTC), grace_period=timedelta(hours=3)
    )
    assert late.startswith("partitions still incomplete at the grace deadline 2026-11-02T03:00:00+00:00")
    assert "grace_period 3h" in late
    assert "23/24 partitions present; 1 missing (nothing there): 2026-11-01T23:00:00" in late
    assert timeout_message(result, timeout=timedelta(hours=6)).startswith(
        "timed out after 6h waiting for complete partitions: 23/24 partitions present"
    )
