"""The pod heartbeat watchdog, driven with a fake clock and fake log reads (no threads, no sleeping)."""

from __future__ import annotations

from airflow_training_guard.kubernetes.watchdog import PodHeartbeatWatchdog
from airflow_training_guard.runtime.heartbeat import format_heartbeat_line


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_progressing_pod_is_left_alone_and_a_stalled_one_is_deleted_once() -> None:
    clock, deleted, logs = Clock(), [], [format_heartbeat_line(1)]
    dog = PodHeartbeatWatchdog(
        read_tail=lambda: list(logs),
        delete_pod=lambda: deleted.append(True),
        stall_after=60,
        startup_grace=30,
        poll_interval=10,
        pod_name="p",
        clock=clock,
    )
    assert dog.check_once() is False
    second = format_heartbeat_line(2)
    clock.now, logs[:] = 50, [second]
    assert dog.check_once() is False
    clock.now = 111
    assert dog.check_once() is True
    assert deleted == [True]
    assert dog.stall_detail is not None and "last step 2" in dog.stall_detail
    assert dog.last_log_lines == [second]


def test_a_log_read_error_does_not_count_as_a_stall_or_delete() -> None:
    clock, deleted = Clock(), []

    def broken() -> list[str]:
        raise OSError("connection reset")

    dog = PodHeartbeatWatchdog(
        read_tail=broken,
        delete_pod=lambda: deleted.append(True),
        stall_after=1,
        startup_grace=0,
        poll_interval=1,
        pod_name="p",
        clock=clock,
    )
    clock.now = 100
    assert dog.check_once() is False and deleted == []
