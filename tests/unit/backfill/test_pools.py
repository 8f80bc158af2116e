"""Pool definitions: the CLI and deploy/pools.json create the same pools; the sync plan never shrinks unasked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from airflow_training_guard.backfill.pools import (
    DEFAULT_POOLS,
    PoolAction,
    PoolChange,
    PoolSpec,
    configured_pools,
    plan_pool_changes,
    pools_file_content,
)
from airflow_training_guard.exceptions import GuardConfigError

REPO_ROOT = Path(__file__).resolve().parents[3]


def test_deploy_pools_json_matches_the_package_definitions() -> None:
    assert json.loads((REPO_ROOT / "deploy" / "pools.json").read_text()) == pools_file_content()


def test_backfill_pool_has_fewer_slots_than_it_could_starve() -> None:
    pools = {pool.name: pool for pool in DEFAULT_POOLS}
    assert pools["training_backfill"].slots >= 1 and pools["training_sla"].slots >= 1
    assert all(pool.include_deferred for pool in DEFAULT_POOLS)


@pytest.mark.parametrize("slots", [0, -1, 1.5, True])
def test_unbounded_or_empty_pools_are_rejected(slots: object) -> None:
    with pytest.raises(ValueError, match=r"use an integer >= 1"):
        PoolSpec("p", slots, "d")  # type: ignore[arg-type]


# -- configured pools and the sync plan (issue 19) ------------------------------------------------------


def _clear_pool_options(monkeypatch: pytest.MonkeyPatch) -> None:
    for option in ("SLA_POOL", "SLA_POOL_SLOTS", "BACKFILL_POOL", "BACKFILL_POOL_SLOTS"):
        monkeypatch.delenv(f"AIRFLOW__TRAINING_GUARD__{option}", raising=False)


def test_configured_pools_default_to_the_shipped_pools(monkeypatch: pytest.MonkeyPatch) -> None:
    _clear_pool_options(monkeypatch)
    assert configured_pools() == DEFAULT_POOLS


def test_configured_pools_take_names_and_slots_from_the_training_guard_options(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _clear_pool_options(monkeypatch)
    monkeypatch.setenv("AIRFLOW__TRAINING_GUARD__SLA_POOL", "gold")
    monkeypatch.setenv("AIRFLOW__TRAINING_GUARD__SLA_POOL_SLOTS", "8")
    monkeypatch.setenv("AIRFLOW__TRAINING_GUARD__BACKFILL_POOL", "slow_lane")
    monkeypatch.setenv("AIRFLOW__TRAINING_GUARD__BACKFILL_POOL_SLOTS", "3")
    assert [(pool.name, pool.slots) for pool in configured_pools()] == [("slow_lane", 3), ("gold", 8)]
    assert all(pool.include_deferred for pool in configured_pools())


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            "two",
            r"pool 'training_sla': sla_pool_slots = 'two' is not a number; set \[training_guard\] "
            r"sla_pool_slots \(or AIRFLOW__TRAINING_GUARD__SLA_POOL_SLOTS\) to an integer >= 1",
        ),
        ("0", r"sla_pool_slots = 0 would never run anything"),
        ("-1", r"sla_pool_slots = -1 .*-1 is unlimited"),
    ],
)
def test_bad_slot_options_are_refused_naming_the_option_and_the_fix(
    monkeypatch: pytest.MonkeyPatch, value: str, message: str
) -> None:
    _clear_pool_options(monkeypatch)
    monkeypatch.setenv("AIRFLOW__TRAINING_GUARD__SLA_POOL_SLOTS", value)
    with pytest.raises(GuardConfigError, match=message):
        configured_pools()


def test_one_name_for_both_pools_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """With one pool, a backfill would take the daily run's slots: the failure the pools exist for."""
    _clear_pool_options(monkeypatch)
    monkeypatch.setenv("AIRFLOW__TRAINING_GUARD__SLA_POOL", "training")
    monkeypatch.setenv("AIRFLOW__TRAINING_GUARD__BACKFILL_POOL", "training")
    with pytest.raises(GuardConfigError, match=r"sla_pool and backfill_pool are both 'training'"):
        configured_pools()


SPECS = (PoolSpec("training_backfill", 2, "b"), PoolSpec("training_sla", 4, "s"))


@pytest.mark.parametrize(
    ("current", "force", "actions"),
    [
        ({}, False, ["create", "create"]),
        ({"training_backfill": 1, "training_sla": 4}, False, ["grow", "keep"]),
        ({"training_backfill": 50, "training_sla": 4}, False, ["would-shrink", "keep"]),
        ({"training_backfill": 50, "training_sla": 4}, True, ["shrink", "keep"]),
        ({"training_backfill": -1, "training_sla": 2}, False, ["would-shrink", "grow"]),
        ({"training_backfill": -1, "training_sla": 2}, True, ["shrink", "grow"]),
    ],
)
def test_sync_plan_creates_and_grows_but_shrinks_only_when_forced(
    current: dict[str, int], force: bool, actions: list[str]
) -> None:
    """An operator who raised the backfill pool during an incident must not have it cut by a sync."""
    assert [change.action.value for change in plan_pool_changes(SPECS, current, force=force)] == actions


def test_plan_lines_say_what_changes_and_how_to_shrink() -> None:
    lines = [
        change.describe() for change in plan_pool_changes(SPECS, {"training_backfill": -1, "training_sla": 2})
    ]
    assert lines == [
        "would shrink training_backfill from unlimited to 2 slots: kept at unlimited, an operator set it; "
        "pass --force to shrink it",
        "grow training_sla from 2 to 4 slots",
    ]
    assert PoolChange("p", PoolAction.CREATE, None, 3).describe() == "create p with 3 slots"
    assert PoolChange("p", PoolAction.KEEP, 3, 3).describe() == "keep p at 3 slots"
    assert PoolChange("p", PoolAction.SHRINK, 9, 3).describe() == "shrink p from 9 to 3 slots (--force)"


def test_a_kept_pool_reports_the_slots_it_keeps() -> None:
    kept = PoolChange("p", PoolAction.WOULD_SHRINK, 50, 2)
    assert kept.as_row() == {
        "pool": "p",
        "action": "would-shrink",
        "current_slots": 50,
        "configured_slots": 2,
        "slots": 50,
    }
    assert PoolChange("p", PoolAction.CREATE, None, 2).as_row()["current_slots"] == "-"
