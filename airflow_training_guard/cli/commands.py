"""Implementations of ``airflow training-guard pools sync|list`` (loaded lazily by the CLI)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from airflow_training_guard.backfill.pools import (
    PoolSpec,
    configured_pools,
    plan_pool_changes,
    read_pools,
    sync_pools,
)
from airflow_training_guard.exceptions import GuardConfigError


def _print(rows: list[dict[str, Any]], output: str | None) -> None:
    if output == "json":
        print(json.dumps(rows, indent=2, sort_keys=True))
        return
    if not rows:
        print("(no pools)")
        return
    columns = list(rows[0])
    widths = {col: max(len(col), *(len(str(row[col])) for row in rows)) for col in columns}
    print("  ".join(col.ljust(widths[col]) for col in columns))
    for row in rows:
        print("  ".join(str(row[col]).ljust(widths[col]) for col in columns))


def _configured_pools_or_exit() -> tuple[PoolSpec, ...]:
    """The configured pools; a bad ``[training_guard]`` option ends the command with its message."""
    try:
        return configured_pools()
    except GuardConfigError as err:
        raise SystemExit(f"error: {err}") from None


def pools_sync(args: argparse.Namespace) -> None:
    """Create or grow the configured pools; print the plan first; ``--dry-run`` stops after it.

    One ``plan:`` line per pool (create / grow / keep / would-shrink, or shrink with ``--force``)
    goes to stdout before anything changes, or to stderr with ``--output json`` so the JSON result
    stays parseable. Then the changes made, as a table or JSON.
    """
    force = bool(getattr(args, "force", False))
    dry_run = bool(getattr(args, "dry_run", False))
    output = getattr(args, "output", None)
    pools = _configured_pools_or_exit()
    plan = sync_pools(pools, force=force, dry_run=True)
    plan_stream = sys.stderr if output == "json" else sys.stdout
    for change in plan:
        print(f"plan: {change.describe()}", file=plan_stream)
    changes = plan if dry_run else sync_pools(pools, force=force)
    _print([change.as_row() for change in changes], output)


def pools_list(args: argparse.Namespace) -> None:
    """Show the configured pools as Airflow has them, and what ``pools sync`` would do to each."""
    pools = _configured_pools_or_exit()
    current = {row["pool"]: int(row["slots"]) for row in read_pools(pool.name for pool in pools)}
    rows = []
    for change in plan_pool_changes(pools, current):
        rows.append(
            {
                "pool": change.name,
                "slots": "-" if change.current_slots is None else change.current_slots,
                "configured_slots": change.configured_slots,
                "status": {"create": "missing", "keep": "ok"}.get(change.action.value, "differs"),
                "sync_would": change.action.value,
            }
        )
    _print(rows, getattr(args, "output", None))
