"""Partition sources: path templates, object storage on real files (ObjectStoragePath), callables."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from airflow_training_guard.exceptions import GuardConfigError
from airflow_training_guard.partitions.completeness import PartitionObservation, PartitionStatus
from airflow_training_guard.partitions.expected import (
    DaysOfRange,
    ExplicitKeys,
    HoursOfDay,
    HoursOfRange,
    Product,
)
from airflow_training_guard.partitions.sources import (
    CallableSource,
    ObjectStorageSource,
    PartitionSource,
    PathTemplate,
    SqlSource,
    object_storage,
)
from tests.helpers import write_hour

pytestmark = pytest.mark.unit

DAY = "2026-11-01"
HOURS = HoursOfDay(DAY)


def hourly_source(root: Path, **kwargs: Any) -> ObjectStorageSource:
    return ObjectStorageSource(f"file://{root}/date={{date}}/hour={{hour}}", **kwargs)


@pytest.fixture
def fs_calls(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Count calls our code makes to the fsspec local filesystem (top-level calls only)."""
    from fsspec.implementations.local import LocalFileSystem

    calls: Counter[str] = Counter()
    for name in (
        "find",
        "ls",
        "info",
        "exists",
        "isfile",
        "isdir",
        "glob",
        "walk",
        "size",
        "cat_file",
        "open",
    ):
        original = getattr(LocalFileSystem, name)

        def wrapper(
            self: Any, *args: Any, _name: str = name, _original: Any = original, **kwargs: Any
        ) -> Any:
            depth = getattr(self, "_tg_depth", 0)
            if depth == 0:
                calls[_name] += 1
            self._tg_depth = depth + 1
            try:
                return _original(self, *args, **kwargs)
            finally:
                self._tg_depth = depth

        monkeypatch.setattr(LocalFileSystem, name, wrapper)
    # On a local disk the source lists with os.scandir instead of fsspec's find (a quarter of the
    # CPU); one such recursive listing is what one `find` would be, so it counts as one.
    original_scan = object_storage._scan_local

    def scan(prefix: str) -> Any:
        calls["find"] += 1
        return original_scan(prefix)

    monkeypatch.setattr(object_storage, "_scan_local", scan)
    return calls


# -- import purity -------------------------------------------------------------------------------


def test_importing_the_partitions_package_does_not_import_airflow() -> None:
    code = (
        "import sys, airflow_training_guard.partitions as p; "
        "p.HoursOfDay('2026-11-01').keys(); "
        "bad = sorted(m for m in sys.modules if m == 'airflow' or m.startswith('airflow.')); "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"partitions imported Airflow modules: {proc.stdout} {proc.stderr}"


# -- path templates ------------------------------------------------------------------------------


def test_a_path_template_without_a_placeholder_is_rejected() -> None:
    with pytest.raises(
        GuardConfigError,
        match="has no partition placeholder, so every partition would be looked for at the same place",
    ):
        ObjectStorageSource("s3://bucket/events/latest")


def test_jinja_alone_does_not_count_as_a_partition_placeholder() -> None:
    with pytest.raises(GuardConfigError, match="has no partition placeholder"):
        PathTemplate("s3://bucket/{{ ds }}/data")


@pytest.mark.parametrize("template", ["s3://b/x/{date", "s3://b/x/date}", "s3://b/x/{da te}"])
def test_malformed_placeholders_are_rejected(template: str) -> None:
    with pytest.raises(GuardConfigError, match=r"unmatched|placeholders are plain names"):
        PathTemplate(template)


def test_a_placeholder_the_keys_do_not_provide_is_rejected_at_parse_time() -> None:
    source = ObjectStorageSource("s3://bucket/events/city={city}/date={date}")
    with pytest.raises(
        GuardConfigError,
        match=r"uses \{city\}, which partition key '2026-11-01T00:00:00' does not provide; available: \{partition_key\}",
    ):
        source.validate(HOURS)


def test_a_template_that_gives_two_hours_one_location_is_rejected() -> None:
    source = ObjectStorageSource("s3://bucket/events/date={date}")
    with pytest.raises(
        GuardConfigError,
        match=r"gives partitions '2026-11-01T00:00:00' and '2026-11-01T01:00:00' the same location 's3://bucket/events/date=2026-11-01', so one could pass for the other; add a placeholder that tells them apart: \{hour\}, \{utc_hour\}$",
    ):
        source.validate(HOURS)


def test_the_fall_back_days_two_2am_hours_need_a_placeholder_that_tells_them_apart() -> None:
    hours = HoursOfDay("2026-10-25", "Europe/Berlin")
    with pytest.raises(
        GuardConfigError,
        match=r"tells them apart: \{offset\}, \{utc_hour\} \(a fall-back day has the same local hour twice: use \{utc_date\}/\{utc_hour\}, or add \{offset\}\)",
    ):
        ObjectStorageSource("s3://bucket/e/date={date}/hour={hour}").validate(hours)
    ObjectStorageSource("s3://bucket/e/date={utc_date}/hour={utc_hour}").validate(hours)


def test_a_templated_day_is_checked_against_its_zones_longest_day_at_parse_time() -> None:
    with pytest.raises(GuardConfigError, match="same location"):
        ObjectStorageSource("s3://bucket/e/date={date}/hour={hour}").validate(
            HoursOfDay("{{ ds }}", "Europe/Berlin")
        )


def test_a_placeholder_right_after_the_store_root_is_rejected() -> None:
    with pytest.raises(GuardConfigError, match="put the partitions under a fixed folder or bucket"):
        ObjectStorageSource("/date={date}/hour={hour}")


def test_product_keys_render_positions_and_names() -> None:
    expected = Product(ExplicitKeys(["berlin"], names="city"), DaysOfRange(DAY, DAY))
    source = ObjectStorageSource("s3://bucket/e/city={city}/first={0}/date={date}")
    source.validate(expected)
    assert source.locations(expected) == {
        "berlin|2026-11-01": "s3://bucket/e/city=berlin/first=berlin/date=2026-11-01"
    }


def test_a_connection_in_the_url_becomes_conn_id() -> None:
    source = ObjectStorageSource("s3://aws_training@bucket/e/date={date}")
    assert source.conn_id == "aws_training"
    assert source.path_template == "s3://bucket/e/date={date}"
    with pytest.raises(GuardConfigError, match="names the connection 'aws_training' but conn_id is 'other'"):
        ObjectStorageSource("s3://aws_training@bucket/e/date={date}", conn_id="other")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"marker": "a/_SUCCESS"}, "must be a file name inside the partition folder"),
        ({"min_bytes": -1}, "min_bytes -1 must be a whole number >= 0"),
        ({"min_files": True}, "min_files True must be a whole number"),
        ({"marker": None, "min_bytes": 0, "min_files": 0}, "would call an empty folder present"),
        ({"listing": "per_partition"}, "listing 'per_partition' is not valid"),
    ],
)
def test_bad_object_storage_settings_are_rejected(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(GuardConfigError, match=message):
        ObjectStorageSource("s3://bucket/e/date={date}", **kwargs)


# -- object storage on real files ----------------------------------------------------------------


def test_a_complete_day_on_disk_is_complete_with_sizes_and_file_counts(tmp_path: Path) -> None:
    for hour in range(24):
        write_hour(tmp_path, DAY, hour)
    result = hourly_source(tmp_path).check(HOURS)
    assert result.is_complete
    assert result.observations["2026-11-01T05:00:00"].counts() == {"bytes": 8, "files": 1}


def test_plain_absolute_paths_are_local_files(tmp_path: Path) -> None:
    write_hour(tmp_path, DAY, 0)
    source = ObjectStorageSource(f"{tmp_path}/date={{date}}/hour={{hour}}")
    assert source.check(HOURS).present_keys == ("2026-11-01T00:00:00",)


def test_eighteen_of_twenty_four_hours_never_passes(tmp_path: Path) -> None:
    """Regression: a model trained on 18 of 24 hourly partitions shipped with 8% lower NDCG."""
    for hour in range(18):
        write_hour(tmp_path, DAY, hour)
    result = hourly_source(tmp_path).check(HOURS)
    assert not result.is_complete
    assert result.summary().endswith(
        "6 missing (nothing there): 2026-11-01T18:00:00..2026-11-01T23:00:00 (6)"
    )


def test_twenty_three_hours_plus_a_zero_byte_twenty_fourth_never_passes(tmp_path: Path) -> None:
    """Regression: a finalized but empty hour (0-byte file + _SUCCESS) must not count as present."""
    for hour in range(23):
        write_hour(tmp_path, DAY, hour)
    write_hour(tmp_path, DAY, 23, data=b"")
    result = hourly_source(tmp_path).check(HOURS)
    assert not result.is_complete
    assert result.observations["2026-11-01T23:00:00"] == PartitionObservation(
        PartitionStatus.TOO_SMALL, reason="0 bytes of data", bytes=0, files=1
    )


def test_a_marker_without_data_never_passes(tmp_path: Path) -> None:
    """Regression: a writer that crashed after touching _SUCCESS leaves a marker and no data."""
    for hour in range(23):
        write_hour(tmp_path, DAY, hour)
    folder = tmp_path / f"date={DAY}" / "hour=23"
    folder.mkdir(parents=True)
    (folder / "_SUCCESS").touch()
    result = hourly_source(tmp_path).check(HOURS)
    assert not result.is_complete
    assert result.observations["2026-11-01T23:00:00"].reason == "no data files next to the _SUCCESS marker"


def test_data_without_its_marker_is_not_finalized(tmp_path: Path) -> None:
    for hour in range(24):
        write_hour(tmp_path, DAY, hour, marker=hour != 7)
    result = hourly_source(tmp_path).check(HOURS)
    assert (
        result.summary()
        == "23/24 partitions present; 1 not finalized (no _SUCCESS marker): 2026-11-01T07:00:00"
    )


def test_hidden_and_underscore_files_are_not_data(tmp_path: Path) -> None:
    folder = write_hour(tmp_path, DAY, 0, data=b"")
    (folder / ".part-0.csv.crc").write_bytes(b"crc")
    (folder / "_committed_123").write_bytes(b"{}")
    assert (
        hourly_source(tmp_path).check(HOURS).observations["2026-11-01T00:00:00"].reason == "0 bytes of data"
    )


def test_min_bytes_and_min_files_are_configurable(tmp_path: Path) -> None:
    write_hour(tmp_path, DAY, 0, data=b"12345")
    single = HoursOfDay(DAY)
    assert hourly_source(tmp_path, min_bytes=6).check(single).observations["2026-11-01T00:00:00"].reason == (
        "less than min_bytes=6 bytes of data"
    )
    assert hourly_source(tmp_path, min_files=2).check(single).observations["2026-11-01T00:00:00"].reason == (
        "fewer than min_files=2 data files"
    )


def test_without_a_marker_data_alone_decides(tmp_path: Path) -> None:
    write_hour(tmp_path, DAY, 0, marker=False)
    assert "2026-11-01T00:00:00" in hourly_source(tmp_path, marker=None).check(HOURS).present_keys


def test_nested_data_files_count_for_their_partition(tmp_path: Path) -> None:
    folder = tmp_path / "date=2026-11-01"
    (folder / "bucket=3").mkdir(parents=True)
    (folder / "bucket=3" / "part-0.parquet").write_bytes(b"PAR1")
    (folder / "_SUCCESS").touch()
    source = ObjectStorageSource(f"file://{tmp_path}/date={{date}}")
    result = source.check(DaysOfRange(DAY, "2026-11-02"))
    assert result.present_keys == ("2026-11-01",)
    assert result.observations["2026-11-01"].files == 1


def test_partitions_that_are_single_files_need_no_marker(tmp_path: Path) -> None:
    (tmp_path / "events").mkdir()
    (tmp_path / "events" / "2026-11-01.csv").write_bytes(b"a\n")
    (tmp_path / "events" / "2026-11-02.csv").write_bytes(b"")
    source = ObjectStorageSource(f"file://{tmp_path}/events/{{date}}.csv", marker=None)
    result = source.check(DaysOfRange(DAY, "2026-11-03"))
    assert result.present_keys == ("2026-11-01",)
    assert [result.observations[k].status for k in ("2026-11-02", "2026-11-03")] == [
        PartitionStatus.TOO_SMALL,
        PartitionStatus.MISSING,
    ]


def test_a_missing_root_means_every_partition_is_missing(tmp_path: Path) -> None:
    result = hourly_source(tmp_path / "nowhere").check(HOURS)
    assert result.ratio == "0/24"


def test_a_day_is_listed_with_one_storage_request_not_one_per_partition(
    tmp_path: Path, fs_calls: Counter[str]
) -> None:
    for hour in range(24):
        write_hour(tmp_path, DAY, hour)
    assert hourly_source(tmp_path).check(HOURS).is_complete
    assert fs_calls == Counter({"find": 1})


def test_per_parent_listing_lists_each_day_once(tmp_path: Path, fs_calls: Counter[str]) -> None:
    for day in ("2026-11-01", "2026-11-02", "2026-11-03"):
        for hour in range(24):
            write_hour(tmp_path, day, hour)
    hours = HoursOfRange("2026-11-01", "2026-11-03")
    assert hourly_source(tmp_path, listing="per_parent").check(hours).is_complete
    assert fs_calls == Counter({"find": 3})
    fs_calls.clear()
    assert hourly_source(tmp_path, listing="common_prefix").check(hours).is_complete
    assert fs_calls == Counter({"find": 1})


def test_a_partition_that_disappears_between_checks_is_missing_again(tmp_path: Path) -> None:
    """Regression: a partition deleted (e.g. by a rewrite) after one poke must not stay counted."""
    folders = [write_hour(tmp_path, DAY, hour) for hour in range(24)]
    source = hourly_source(tmp_path)
    first = source.check(HOURS)
    assert first.is_complete
    for child in folders[5].iterdir():
        child.unlink()
    second = source.check(HOURS)
    assert not second.is_complete
    assert second.disappeared_since(first) == ("2026-11-01T05:00:00",)


def test_the_async_check_gives_the_same_answer(tmp_path: Path) -> None:
    for hour in range(20):
        write_hour(tmp_path, DAY, hour)
    source = hourly_source(tmp_path)
    assert asyncio.run(source.check_async(HOURS)) == source.check(HOURS)


def test_templated_path_is_rendered_before_use(tmp_path: Path) -> None:
    write_hour(tmp_path, DAY, 0)
    source = ObjectStorageSource("{{ params.root }}/date={date}/hour={hour}")
    with pytest.raises(GuardConfigError, match="still has Jinja in it"):
        source.check(HOURS)
    rendered = source.render(lambda text: text.replace("{{ params.root }}", f"file://{tmp_path}"))
    assert rendered.check(HOURS).present_keys == ("2026-11-01T00:00:00",)


def test_object_storage_source_serializes_and_compares_by_value() -> None:
    source = ObjectStorageSource("s3://bucket/e/date={date}/hour={hour}", conn_id="aws", min_bytes=10)
    assert source.serialize() == {
        "kind": "object_storage",
        "path_template": "s3://bucket/e/date={date}/hour={hour}",
        "conn_id": "aws",
        "marker": "_SUCCESS",
        "min_bytes": 10,
        "min_files": 1,
        "listing": "bounded",
    }
    assert PartitionSource.deserialize(source.serialize()) == source
    assert hash(PartitionSource.deserialize(source.serialize())) == hash(source)
    assert repr(source).startswith(
        "ObjectStorageSource(path_template='s3://bucket/e/date={date}/hour={hour}'"
    )


# -- callables -----------------------------------------------------------------------------------


def present_hours(keys: tuple[str, ...]) -> list[str]:
    """A module-level check function: every hour but the last is there."""
    return list(keys[:-1])


async def counted_hours(keys: tuple[str, ...]) -> dict[str, Any]:
    return {keys[0]: 500, keys[1]: 3, keys[2]: False, keys[3]: True}


def test_a_callable_returning_present_keys_is_a_source() -> None:
    result = CallableSource(present_hours).check(HOURS)
    assert result.ratio == "23/24"


def test_a_callable_returning_counts_applies_min_count_and_async_functions_are_awaited() -> None:
    source = CallableSource(counted_hours, min_count=10)
    result = asyncio.run(source.check_async(HOURS))
    assert result.present_keys == (HOURS.keys()[0], HOURS.keys()[3])
    assert result.observations[HOURS.keys()[1]].reason == "count below min_count=10"
    assert result.observations[HOURS.keys()[2]].status is PartitionStatus.MISSING
    assert source.check(HOURS).present_keys == result.present_keys


def test_a_callable_can_be_given_by_import_path_and_serializes_as_it() -> None:
    path = f"{__name__}.present_hours"
    source = CallableSource(path)
    assert source.function is present_hours
    assert source.serialize() == {"kind": "callable", "check": path, "min_count": 1}
    assert PartitionSource.deserialize(source.serialize()).check(HOURS).ratio == "23/24"
    assert CallableSource(present_hours).import_path == path


def test_a_lambda_cannot_be_imported_by_the_triggerer() -> None:
    source = CallableSource(lambda keys: keys)
    with pytest.raises(
        GuardConfigError, match=r"cannot be imported by the triggerer .* or use deferrable=False"
    ):
        source.require_importable()


def test_a_bad_import_path_is_rejected() -> None:
    with pytest.raises(GuardConfigError, match=r"'no_such_module\.check' is not an importable function"):
        CallableSource("no_such_module.check")


def test_a_callable_returning_nonsense_is_reported() -> None:
    with pytest.raises(GuardConfigError, match="returned int 42; return the present keys"):
        CallableSource(lambda keys: 42).check(HOURS)


# -- SQL (configuration only; the queries run against PostgreSQL in tests/integration) -----------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"conn_id": "", "sql": "SELECT 1"}, "conn_id '' must name an Airflow connection"),
        ({"conn_id": "pg", "sql": " "}, "must be a query returning \\(partition_key, row_count\\) rows"),
        ({"conn_id": "pg", "sql": "SELECT 1", "min_rows": -5}, "min_rows -5 must be a whole number >= 0"),
        ({"conn_id": "pg", "sql": "SELECT 1", "parameters": "x"}, "must be a dict or a list"),
        ({"conn_id": "pg", "sql": "SELECT 1", "expected_keys_parameter": "a b"}, "must be a parameter name"),
    ],
)
def test_bad_sql_settings_are_rejected(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(GuardConfigError, match=message):
        SqlSource(**kwargs)


def test_sql_source_renders_its_query_and_parameters() -> None:
    source = SqlSource("pg", "SELECT k FROM t WHERE d = '{{ ds }}'", parameters={"day": "{{ ds }}", "n": 3})
    rendered = source.render(lambda text: text.replace("{{ ds }}", DAY))
    assert rendered.sql == "SELECT k FROM t WHERE d = '2026-11-01'"
    assert rendered.parameters == {"day": DAY, "n": 3}
    assert PartitionSource.deserialize(rendered.serialize()) == rendered


# -- time zones: UTC+0, half-hour offsets, DST days (issue 13) -----------------------------------

#: (zone, local day, hours): zones at UTC+0, half-hour offsets, and both DST transitions.
ZONE_DAYS = [
    ("Europe/London", "2026-01-15", 24),  # +00:00 in winter
    ("Europe/Lisbon", "2026-01-15", 24),  # +00:00 in winter
    ("Europe/Dublin", "2026-01-15", 24),  # +00:00 in winter (IANA: negative DST)
    ("Atlantic/Reykjavik", "2026-07-01", 24),  # +00:00 all year
    ("Asia/Kolkata", "2026-01-15", 24),  # +05:30
    ("Australia/Adelaide", "2026-01-15", 24),  # +10:30 (southern summer)
    ("Australia/Adelaide", "2026-07-01", 24),  # +09:30
    ("Europe/London", "2026-03-29", 23),  # spring forward
    ("Europe/London", "2026-10-25", 25),  # fall back: 01:00 twice
    ("America/New_York", "2026-03-08", 23),
    ("America/New_York", "2026-11-01", 25),
]
ZONE_IDS = [f"{zone}-{day}" for zone, day, _ in ZONE_DAYS]


def utc_instants(expected: HoursOfDay) -> list[datetime]:
    """Each expected hour as the aware UTC datetime a database or an API would return."""
    from airflow_training_guard.partitions.keys import parse_temporal

    instants = []
    for key in expected:
        found = parse_temporal(key)
        assert found is not None
        instants.append(found.start.astimezone(UTC))
    return instants


@pytest.mark.parametrize(("zone", "day", "hours"), ZONE_DAYS, ids=ZONE_IDS)
def test_object_storage_finds_every_hour_of_the_day_in_every_zone(
    tmp_path: Path, zone: str, day: str, hours: int
) -> None:
    expected = HoursOfDay(day, zone)
    assert len(expected) == hours
    source = ObjectStorageSource(f"{tmp_path}/date={{utc_date}}/hour={{utc_hour}}")
    source.validate(expected)
    for url in list(source.locations(expected).values())[1:]:
        folder = Path(url.removeprefix("file://"))
        folder.mkdir(parents=True)
        (folder / "part-0.csv").write_bytes(b"a,b\n1,2\n")
        (folder / "_SUCCESS").touch()
    result = source.check(expected)
    assert result.ratio == f"{hours - 1}/{hours}"
    assert result.incomplete_keys == (expected.keys()[0],)


@pytest.mark.parametrize(("zone", "day", "hours"), ZONE_DAYS, ids=ZONE_IDS)
def test_a_callable_returning_utc_datetimes_or_z_text_matches_every_zone(
    zone: str, day: str, hours: int
) -> None:
    """Regression (issue 13): a zero UTC offset was dropped on one side, so London matched 0/24 forever."""
    expected = HoursOfDay(day, zone)
    instants = utc_instants(expected)
    assert CallableSource(lambda keys: instants).check(expected).ratio == f"{hours}/{hours}"
    as_text = [f"{instant:%Y-%m-%dT%H:%M:%S}Z" for instant in instants[:-1]]
    result = CallableSource(lambda keys: {text: 5 for text in as_text}).check(expected)
    assert result.ratio == f"{hours - 1}/{hours}"
    assert result.incomplete_keys == (expected.keys()[-1],)
    assert result.observations[expected.keys()[0]].rows == 5


def test_both_one_oclock_hours_of_londons_fall_back_day_are_told_apart() -> None:
    expected = HoursOfDay("2026-10-25", "Europe/London")
    first, second = "2026-10-25T01:00:00+01:00", "2026-10-25T01:00:00+00:00"
    assert expected.match_key(datetime(2026, 10, 25, 0, tzinfo=UTC)) == first
    assert expected.match_key(datetime(2026, 10, 25, 1, tzinfo=UTC)) == second
    assert expected.match_key("2026-10-25 01:00:00+00") == second
    assert expected.match_key("2026-10-25T01:00:00") == second  # no offset: UTC


def test_a_naive_datetime_is_utc_and_a_key_outside_the_set_matches_nothing() -> None:
    expected = HoursOfDay("2026-01-15", "Asia/Kolkata")
    assert expected.match_key(datetime(2026, 1, 14, 18, 30)) == "2026-01-15T00:00:00+05:30"
    assert expected.match_key(datetime(2026, 1, 14, 18, 0, tzinfo=UTC)) is None
    assert expected.match_key("berlin") is None


def test_composite_keys_match_with_any_spelling_of_their_hour() -> None:
    expected = Product(ExplicitKeys(["berlin"], names="city"), HoursOfDay("2026-01-15", "Europe/London"))
    assert expected.match_key("berlin|2026-01-15T03:00:00Z") == "berlin|2026-01-15T03:00:00+00:00"
    assert expected.match_key("paris|2026-01-15T03:00:00Z") is None


# -- listings bounded by the expected set, not by the history beside it (issue 17) ---------------


def write_days(root: Path, first: str, days: int) -> None:
    start = date.fromisoformat(first)
    for offset in range(days):
        for hour in range(24):
            write_hour(root, (start + timedelta(days=offset)).isoformat(), hour)


def test_thirty_days_in_a_root_with_history_list_thirty_day_folders_not_the_root(
    tmp_path: Path, fs_calls: Counter[str]
) -> None:
    """Regression (issue 17): a multi-day set listed the whole dataset root (3 years of history)."""
    write_days(tmp_path, "2026-09-01", 90)
    expected = HoursOfRange("2026-10-01", "2026-10-30")
    source = hourly_source(tmp_path)
    prefixes = source.listing_prefixes(expected)
    assert len(prefixes) == 30
    assert prefixes[0] == f"{tmp_path}/date=2026-10-01"
    fs_calls.clear()
    assert source.check(expected).ratio == "720/720"
    assert fs_calls == Counter({"find": 30})


def test_daily_folders_under_the_root_are_listed_one_by_one_not_with_the_root(tmp_path: Path) -> None:
    for offset in range(60):
        folder = tmp_path / f"date={(date(2026, 9, 1) + timedelta(days=offset)).isoformat()}"
        folder.mkdir()
        (folder / "part-0.csv").write_bytes(b"a\n")
        (folder / "_SUCCESS").touch()
    expected = DaysOfRange("2026-10-01", "2026-10-07")
    source = ObjectStorageSource(f"{tmp_path}/date={{date}}")
    assert source.listing_prefixes(expected) == [f"{tmp_path}/date=2026-10-0{day}" for day in range(1, 8)]
    assert source.check(expected).ratio == "7/7"


def test_a_month_folder_is_listed_once_for_a_month_of_days_and_not_for_a_week(tmp_path: Path) -> None:
    source = ObjectStorageSource(f"{tmp_path}/month={{year}}-{{month}}/date={{date}}")
    assert source.listing_prefixes(DaysOfRange("2026-10-01", "2026-10-31")) == [f"{tmp_path}/month=2026-10"]
    # a week: the month folder would list four times the set, so each day is listed instead
    assert len(source.listing_prefixes(DaysOfRange("2026-10-01", "2026-10-07"))) == 7


def test_a_day_of_hours_is_still_one_listing(tmp_path: Path, fs_calls: Counter[str]) -> None:
    write_days(tmp_path, "2026-10-30", 3)
    assert hourly_source(tmp_path).check(HoursOfDay("2026-10-31")).is_complete
    assert fs_calls == Counter({"find": 1})


def test_cities_by_day_list_each_partition_when_a_city_folder_holds_its_history(tmp_path: Path) -> None:
    expected = Product(
        ExplicitKeys(["berlin", "paris"], names="city"), DaysOfRange("2026-10-01", "2026-10-02")
    )
    source = ObjectStorageSource(f"{tmp_path}/city={{city}}/date={{date}}")
    assert source.listing_prefixes(expected) == [
        f"{tmp_path}/city=berlin/date=2026-10-01",
        f"{tmp_path}/city=berlin/date=2026-10-02",
        f"{tmp_path}/city=paris/date=2026-10-01",
        f"{tmp_path}/city=paris/date=2026-10-02",
    ]


def test_the_listing_modes_are_named_in_the_error() -> None:
    with pytest.raises(GuardConfigError, match="listing 'auto' is not valid; use 'bounded'"):
        ObjectStorageSource("/data/date={date}", listing="auto")  # type: ignore[arg-type]
