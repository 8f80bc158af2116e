"""``airflow training-guard partitions status|plan``: the coverage grid and a backfill dry run, in a terminal.

Both read the pipeline the way the coverage page does (its serialized backfill DAG, then the
ledger: :mod:`airflow_training_guard.plugins.pipelines`) and print through Airflow's own
``AirflowConsole`` (``-o table|json|yaml|plain``), like ``airflow dags list``.

- ``status PIPELINE [--from DATE --to DATE] [--where city=berlin,oslo]``: one row per partition key
  with its state (committed, running, failed, superseded, missing), commits, fencing token, version,
  rows, holder, since when and the last error;
- ``plan PIPELINE --from DATE --to DATE [--where ...] --reprocess missing|failed|all``: which keys a
  backfill would run and which it would skip, and why. The request is checked by the same
  ``validate_request`` as the backfill DAG and the coverage page; nothing is claimed or triggered.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Sequence
from typing import Any

from airflow_training_guard.backfill.validation import (
    END_FIELD,
    REPROCESS_FIELD,
    START_FIELD,
    BackfillRequestError,
)
from airflow_training_guard.exceptions import GuardConfigError
from airflow_training_guard.partitions.coverage import (
    CellState,
    GridSpec,
    cell_state,
    read_coverage,
)
from airflow_training_guard.partitions.ledger import LedgerEntry, PartitionLedger
from airflow_training_guard.plugins.pipelines import PipelineInfo, ledger_engine, load_pipeline

DEFAULT_DAYS = 30
_ERROR_WIDTH = 120


def _fail(message: str) -> None:
    """Exit with status 1 and ``message`` on stderr (how Airflow's own commands refuse input)."""
    raise SystemExit(message)


def _pipeline(name: str) -> PipelineInfo:
    from airflow.utils.session import create_session

    from airflow_training_guard.plugins.pipelines import pipeline_dag_ids

    with create_session() as session:
        found = load_pipeline(name, session)
        known = [dag_id.removesuffix("_backfill") for dag_id in pipeline_dag_ids(session)]
    if found is None:
        _fail(
            f"no training-guard pipeline {name!r}: no parsed DAG '{name}_backfill' tagged training-guard and "
            f"backfill. Known pipelines: {', '.join(known) or 'none (are the DAGs parsed? airflow dags list)'}"
        )
    assert found is not None
    return found


def _date(value: str | None, flag: str) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        _fail(f"{flag} {value!r} is not a date in the form YYYY-MM-DD (e.g. 2026-11-01)")
    return None


def parse_where(items: Sequence[str] | None, pipeline: PipelineInfo) -> dict[str, tuple[str, ...]]:
    """``["city=berlin,oslo"]`` -> ``{"city": ("berlin", "oslo")}``; an unknown dimension is refused."""
    names = [dimension.name for dimension in pipeline.dimensions]
    where: dict[str, tuple[str, ...]] = {}
    for item in items or ():
        for part in item.split(";"):
            if not part.strip():
                continue
            name, sep, values = part.partition("=")
            name = name.strip()
            if not sep or not values.strip():
                _fail(
                    f"--where {part!r} must look like NAME=VALUE[,VALUE...], e.g. --where {names[0] if names else 'city'}=berlin,oslo"
                )
            if name not in names:
                _fail(
                    f"--where names dimension {name!r}, but pipeline {pipeline.name!r} has "
                    f"{names or 'no dimension besides the date'}"
                )
            where[name] = tuple(value.strip() for value in values.split(",") if value.strip())
    return where


def _iso(value: dt.datetime | None) -> str:
    return value.replace(tzinfo=dt.UTC).isoformat() if value is not None else ""


def _short(text: str | None) -> str:
    if not text:
        return ""
    line = " ".join(text.split())
    return line if len(line) <= _ERROR_WIDTH else line[: _ERROR_WIDTH - 3] + "..."


def status(args: argparse.Namespace) -> None:
    """Print every partition key of the range with its state and ledger details."""
    from airflow.cli.simple_table import AirflowConsole

    pipeline = _pipeline(args.pipeline)
    yesterday = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
    last = _date(args.date_to, "--to") or yesterday
    first = _date(args.date_from, "--from") or last - dt.timedelta(days=DEFAULT_DAYS - 1)
    try:
        spec = GridSpec(
            namespace=pipeline.name,
            dimensions=tuple((d.name, d.values) for d in pipeline.dimensions),
            date_from=first,
            date_to=last,
            where=parse_where(args.where, pipeline),
            stale_after=pipeline.stale_after,
        )
        engine = ledger_engine()
        grid = read_coverage(engine, spec)
    except GuardConfigError as err:
        _fail(str(err))
        return
    entries = {
        entry.partition_key: entry
        for entry in PartitionLedger(engine, namespace=pipeline.name, create_tables=False).entries()
    }
    rows: list[dict[str, Any]] = []
    for row_index in range(len(grid.rows)):
        for column in range(len(grid.dates)):
            key = grid.key(row_index, column)
            entry = entries.get(key)
            rows.append(
                {
                    "partition_key": key,
                    "state": grid.state(row_index, column).value,
                    "commits": entry.commits if entry else 0,
                    "fencing_token": entry.fencing_token if entry else "",
                    "version": entry.committed_token if entry and entry.committed_token is not None else "",
                    "row_count": entry.row_count if entry and entry.row_count is not None else "",
                    "holder": (entry.holder or "") if entry else "",
                    "since": _iso(entry.claimed_at) if entry else "",
                    "error": _short(entry.error) if entry else "",
                }
            )
    AirflowConsole().print_as(data=rows, output=args.output)
    if args.output in ("table", "plain"):
        counts = ", ".join(f"{count} {state}" for state, count in grid.counts.items())
        print(
            f"{pipeline.name} {first.isoformat()}..{last.isoformat()}: {len(rows)} partition keys: {counts}",
            file=sys.stderr,
        )


def _run_reason(entry: LedgerEntry | None, state: CellState) -> str:
    if entry is None or state is CellState.MISSING:
        return "never done"
    if state is CellState.FAILED:
        return "last attempt failed"
    if state is CellState.SUPERSEDED:
        return "stale claim: its worker is gone"
    if state is CellState.COMMITTED:
        return "replace the committed output with a new version (reprocess all)"
    return "take over the live claim (reprocess all)"


def _skip_reason(state: CellState) -> str:
    if state is CellState.COMMITTED:
        return "already committed (use --reprocess all to replace it)"
    if state is CellState.FAILED:
        return "last attempt failed (use --reprocess failed to retry it)"
    if state is CellState.RUNNING:
        return "in progress: a live claim holds it"
    return state.value


def plan(args: argparse.Namespace) -> None:
    """Dry run of a backfill: every key of the request with ``run`` or ``skip`` and the reason."""
    from airflow.cli.simple_table import AirflowConsole

    pipeline = _pipeline(args.pipeline)
    form: dict[str, object] = {
        START_FIELD: args.date_from,
        END_FIELD: args.date_to,
        REPROCESS_FIELD: args.reprocess,
    }
    form.update({name: list(values) for name, values in parse_where(args.where, pipeline).items()})
    try:
        request = pipeline.validate(form)
    except BackfillRequestError as err:
        _fail(str(err))
        return
    engine = ledger_engine()
    ledger = PartitionLedger(
        engine, namespace=pipeline.name, stale_after=pipeline.stale_after, create_tables=False
    )
    keys = request.partition_keys()
    decided = ledger.plan(keys, request.reprocess)
    entries = {entry.partition_key: entry for entry in ledger.entries()}
    stale_before = dt.datetime.now(dt.UTC).replace(tzinfo=None) - pipeline.stale_after
    to_run = set(decided.to_run)
    rows = []
    for key in keys:
        entry = entries.get(key)
        state = cell_state(
            entry.state if entry else None, entry.claimed_at if entry else None, stale_before=stale_before
        )
        run = key in to_run
        rows.append(
            {
                "partition_key": key,
                "action": "run" if run else "skip",
                "state": state.value,
                "reason": _run_reason(entry, state) if run else _skip_reason(state),
            }
        )
    AirflowConsole().print_as(data=rows, output=args.output)
    if args.output in ("table", "plain"):
        print(f"dry run, nothing started: {request.describe()}; {decided.describe()}", file=sys.stderr)


__all__ = ["parse_where", "plan", "status"]
