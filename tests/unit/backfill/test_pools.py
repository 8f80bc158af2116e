"""Pool definitions: the CLI and deploy/pools.json create the same pools."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from airflow_training_guard.backfill.pools import DEFAULT_POOLS, PoolSpec, pools_file_content

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
