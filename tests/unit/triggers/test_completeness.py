"""PartitionCompletenessTrigger run in an asyncio loop: one event, never an exception."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from airflow_training_guard.partitions import CallableSource, HoursOfDay, ObjectStorageSource
from airflow_training_guard.partitions.completeness import xcom_keys
from airflow_training_guard.triggers.completeness import CLASSPATH, PartitionCompletenessTrigger
from tests import helpers

pytestmark = pytest.mark.unit

DAY = "2026-11-01"
HOURS = HoursOfDay(DAY)


def write_hour(root: Path, hour: int, *, data: bytes = b"a,b\n1,2\n") -> None:
    helpers.write_hour(root, DAY, hour, data=data)


def trigger(root: Path, **kwargs: Any) -> PartitionCompletenessTrigger:
    kwargs.setdefault("expected", HOURS)
    kwargs.setdefault("source", ObjectStorageSource(f"{root}/date={{date}}/hour={{hour}}"))
    kwargs.setdefault("poke_interval", 0.02)
    return PartitionCompletenessTrigger(**kwargs)


async def events(run: AsyncIterator[Any], *, limit: float = 10.0) -> list[dict[str, Any]]:
    """Every event the trigger yields before it returns (it must return after one)."""

    async def collect() -> list[dict[str, Any]]:
        return [event.payload async for event in run]

    return await asyncio.wait_for(collect(), timeout=limit)


def test_serialize_mirrors_init_exactly() -> None:
    timeout_at = datetime(2026, 11, 2, 6, tzinfo=UTC)
    grace = datetime(2026, 11, 2, 3, tzinfo=UTC)
    fired = PartitionCompletenessTrigger(
        expected=HOURS,
        source=ObjectStorageSource("s3://bucket/e/date={date}/hour={hour}", conn_id="aws"),
        poke_interval=300,
        timeout_at=timeout_at,
        grace_deadline=grace,
        timeout=21600.0,
        grace_period=10800.0,
        xcom_detail="keys",
    )
    classpath, kwargs = fired.serialize()
    assert classpath == CLASSPATH
    assert kwargs == {
        "expected": {"kind": "hours_of_day", "date": DAY, "timezone": "UTC", "name": None},
        "source": {
            "kind": "object_storage",
            "path_template": "s3://bucket/e/date={date}/hour={hour}",
            "conn_id": "aws",
            "marker": "_SUCCESS",
            "min_bytes": 1,
            "min_files": 1,
            "listing": "bounded",
        },
        "poke_interval": 300.0,
        "timeout_at": timeout_at,
        "grace_deadline": grace,
        "timeout": 21600.0,
        "grace_period": 10800.0,
        "xcom_detail": "keys",
    }
    assert PartitionCompletenessTrigger(**kwargs).serialize() == (classpath, kwargs)


def test_the_kwargs_survive_airflows_trigger_storage() -> None:
    from airflow.models.trigger import Trigger

    _, kwargs = PartitionCompletenessTrigger(
        expected=HOURS,
        source=ObjectStorageSource("s3://bucket/e/date={date}/hour={hour}"),
        timeout_at=datetime(2026, 11, 2, 6, tzinfo=UTC),
    ).serialize()
    assert Trigger._decrypt_kwargs(Trigger.encrypt_kwargs(kwargs)) == kwargs


@pytest.mark.asyncio
async def test_a_complete_set_yields_one_success_event_with_the_xcom_value(tmp_path: Path) -> None:
    for hour in range(24):
        write_hour(tmp_path, hour)
    (event,) = await events(trigger(tmp_path).run())
    assert event["status"] == "success"
    assert event["message"] == "24/24 partitions present: complete"
    assert event["result"]["present_count"] == 24
    assert event["result"]["present_ranges"] == [["2026-11-01T00:00:00", "2026-11-01T23:00:00"]]
    assert event["result"]["totals"] == {"bytes": 8 * 24, "files": 24}
    assert xcom_keys(event["result"]) == list(HOURS.keys())


@pytest.mark.asyncio
async def test_it_keeps_checking_until_the_last_hour_lands(tmp_path: Path) -> None:
    for hour in range(23):
        write_hour(tmp_path, hour)

    async def land_last_hour() -> None:
        await asyncio.sleep(0.15)
        write_hour(tmp_path, 23)

    writer = asyncio.create_task(land_last_hour())
    (event,) = await events(trigger(tmp_path).run())
    await writer
    assert event["status"] == "success"


@pytest.mark.asyncio
async def test_eighteen_of_twenty_four_never_succeeds_and_times_out_listing_them(tmp_path: Path) -> None:
    """Regression: 18 of 24 hourly partitions must end in a timeout naming the 6 missing hours."""
    for hour in range(18):
        write_hour(tmp_path, hour)
    timeout_at = datetime.now(UTC) + timedelta(seconds=0.2)
    (event,) = await events(trigger(tmp_path, timeout_at=timeout_at, timeout=0.2).run())
    assert event["status"] == "timeout"
    assert (
        "18/24 partitions present; 6 missing (nothing there): 2026-11-01T18:00:00..2026-11-01T23:00:00 (6)"
        in (event["message"])
    )
    assert event["result"]["complete"] is False


@pytest.mark.asyncio
async def test_a_zero_byte_last_hour_never_succeeds(tmp_path: Path) -> None:
    """Regression: 23/24 plus a zero-byte 24th is not complete."""
    for hour in range(23):
        write_hour(tmp_path, hour)
    write_hour(tmp_path, 23, data=b"")
    (event,) = await events(trigger(tmp_path, timeout_at=datetime.now(UTC) + timedelta(seconds=0.1)).run())
    assert event["status"] == "timeout"
    assert "1 too small (0 bytes of data): 2026-11-01T23:00:00" in event["message"]


@pytest.mark.asyncio
async def test_a_marker_without_data_never_succeeds(tmp_path: Path) -> None:
    """Regression: a _SUCCESS marker with no data file is not a partition."""
    for hour in range(23):
        write_hour(tmp_path, hour)
    (tmp_path / f"date={DAY}" / "hour=23").mkdir(parents=True)
    (tmp_path / f"date={DAY}" / "hour=23" / "_SUCCESS").touch()
    (event,) = await events(trigger(tmp_path, timeout_at=datetime.now(UTC) + timedelta(seconds=0.1)).run())
    assert event["status"] == "timeout"
    assert "no data files next to the _SUCCESS marker" in event["message"]


@pytest.mark.asyncio
async def test_past_the_grace_deadline_it_yields_late_with_the_missing_keys(tmp_path: Path) -> None:
    for hour in range(20):
        write_hour(tmp_path, hour)
    deadline = datetime.now(UTC) - timedelta(seconds=1)
    (event,) = await events(trigger(tmp_path, grace_deadline=deadline, grace_period=10800.0).run())
    assert event["status"] == "late"
    assert event["message"].startswith(
        f"partitions still incomplete at the grace deadline {deadline.isoformat()}"
    )
    assert "grace_period 3h" in event["message"]
    assert "4 missing (nothing there): 2026-11-01T20:00:00..2026-11-01T23:00:00 (4)" in event["message"]


@pytest.mark.asyncio
async def test_a_bad_configuration_yields_an_error_event_instead_of_crashing(tmp_path: Path) -> None:
    bad = PartitionCompletenessTrigger(expected={"kind": "weeks"}, source={"kind": "object_storage"})
    (event,) = await events(bad.run())
    assert event["status"] == "error"
    assert "cannot start the completeness check: cannot rebuild an expected set" in event["message"]


def exploding_check(keys: tuple[str, ...]) -> list[str]:
    raise ConnectionError("storage unreachable")


@pytest.mark.asyncio
async def test_a_failing_check_yields_an_error_event_instead_of_crashing(tmp_path: Path) -> None:
    (event,) = await events(trigger(tmp_path, source=CallableSource(exploding_check)).run())
    assert event == {
        "status": "error",
        "message": "completeness check failed: ConnectionError: storage unreachable",
    }


_SEEN: list[int] = []


def flapping_hours(keys: tuple[str, ...]) -> list[str]:
    """All 24 hours at the first look, then hour 5 vanishes, then everything is back."""
    _SEEN.append(1)
    if len(_SEEN) == 1:
        return list(keys[:23])
    if len(_SEEN) == 2:
        return [key for key in keys if not key.endswith("T05:00:00")]
    return list(keys)


@pytest.mark.asyncio
async def test_a_disappearing_partition_is_waited_for_again(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """Regression: a partition seen once and then deleted must not be remembered as present."""
    _SEEN.clear()
    (event,) = await events(trigger(tmp_path, source=CallableSource(flapping_hours)).run())
    assert event["status"] == "success"
    assert len(_SEEN) == 3
    out = capfd.readouterr()
    assert "gone, completeness starts over: 2026-11-01T05:00:00" in out.out + out.err


@pytest.mark.asyncio
async def test_the_sleep_is_shortened_to_check_once_more_at_a_deadline(tmp_path: Path) -> None:
    fired = trigger(tmp_path, poke_interval=3600, timeout_at=datetime.now(UTC) + timedelta(seconds=0.2))
    (event,) = await events(fired.run(), limit=5)
    assert event["status"] == "timeout"


def test_many_triggers_run_concurrently_in_one_loop(tmp_path: Path) -> None:
    for hour in range(24):
        write_hour(tmp_path, hour)

    async def run_all() -> list[list[dict[str, Any]]]:
        return await asyncio.gather(*(events(trigger(tmp_path).run()) for _ in range(50)))

    results = asyncio.run(run_all())
    assert all(batch[0]["status"] == "success" for batch in results)


# -- Airflow 3.3 shared trigger streams and the bounded pool (issue 17) --------------------------

_CHECKS: list[int] = []


def counted_hours(keys: tuple[str, ...]) -> list[str]:
    """Every hour but the last for two looks, then all of them; counts the looks."""
    _CHECKS.append(1)
    return list(keys) if len(_CHECKS) > 2 else list(keys[:-1])


def test_triggers_on_the_same_partitions_share_one_stream_key_and_others_do_not(tmp_path: Path) -> None:
    one = trigger(tmp_path, timeout_at=datetime(2026, 11, 2, tzinfo=UTC))
    same = trigger(tmp_path, timeout_at=datetime(2026, 11, 3, tzinfo=UTC), grace_deadline=None)
    assert one.shared_stream_key() == same.shared_stream_key()
    assert one.shared_stream_key() != trigger(tmp_path, poke_interval=60).shared_stream_key()
    assert one.shared_stream_key() != trigger(tmp_path, expected=HoursOfDay("2026-11-02")).shared_stream_key()


@pytest.mark.asyncio
async def test_fifty_triggers_in_airflows_shared_stream_manager_check_once_per_interval(
    tmp_path: Path,
) -> None:
    """Fifty DAGs waiting for the same day: one check per interval for all of them, each gets its event."""
    from airflow.triggers.shared_stream import SharedStreamManager

    _CHECKS.clear()
    manager = SharedStreamManager()
    triggers = [
        trigger(tmp_path, source=CallableSource(counted_hours), poke_interval=0.05) for _ in range(50)
    ]

    async def consume(trigger_id: int, fired: PartitionCompletenessTrigger) -> dict[str, Any]:
        key = fired.shared_stream_key()
        stream = manager.subscribe(trigger_id=trigger_id, trigger=fired, key=key)
        try:
            async for event in fired.filter_shared_stream(stream):
                return dict(event.payload)
        finally:
            await manager.unsubscribe(trigger_id, key)
        raise AssertionError("no event")

    payloads = await asyncio.wait_for(
        asyncio.gather(*(consume(index, fired) for index, fired in enumerate(triggers))), timeout=20
    )
    await manager.stop_all()
    assert [payload["status"] for payload in payloads] == ["success"] * 50
    assert len(_CHECKS) == 3  # not 150


@pytest.mark.asyncio
async def test_a_slow_store_holds_at_most_its_share_of_the_check_threads(tmp_path: Path) -> None:
    """A store that hangs must not take every thread of the pool from the other triggers' checks."""
    import threading

    from airflow_training_guard.partitions import sources

    release = threading.Event()
    busy: list[str] = []

    def hanging(keys: tuple[str, ...]) -> list[str]:
        busy.append(threading.current_thread().name)
        release.wait(timeout=20)
        return list(keys)

    slow = [CallableSource(hanging).check_async(HOURS) for _ in range(10)]
    slow_tasks = [asyncio.create_task(check) for check in slow]
    await asyncio.sleep(0.3)
    for hour in range(24):
        write_hour(tmp_path, hour)
    fast = ObjectStorageSource(f"{tmp_path}/date={{date}}/hour={{hour}}")
    result = await asyncio.wait_for(fast.check_async(HOURS), timeout=10)
    assert result.is_complete
    assert len(busy) == sources.CHECKS_PER_STORE < sources.CHECK_THREADS
    assert all(name.startswith("training-guard-check") for name in busy)
    release.set()
    assert all(r.is_complete for r in await asyncio.gather(*slow_tasks))
