"""Pools: created by `airflow training-guard pools sync` or `airflow pools import deploy/pools.json`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from airflow_training_guard.backfill.pools import DEFAULT_POOLS

REPO_ROOT = Path(__file__).resolve().parents[3]


def _pools(airflow_cli) -> dict[str, dict]:
    proc = airflow_cli("pools", "list", "--output", "json")
    return {row["pool"]: row for row in json.loads(proc.stdout)}


def test_pools_file_imports_with_the_real_airflow_cli(airflow_cli) -> None:
    airflow_cli("pools", "import", str(REPO_ROOT / "deploy" / "pools.json"))
    pools = _pools(airflow_cli)
    for spec in DEFAULT_POOLS:
        assert int(pools[spec.name]["slots"]) == spec.slots


def test_pools_sync_command_is_idempotent(
    airflow_db: Path, airflow_cli, capsys: pytest.CaptureFixture[str]
) -> None:
    from airflow_training_guard.cli.commands import pools_list, pools_sync

    airflow_cli("pools", "set", "training_backfill", "50", "too many slots")
    pools_sync(argparse.Namespace(dry_run=True, output="json"))
    planned = {row["pool"]: row["action"] for row in json.loads(capsys.readouterr().out)}
    assert planned["training_backfill"] == "would update"
    pools_sync(argparse.Namespace(dry_run=False, output="json"))
    capsys.readouterr()
    pools_sync(argparse.Namespace(dry_run=False, output="json"))
    assert {row["action"] for row in json.loads(capsys.readouterr().out)} == {"unchanged"}
    pools_list(argparse.Namespace(output="json"))
    assert {row["status"] for row in json.loads(capsys.readouterr().out)} == {"ok"}
    assert int(_pools(airflow_cli)["training_backfill"]["slots"]) == 2


def test_airflow_training_guard_pools_sync_through_the_provider(airflow_cli) -> None:
    from airflow_training_guard.get_provider_info import get_provider_info

    if "cli" not in get_provider_info():
        pytest.skip(
            "get_provider_info() has no 'cli' entry yet; add "
            "'cli': ['airflow_training_guard.cli.definition.get_training_guard_cli_commands']"
        )
    proc = airflow_cli("training-guard", "pools", "sync", "--output", "json")
    assert {row["pool"] for row in json.loads(proc.stdout)} == {spec.name for spec in DEFAULT_POOLS}
