"""Implementations of ``airflow training-guard pools sync|list`` (loaded lazily by the CLI)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from airflow_training_guard.backfill.pools import DEFAULT_POOLS, read_pools, sync_pools


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


def pools_sync(args: argparse.Namespace) -> None:
    """Create or update the default pools; with ``--dry-run`` only report what would change."""
    if getattr(args, "dry_run", False):
        current = {row["pool"]: row for row in read_pools(pool.name for pool in DEFAULT_POOLS)}
        rows = []
        for spec in DEFAULT_POOLS:
            found = current.get(spec.name)
            if found is None:
                action = "would create"
            elif (found["slots"], found["include_deferred"], found["description"]) == (
                spec.slots,
                spec.include_deferred,
                spec.description,
            ):
                action = "unchanged"
            else:
                action = "would update"
            rows.append({"pool": spec.name, "action": action, "slots": spec.slots})
        _print(rows, getattr(args, "output", None))
        return
    results = sync_pools()
    _print(
        [{"pool": result.name, "action": result.action, "slots": result.slots} for result in results],
        getattr(args, "output", None),
    )


def pools_list(args: argparse.Namespace) -> None:
    """Show the default pools as Airflow has them; ``missing`` when a pool does not exist."""
    current = {row["pool"]: row for row in read_pools(pool.name for pool in DEFAULT_POOLS)}
    rows = []
    for spec in DEFAULT_POOLS:
        found = current.get(spec.name)
        rows.append(
            {
                "pool": spec.name,
                "slots": found["slots"] if found else "-",
                "expected_slots": spec.slots,
                "status": "missing"
                if found is None
                else ("ok" if found["slots"] == spec.slots else "differs"),
            }
        )
    _print(rows, getattr(args, "output", None))
