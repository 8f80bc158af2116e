"""GuardedPodTrigger survives the triggerer's serialization and applies the shared stall rule."""

from __future__ import annotations

import datetime as dt
import importlib

from airflow_training_guard.policies.stall import StallWatch
from airflow_training_guard.triggers.training_pod import CLASSPATH, STALL_SETTINGS_KEY, GuardedPodTrigger

SETTINGS = {"stall_after": 120.0, "startup_grace": 600.0, "poll": 10.0}


def test_serialized_trigger_rebuilds_with_its_class_and_watchdog_settings() -> None:
    trigger = GuardedPodTrigger(
        pod_name="train-abc",
        pod_namespace="training",
        trigger_start_time=dt.datetime(2026, 11, 21, tzinfo=dt.UTC),
        base_container_name="base",
        trigger_kwargs={STALL_SETTINGS_KEY: SETTINGS},
    )
    classpath, kwargs = trigger.serialize()
    assert classpath == CLASSPATH
    module, _, name = classpath.rpartition(".")
    rebuilt = getattr(importlib.import_module(module), name)(**kwargs)
    assert isinstance(rebuilt, GuardedPodTrigger)
    assert rebuilt.trigger_kwargs[STALL_SETTINGS_KEY] == SETTINGS
    assert rebuilt.serialize() == (classpath, kwargs)


def test_stall_rule_allows_startup_grace_before_the_first_heartbeat_then_stall_after() -> None:
    watch = StallWatch(stall_after=120, startup_grace=600, started=0)
    assert watch.observe(None, 700) is None  # still within 600 + 120 s of start-up
    assert watch.observe(None, 720) == "no heartbeat progress for 720s (stall_after 2m); last step none"
    watch = StallWatch(stall_after=120, startup_grace=600, started=0)
    assert watch.observe(5, 30) is None
    assert watch.observe(5, 149) is None  # the same step: waiting, 119 s
    assert watch.observe(6, 150) is None  # progress resets the clock
    assert watch.observe(6, 269) is None
    assert watch.observe(6, 270) == "no heartbeat progress for 120s (stall_after 2m); last step 6"
    assert watch.observe(None, 300) is not None, "a log window without heartbeats is no progress"
