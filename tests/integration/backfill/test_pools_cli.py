"""Pools: created by `airflow training-guard pools sync` or `airflow pools import deploy/pools.json`.

Against the session's real Airflow metadata database. ``pools sync`` reads the pool names and sizes
from ``[training_guard]``, prints one plan line per pool first, and never shrinks a pool an operator
raised unless ``--force`` (issue 19: a sync during an incident cut the backfill pool an operator had
just raised back to 2 slots).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from airflow_training_guard.backfill.pools import DEFAULT_POOLS, read_pools

REPO_ROOT = Path(__file__).resolve().parents[3]


def _pools(airflow_cli) -> dict[str, dict]:
    proc = airflow_cli("pools", "list", "--output", "json")
    return {row["pool"]: row for row in json.loads(proc.stdout)}


def _set_pool(name: str, slots: int, description: str, *, include_deferred: bool) -> None:
    """What `airflow pools set` (or the UI) does: an operator tuning a pool by hand."""
    from airflow.models.pool import Pool
    from airflow.utils.session import create_session

    with create_session() as session:
        Pool.create_or_update_pool(
            name=name,
            slots=slots,
            description=description,
            include_deferred=include_deferred,
            session=session,
        )


def _db_pools(*names: str) -> dict[str, dict]:
    return {row["pool"]: row for row in read_pools(names)}


def _sync(capsys: pytest.CaptureFixture[str], **flags: bool) -> tuple[list[dict], list[str]]:
    """Run `pools sync -o json` in process; return (JSON rows on stdout, plan lines on stderr)."""
    from airflow_training_guard.cli.commands import pools_sync

    pools_sync(
        argparse.Namespace(
            dry_run=flags.get("dry_run", False), force=flags.get("force", False), output="json"
        )
    )
    out, err = capsys.readouterr()
    return json.loads(out), [line for line in err.splitlines() if line.startswith("plan: ")]


@pytest.fixture
def default_pool_options(monkeypatch: pytest.MonkeyPatch) -> None:
    for option in ("SLA_POOL", "SLA_POOL_SLOTS", "BACKFILL_POOL", "BACKFILL_POOL_SLOTS"):
        monkeypatch.delenv(f"AIRFLOW__TRAINING_GUARD__{option}", raising=False)


def test_pools_file_imports_with_the_real_airflow_cli(airflow_cli) -> None:
    airflow_cli("pools", "import", str(REPO_ROOT / "deploy" / "pools.json"))
    pools = _pools(airflow_cli)
    for spec in DEFAULT_POOLS:
        assert int(pools[spec.name]["slots"]) == spec.slots


def test_pools_sync_never_shrinks_an_operator_tuned_pool_unless_forced(
    airflow_db: Path, default_pool_options: None, capsys: pytest.CaptureFixture[str]
) -> None:
    from airflow_training_guard.cli.commands import pools_list

    _set_pool("training_backfill", 50, "raised during the incident", include_deferred=True)
    _set_pool("training_sla", 1, "operator note", include_deferred=False)

    rows, plan = _sync(capsys, dry_run=True)
    assert plan == [
        "plan: would shrink training_backfill from 50 to 2 slots: kept at 50, an operator set it; "
        "pass --force to shrink it",
        "plan: grow training_sla from 1 to 4 slots",
    ]
    assert {row["pool"]: row["action"] for row in rows} == {
        "training_backfill": "would-shrink",
        "training_sla": "grow",
    }
    pools = _db_pools("training_backfill", "training_sla")
    assert (pools["training_backfill"]["slots"], pools["training_sla"]["slots"]) == (50, 1), "dry run changed"

    rows, plan = _sync(capsys)
    assert [line.split()[1] for line in plan] == ["would", "grow"]
    pools = _db_pools("training_backfill", "training_sla")
    assert pools["training_backfill"]["slots"] == 50
    # Growing changes the slots only: what the operator set on the pool stays.
    assert pools["training_sla"] == {
        "pool": "training_sla",
        "slots": 4,
        "include_deferred": False,
        "description": "operator note",
    }

    rows, _ = _sync(capsys)
    assert {row["pool"]: (row["action"], row["slots"]) for row in rows} == {
        "training_backfill": ("would-shrink", 50),
        "training_sla": ("keep", 4),
    }

    rows, plan = _sync(capsys, force=True)
    assert plan[0] == "plan: shrink training_backfill from 50 to 2 slots (--force)"
    assert _db_pools("training_backfill")["training_backfill"]["slots"] == 2

    rows, _ = _sync(capsys)
    assert {row["action"] for row in rows} == {"keep"}
    pools_list(argparse.Namespace(output="json"))
    assert {row["status"] for row in json.loads(capsys.readouterr().out)} == {"ok"}


def test_pools_sync_prints_the_plan_before_the_result_in_a_table(
    airflow_db: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from airflow_training_guard.cli.commands import pools_sync

    monkeypatch.setenv("AIRFLOW__TRAINING_GUARD__SLA_POOL", "table_sla")
    monkeypatch.setenv("AIRFLOW__TRAINING_GUARD__BACKFILL_POOL", "table_backfill")
    pools_sync(argparse.Namespace(dry_run=False, force=False, output="table"))
    lines = capsys.readouterr().out.splitlines()
    assert lines[:2] == ["plan: create table_backfill with 2 slots", "plan: create table_sla with 4 slots"]
    assert lines[2].split() == ["pool", "action", "current_slots", "configured_slots", "slots"]
    assert lines[3].split() == ["table_backfill", "create", "-", "2", "2"]


def test_airflow_training_guard_pools_sync_honours_the_configured_names_and_sizes(
    airflow_db: Path, airflow_env: dict[str, str]
) -> None:
    """The real `airflow training-guard pools sync`, configured only through AIRFLOW__TRAINING_GUARD__*."""
    env = {
        **airflow_env,
        "AIRFLOW__TRAINING_GUARD__SLA_POOL": "gold_sla",
        "AIRFLOW__TRAINING_GUARD__SLA_POOL_SLOTS": "8",
        "AIRFLOW__TRAINING_GUARD__BACKFILL_POOL": "gold_backfill",
        "AIRFLOW__TRAINING_GUARD__BACKFILL_POOL_SLOTS": "3",
    }
    airflow_bin = str(Path(sys.executable).with_name("airflow"))
    proc = subprocess.run(
        [airflow_bin, "training-guard", "pools", "sync", "--output", "json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    rows = json.loads(proc.stdout)
    assert {row["pool"]: (row["action"], row["slots"]) for row in rows} == {
        "gold_backfill": ("create", 3),
        "gold_sla": ("create", 8),
    }
    assert "plan: create gold_sla with 8 slots" in proc.stderr
    pools = _db_pools("gold_sla", "gold_backfill")
    assert (pools["gold_sla"]["slots"], pools["gold_backfill"]["slots"]) == (8, 3)
    assert pools["gold_sla"]["include_deferred"] is True
