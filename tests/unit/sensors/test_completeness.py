"""PartitionCompletenessSensor: parse-time validation, poke and deferrable paths, failures, XCom."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk.exceptions import (
    AirflowException,
    AirflowFailException,
    AirflowSensorTimeout,
    AirflowSkipException,
    TaskDeferred,
)

from airflow_training_guard.exceptions import GuardConfigError
from airflow_training_guard.partitions import (
    CallableSource,
    DaysOfRange,
    ExplicitKeys,
    HoursOfDay,
    ObjectStorageSource,
    SqlSource,
)
from airflow_training_guard.partitions.completeness import xcom_keys
from airflow_training_guard.partitions.sources import GuardSecurityWarning
from airflow_training_guard.sensors import completeness as sensor_module
from airflow_training_guard.sensors.completeness import TRIGGER_TIMEOUT_MARGIN, PartitionCompletenessSensor
from airflow_training_guard.triggers.completeness import PartitionCompletenessTrigger
from tests import helpers

pytestmark = pytest.mark.unit

DAY = "2026-11-01"
HOURS = HoursOfDay(DAY)


def write_hour(root: Path, hour: int, *, data: bytes = b"a,b\n1,2\n") -> None:
    helpers.write_hour(root, DAY, hour, data=data)


def sensor(root: Path, **kwargs: Any) -> PartitionCompletenessSensor:
    kwargs.setdefault("expected", HOURS)
    kwargs.setdefault("source", ObjectStorageSource(f"{root}/date={{date}}/hour={{hour}}"))
    kwargs.setdefault("deferrable", False)
    return PartitionCompletenessSensor(task_id="wait_for_partitions", **kwargs)


@pytest.fixture
def now(monkeypatch: pytest.MonkeyPatch) -> list[datetime]:
    """Pin the sensor's clock (the first day after DAY unless a test moves it)."""
    clock = [datetime(2026, 11, 2, 1, tzinfo=UTC)]
    monkeypatch.setattr(sensor_module, "_utcnow", lambda: clock[0])
    return clock


# -- parse-time validation -----------------------------------------------------------------------


def test_an_empty_expected_set_fails_when_the_dag_is_parsed(tmp_path: Path) -> None:
    with pytest.raises(GuardConfigError, match="is empty: an empty expected set would pass every check"):
        sensor(tmp_path, expected=[])


def test_a_path_template_without_a_placeholder_fails_when_the_dag_is_parsed() -> None:
    with pytest.raises(GuardConfigError, match="has no partition placeholder"):
        PartitionCompletenessSensor(
            task_id="w", expected=HOURS, source=ObjectStorageSource("s3://bucket/events/all")
        )


def test_an_unknown_timezone_fails_when_the_dag_is_parsed(tmp_path: Path) -> None:
    with pytest.raises(GuardConfigError, match="'America/New_Yrok' is not a known IANA time zone"):
        sensor(tmp_path, expected=HoursOfDay("{{ ds }}", "America/New_Yrok"))


def test_a_reversed_date_range_fails_when_the_dag_is_parsed(tmp_path: Path) -> None:
    with pytest.raises(GuardConfigError, match="reversed"):
        sensor(tmp_path, expected=DaysOfRange("2026-11-30", "2026-11-01"))


def test_a_template_that_cannot_tell_partitions_apart_fails_when_the_dag_is_parsed() -> None:
    with pytest.raises(GuardConfigError, match="the same location"):
        PartitionCompletenessSensor(
            task_id="w",
            expected=HoursOfDay("{{ ds }}"),
            source=ObjectStorageSource("s3://bucket/events/date={date}"),
        )


def test_source_must_be_a_partition_source(tmp_path: Path) -> None:
    with pytest.raises(GuardConfigError, match="is not a partition source; use ObjectStorageSource"):
        sensor(tmp_path, source="s3://bucket/{date}")


def test_grace_period_needs_keys_with_a_date(tmp_path: Path) -> None:
    with pytest.raises(
        GuardConfigError, match=r"grace_period needs partitions with a date or an hour.*use timeout='3h'"
    ):
        sensor(
            tmp_path,
            expected=ExplicitKeys(["berlin", "paris"]),
            source=ObjectStorageSource(f"{tmp_path}/city={{0}}"),
            grace_period="3h",
        )


def test_durations_are_parsed_with_the_package_rules(tmp_path: Path) -> None:
    sensed = sensor(tmp_path, poke_interval="5m", timeout="6h", grace_period="PT3H")
    assert (sensed.poke_interval, sensed.timeout, sensed.grace_period) == (300, 21600, timedelta(hours=3))
    with pytest.raises(GuardConfigError, match="poke_interval '5 parsecs' has an unknown unit"):
        sensor(tmp_path, poke_interval="5 parsecs")


def test_deferrable_mode_needs_a_callable_the_triggerer_can_import(tmp_path: Path) -> None:
    with pytest.raises(GuardConfigError, match="cannot be imported by the triggerer"):
        sensor(tmp_path, source=CallableSource(lambda keys: keys), deferrable=True)
    sensor(tmp_path, source=CallableSource(lambda keys: keys), deferrable=False)


def test_deferrable_defaults_to_the_airflow_setting() -> None:
    import inspect

    from airflow.sdk import conf

    default = inspect.signature(PartitionCompletenessSensor.__init__).parameters["deferrable"].default
    assert default == conf.getboolean("operators", "default_deferrable", fallback=False)


# -- poke mode -----------------------------------------------------------------------------------


def test_poke_mode_returns_present_keys_and_counts_for_the_training_task(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    for hour in range(24):
        write_hour(tmp_path, hour)
    result = sensor(tmp_path).execute({})
    assert result["complete"] is True
    assert result["present_count"] == 24
    assert result["present_ranges"] == [["2026-11-01T00:00:00", "2026-11-01T23:00:00"]]
    assert result["totals"] == {"bytes": 8 * 24, "files": 24}
    assert xcom_keys(result)[0] == "2026-11-01T00:00:00"
    detailed = sensor(tmp_path, xcom_detail="keys").execute({})
    assert detailed["counts"]["2026-11-01T23:00:00"] == {"bytes": 8, "files": 1}
    out = capfd.readouterr().out
    assert "poke 1: 24/24 partitions present: complete" in out
    assert '"expected": "24 hours of 2026-11-01 (UTC)"' in out


def test_eighteen_of_twenty_four_times_out_listing_the_missing_hours(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """Regression: training started on 18 of 24 hourly partitions; the sensor must never pass."""
    for hour in range(18):
        write_hour(tmp_path, hour)
    with pytest.raises(
        AirflowSensorTimeout,
        match=r"timed out after .* waiting for complete partitions: 18/24 partitions present; 6 missing \(nothing there\): 2026-11-01T18:00:00\.\.2026-11-01T23:00:00 \(6\)",
    ):
        sensor(tmp_path, poke_interval=0.05, timeout=0.2).execute({})
    assert (
        "18/24 partitions present; 6 missing (nothing there): 2026-11-01T18:00:00..2026-11-01T23:00:00 (6)"
        in capfd.readouterr().out
    )


def test_soft_fail_skips_on_timeout_with_the_missing_hours(tmp_path: Path) -> None:
    for hour in range(23):
        write_hour(tmp_path, hour)
    with pytest.raises(
        AirflowSkipException,
        match=r"23/24 partitions present; 1 missing \(nothing there\): 2026-11-01T23:00:00",
    ):
        sensor(tmp_path, poke_interval=0.05, timeout=0.15, soft_fail=True).execute({})


def test_twenty_three_plus_a_zero_byte_hour_never_passes(tmp_path: Path) -> None:
    """Regression: a finalized but empty hour must not let training start."""
    for hour in range(23):
        write_hour(tmp_path, hour)
    write_hour(tmp_path, 23, data=b"")
    with pytest.raises(AirflowSensorTimeout, match=r"1 too small \(0 bytes of data\): 2026-11-01T23:00:00"):
        sensor(tmp_path, poke_interval=0.05, timeout=0.15).execute({})


def test_a_marker_without_data_never_passes(tmp_path: Path) -> None:
    """Regression: _SUCCESS written by a writer that crashed before its data must not count."""
    for hour in range(23):
        write_hour(tmp_path, hour)
    (tmp_path / f"date={DAY}" / "hour=23").mkdir(parents=True)
    (tmp_path / f"date={DAY}" / "hour=23" / "_SUCCESS").touch()
    with pytest.raises(
        AirflowSensorTimeout, match=r"1 too small \(no data files next to the _SUCCESS marker\)"
    ):
        sensor(tmp_path, poke_interval=0.05, timeout=0.15).execute({})


def test_past_the_grace_deadline_it_fails_instead_of_waiting(tmp_path: Path, now: list[datetime]) -> None:
    for hour in range(22):
        write_hour(tmp_path, hour)
    now[0] = datetime(2026, 11, 2, 3, 0, 1, tzinfo=UTC)
    with pytest.raises(
        AirflowFailException,
        match=r"still incomplete at the grace deadline 2026-11-02T03:00:00\+00:00 \(the expected window's end \+ grace_period 3h\): 22/24 partitions present; 2 missing \(nothing there\): 2026-11-01T22:00:00, 2026-11-01T23:00:00",
    ):
        sensor(tmp_path, grace_period="3h", timeout="1d").execute({})


def test_past_the_grace_deadline_soft_fail_skips(tmp_path: Path, now: list[datetime]) -> None:
    now[0] = datetime(2026, 11, 3, tzinfo=UTC)
    with pytest.raises(AirflowSkipException, match="still incomplete at the grace deadline"):
        sensor(tmp_path, grace_period="3h", soft_fail=True).execute({})


def test_before_the_grace_deadline_it_keeps_waiting(tmp_path: Path, now: list[datetime]) -> None:
    sensed = sensor(tmp_path, grace_period="3h")
    sensed._grace_deadline = sensed._compute_grace_deadline()
    assert sensed.poke({}).is_done is False


def test_a_partition_that_disappears_between_pokes_resets_completeness(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """Regression: a partition rewritten (deleted) after it was seen must be waited for again."""
    for hour in range(24):
        write_hour(tmp_path, hour)
    sensed = sensor(tmp_path)
    assert sensed.poke({}).is_done
    for child in (tmp_path / f"date={DAY}" / "hour=05").iterdir():
        child.unlink()
    second = sensed.poke({})
    assert not second.is_done
    out = capfd.readouterr().out
    assert (
        "1 partition(s) present at the previous check are gone, completeness starts over: 2026-11-01T05:00:00"
        in out
    )
    assert "poke 2: 23/24 partitions present" in out


# -- deferrable mode -----------------------------------------------------------------------------


def test_deferrable_mode_returns_at_once_when_the_first_poke_is_complete(tmp_path: Path) -> None:
    for hour in range(24):
        write_hour(tmp_path, hour)
    assert sensor(tmp_path, deferrable=True).execute({})["complete"] is True


def test_deferrable_mode_defers_with_the_same_check_and_a_timeout(
    tmp_path: Path, now: list[datetime]
) -> None:
    for hour in range(20):
        write_hour(tmp_path, hour)
    sensed = sensor(tmp_path, deferrable=True, poke_interval="2m", timeout="6h", grace_period="3h")
    with pytest.raises(TaskDeferred) as deferred:
        sensed.execute({})
    assert deferred.value.method_name == "execute_complete"
    assert deferred.value.timeout == timedelta(hours=6) + TRIGGER_TIMEOUT_MARGIN
    trigger = deferred.value.trigger
    assert isinstance(trigger, PartitionCompletenessTrigger)
    assert trigger.serialize() == (
        "airflow_training_guard.triggers.completeness.PartitionCompletenessTrigger",
        {
            "expected": {"kind": "hours_of_day", "date": DAY, "timezone": "UTC", "name": None},
            "source": {
                "kind": "object_storage",
                "path_template": f"{tmp_path}/date={{date}}/hour={{hour}}",
                "conn_id": None,
                "marker": "_SUCCESS",
                "min_bytes": 1,
                "min_files": 1,
                "listing": "bounded",
            },
            "poke_interval": 120.0,
            "timeout_at": now[0] + timedelta(hours=6),
            "grace_deadline": datetime(2026, 11, 2, 3, tzinfo=UTC),
            "timeout": 21600.0,
            "grace_period": 10800.0,
            "xcom_detail": "ranges",
        },
    )


def test_the_deferred_trigger_survives_airflows_trigger_storage(tmp_path: Path, now: list[datetime]) -> None:
    from airflow.models.trigger import Trigger

    sensed = sensor(tmp_path, deferrable=True, grace_period="3h", expected=HoursOfDay(DAY, "Europe/Berlin"))
    with pytest.raises(TaskDeferred) as deferred:
        sensed.execute({})
    classpath, kwargs = deferred.value.trigger.serialize()
    stored = Trigger._decrypt_kwargs(Trigger.encrypt_kwargs(kwargs))
    assert stored == kwargs
    assert stored["grace_deadline"] == datetime(2026, 11, 2, 2, tzinfo=UTC)  # Berlin midnight + 3h
    assert PartitionCompletenessTrigger(**stored).serialize() == (classpath, kwargs)


def test_execute_complete_returns_the_triggers_result() -> None:
    sensed = PartitionCompletenessSensor(
        task_id="w", expected=HOURS, source=ObjectStorageSource("/d/{date}/{hour}")
    )
    result = {"complete": True, "present_keys": ["a"]}
    assert sensed.execute_complete({}, {"status": "success", "message": "24/24", "result": result}) == result


@pytest.mark.parametrize(
    ("status", "error"),
    [("timeout", AirflowSensorTimeout), ("late", AirflowFailException), ("error", AirflowException)],
)
def test_execute_complete_raises_with_the_triggers_message(status: str, error: type[Exception]) -> None:
    sensed = PartitionCompletenessSensor(
        task_id="w", expected=HOURS, source=ObjectStorageSource("/d/{date}/{hour}")
    )
    with pytest.raises(error, match="18/24 partitions present"):
        sensed.execute_complete({}, {"status": status, "message": "18/24 partitions present; 6 missing"})


@pytest.mark.parametrize("status", ["timeout", "late"])
def test_execute_complete_skips_with_soft_fail(status: str) -> None:
    sensed = PartitionCompletenessSensor(
        task_id="w", expected=HOURS, source=ObjectStorageSource("/d/{date}/{hour}"), soft_fail=True
    )
    with pytest.raises(AirflowSkipException, match="6 missing"):
        sensed.execute_complete({}, {"status": status, "message": "18/24 partitions present; 6 missing"})


def test_execute_complete_without_an_event_fails() -> None:
    sensed = PartitionCompletenessSensor(
        task_id="w", expected=HOURS, source=ObjectStorageSource("/d/{date}/{hour}")
    )
    with pytest.raises(AirflowException, match="returned no event"):
        sensed.execute_complete({}, None)


# -- templating ----------------------------------------------------------------------------------


def test_jinja_in_the_expected_set_and_the_path_is_rendered_then_checked(tmp_path: Path) -> None:
    sensed = PartitionCompletenessSensor(
        task_id="w",
        expected=HoursOfDay("{{ ds }}", "Europe/Berlin"),
        source=ObjectStorageSource("{{ params.root }}/date={utc_date}/hour={utc_hour}"),
    )
    sensed.render_template_fields({"ds": "2026-10-25", "params": {"root": str(tmp_path)}})
    assert sensed.expected == HoursOfDay("2026-10-25", "Europe/Berlin")
    assert sensed.source == ObjectStorageSource(f"{tmp_path}/date={{utc_date}}/hour={{utc_hour}}")
    assert sensed.source.check(sensed.expected).ratio == "0/25"


def test_a_template_that_renders_to_a_bad_date_fails_without_retry() -> None:
    sensed = PartitionCompletenessSensor(
        task_id="w", expected=HoursOfDay("{{ ds }}"), source=ObjectStorageSource("/d/{date}/{hour}")
    )
    with pytest.raises(
        AirflowFailException, match="task 'w' is misconfigured: HoursOfDay date 'tomorrow' is not a date"
    ):
        sensed.render_template_fields({"ds": "tomorrow"})


def test_the_rendered_fields_are_shown_as_json_in_the_ui() -> None:
    from airflow.serialization.helpers import serialize_template_field

    sensed = PartitionCompletenessSensor(
        task_id="w", expected=HoursOfDay("{{ ds }}"), source=ObjectStorageSource("/d/{date}/{hour}")
    )
    assert serialize_template_field(sensed.expected, "expected") == {
        "date": "{{ ds }}",
        "kind": "hours_of_day",
        "name": None,
        "timezone": "UTC",
    }


def test_an_unknown_xcom_detail_fails_when_the_dag_is_parsed(tmp_path: Path) -> None:
    with pytest.raises(GuardConfigError, match="xcom_detail 'all' is not valid; use 'ranges'"):
        sensor(tmp_path, xcom_detail="all")


# -- SQL built from run conf (issue 14) ----------------------------------------------------------


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT hour, count(*) FROM {{ params.table }} GROUP BY 1",
        "SELECT hour, count(*) FROM events WHERE city = '{{ dag_run.conf['city'] }}' GROUP BY 1",
        "SELECT hour, count(*) FROM events WHERE day = '{{ dag_run.conf.day }}' GROUP BY 1",
    ],
)
def test_sql_that_renders_params_or_run_conf_into_the_query_warns_at_parse_time(
    sql: str, capfd: pytest.CaptureFixture[str]
) -> None:
    """Regression (issue 14): run conf rendered into `sql` is executed as SQL (DROP TABLE through a table name)."""
    with pytest.warns(GuardSecurityWarning, match="SQL injection path") as caught:
        PartitionCompletenessSensor(task_id="w", expected=HOURS, source=SqlSource("warehouse", sql))
    assert "bound parameters" in str(caught[0].message)
    assert "SQL injection path" in capfd.readouterr().out


def test_sql_with_run_conf_only_in_bound_parameters_does_not_warn() -> None:
    import warnings

    source = SqlSource(
        "warehouse",
        "SELECT hour, count(*) FROM events WHERE day = %(day)s::date AND '{{ ds }}' <> '' GROUP BY 1",
        parameters={"day": "{{ params.day }}", "city": "{{ dag_run.conf['city'] }}"},
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        PartitionCompletenessSensor(task_id="w", expected=HOURS, source=source)
