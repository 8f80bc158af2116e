"""Partition coverage: which keys of a pipeline are committed, running, failed, superseded or missing.

A read-only view of the :class:`~airflow_training_guard.partitions.ledger.PartitionLedger` table for
one namespace, laid out as a grid: one row per combination of dimension values (``berlin``), one
column per date, one cell per partition key (``berlin|2026-11-01``). The coverage page of the
Airflow UI plugin and ``airflow training-guard partitions status`` both read it through
:func:`read_coverage`, so they always agree.

Cell states (:class:`CellState`), derived from the ledger row of the key:

- ``committed``: the key's output is committed (``state = committed``);
- ``running``: a live claim holds the key (``state = claimed``, younger than ``stale_after``), or
  a queued or running backfill run will process it (``queued``);
- ``failed``: the last attempt failed; ``error`` says why;
- ``superseded``: a claim older than ``stale_after`` that never committed nor failed: its worker is
  gone (killed, preempted), so the next run in any mode supersedes it (the ledger's plan counts
  it as not done);
- ``missing``: never attempted (no ledger row, or a row that was never claimed).

The grid payload is compact on purpose (10,950 cells for 30 values x 365 days): one string per
row with one letter per date (:data:`STATE_CODES`); the details of one cell come from
:func:`read_cell`. Pure SQLAlchemy Core, no Airflow import.
"""

from __future__ import annotations

import datetime as dt
import enum
import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, select

from airflow_training_guard.exceptions import GuardConfigError
from airflow_training_guard.partitions.keys import DELIMITER, format_key
from airflow_training_guard.partitions.ledger import entry_from_row, ledger_table

__all__ = [
    "STATE_CODES",
    "CellDetail",
    "CellState",
    "CoverageGrid",
    "GridSpec",
    "QueuedKey",
    "cell_state",
    "read_cell",
    "read_coverage",
]

#: The longest date range one grid shows (ten years); a bigger one is refused with this limit.
MAX_GRID_DAYS = 3660


class CellState(enum.StrEnum):
    """The state of one partition key, as the grid colours it."""

    COMMITTED = "committed"
    RUNNING = "running"
    FAILED = "failed"
    SUPERSEDED = "superseded"
    MISSING = "missing"


#: One letter per state in the grid payload's row strings.
STATE_CODES: Mapping[CellState, str] = {
    CellState.COMMITTED: "C",
    CellState.RUNNING: "R",
    CellState.FAILED: "F",
    CellState.SUPERSEDED: "S",
    CellState.MISSING: "M",
}
_BY_CODE = {code: state for state, code in STATE_CODES.items()}


def _now() -> dt.datetime:
    # The ledger stores naive UTC.
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def cell_state(
    state: str | None,
    claimed_at: dt.datetime | None,
    *,
    stale_before: dt.datetime,
) -> CellState:
    """The grid state of a ledger row (``state`` None: no row at all)."""
    if state == "committed":
        return CellState.COMMITTED
    if state == "failed":
        return CellState.FAILED
    if state == "claimed":
        if claimed_at is not None and claimed_at < stale_before:
            return CellState.SUPERSEDED
        return CellState.RUNNING
    return CellState.MISSING


@dataclass(frozen=True)
class GridSpec:
    """What to show: a namespace, its dimensions, a date range (both ends included) and filters.

    :param namespace: the ledger namespace (the pipeline's name).
    :param dimensions: ``(name, known values)`` per dimension before the date, in key order. Empty
        values: take the values found in the ledger.
    :param date_from: first date (included).
    :param date_to: last date (included).
    :param where: per dimension name, the values to keep (``{"city": ("berlin", "oslo")}``).
    :param stale_after: a claim older than this is shown as ``superseded`` (the pipeline's
        ledger ``stale_after``: twice its ``execution_timeout``).
    """

    namespace: str
    dimensions: tuple[tuple[str, tuple[str, ...]], ...]
    date_from: dt.date
    date_to: dt.date
    where: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    stale_after: dt.timedelta = dt.timedelta(hours=6)

    def __post_init__(self) -> None:
        if self.date_from > self.date_to:
            raise GuardConfigError(
                f"date range {self.date_from.isoformat()}..{self.date_to.isoformat()} is reversed; swap "
                "the dates (both ends are included)"
            )
        days = (self.date_to - self.date_from).days + 1
        if days > MAX_GRID_DAYS:
            raise GuardConfigError(
                f"date range {self.date_from.isoformat()}..{self.date_to.isoformat()} is {days} days; a grid "
                f"shows at most {MAX_GRID_DAYS}: narrow the range"
            )
        names = [name for name, _ in self.dimensions]
        unknown = sorted(set(self.where) - set(names))
        if unknown:
            raise GuardConfigError(
                f"filter on unknown dimension(s) {unknown}; pipeline {self.namespace!r} has "
                f"{names or 'no dimensions besides the date'}"
            )

    def dates(self) -> list[str]:
        days = (self.date_to - self.date_from).days + 1
        return [(self.date_from + dt.timedelta(days=offset)).isoformat() for offset in range(days)]


@dataclass(frozen=True)
class CoverageGrid:
    """The coverage of one namespace over a date range.

    ``rows[i]`` are the dimension values of row ``i``; ``states[i][j]`` is the :data:`STATE_CODES`
    letter of the key ``format_key(*rows[i], dates[j])``.
    """

    namespace: str
    dimension_names: tuple[str, ...]
    dates: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    states: tuple[str, ...]
    counts: Mapping[str, int]
    queued: Mapping[str, str] = field(default_factory=dict)

    def key(self, row: int, column: int) -> str:
        return format_key(*self.rows[row], self.dates[column])

    def state(self, row: int, column: int) -> CellState:
        return _BY_CODE[self.states[row][column]]

    def keys_in(self, *states: CellState) -> list[str]:
        """Every key whose cell is in one of ``states``, row by row."""
        wanted = {STATE_CODES[state] for state in states}
        return [
            self.key(row, column)
            for row, line in enumerate(self.states)
            for column, code in enumerate(line)
            if code in wanted
        ]

    def to_payload(self) -> dict[str, Any]:
        """The JSON body of the grid endpoint: compact, one string per row."""
        return {
            "namespace": self.namespace,
            "dimensions": list(self.dimension_names),
            "dates": list(self.dates),
            "rows": [list(row) for row in self.rows],
            "states": list(self.states),
            "codes": {code: state.value for state, code in STATE_CODES.items()},
            "counts": dict(self.counts),
            "queued": dict(self.queued),
        }


def _row_of(key: str) -> tuple[str, ...]:
    return tuple(key.split(DELIMITER)[:-1])


def _split(key: str, dimensions: int) -> tuple[tuple[str, ...], str] | None:
    parts = key.split(DELIMITER)
    if len(parts) != dimensions + 1:
        return None  # a key of another shape in the same namespace: not part of this grid
    return tuple(parts[:-1]), parts[-1]


@dataclass(frozen=True)
class QueuedKey:
    """A key an active (queued or running) backfill run will process.

    :param run_id: the run.
    :param queued_at: when the run was queued (naive UTC). A ledger claim at or after this time
        means the run (or a newer one) already took the key, and the ledger state is shown instead.
    """

    run_id: str
    queued_at: dt.datetime


def is_pending(queued: QueuedKey | None, claimed_at: dt.datetime | None) -> bool:
    """Whether ``queued``'s run has yet to claim the key last claimed at ``claimed_at``."""
    return queued is not None and (claimed_at is None or claimed_at < queued.queued_at)


def read_coverage(
    engine: Engine,
    spec: GridSpec,
    *,
    queued: Mapping[str, QueuedKey] | None = None,
    now: dt.datetime | None = None,
) -> CoverageGrid:
    """Read the ledger rows of ``spec.namespace`` once and lay them out as a grid.

    :param engine: the ledger's engine (read only; the tables must exist).
    :param spec: namespace, dimensions, date range and filters.
    :param queued: keys that active backfill runs will process (:class:`QueuedKey`); such a key is
        shown ``running`` until the run claims it, then as the ledger says.
    :param now: the current naive UTC time (injectable for tests).
    """
    queued = dict(queued or {})
    stale_before = (now or _now()) - spec.stale_after
    dates = spec.dates()
    first, last = dates[0], dates[-1]
    width = len(spec.dimensions)
    table = ledger_table
    running = STATE_CODES[CellState.RUNNING]
    found: dict[tuple[str, ...], dict[str, str]] = {}
    pending: dict[str, str] = {}
    seen: set[str] = set()
    with engine.connect() as conn:
        result = conn.execute(
            select(table.c.partition_key, table.c.state, table.c.claimed_at).where(
                table.c.namespace == spec.namespace
            )
        )
        for key, state, claimed_at in result:
            split = _split(key, width)
            if split is None:
                continue
            values, day = split
            if not first <= day <= last:
                continue
            seen.add(key)
            queued_key = queued.get(key)
            if queued_key is not None and is_pending(queued_key, claimed_at):
                code = running
                pending[key] = queued_key.run_id
            else:
                code = STATE_CODES[cell_state(state, claimed_at, stale_before=stale_before)]
            found.setdefault(values, {})[day] = code
    for key, queued_key in queued.items():
        split = _split(key, width)
        if key in seen or split is None or not first <= split[1] <= last:
            continue
        found.setdefault(split[0], {})[split[1]] = running  # no ledger row yet: not claimed
        pending[key] = queued_key.run_id

    value_lists: list[tuple[str, ...]] = []
    for index, (name, known) in enumerate(spec.dimensions):
        values = known or tuple(sorted({row[index] for row in found}))
        wanted = spec.where.get(name)
        if wanted:
            unknown = [value for value in wanted if value not in values]
            if known and unknown:
                raise GuardConfigError(
                    f"{name} {unknown} not known in pipeline {spec.namespace!r} (known: {', '.join(known)})"
                )
            values = tuple(value for value in values if value in wanted)
        value_lists.append(values)
    rows = [tuple(combo) for combo in itertools.product(*value_lists)]

    row_set = set(rows)
    missing = STATE_CODES[CellState.MISSING]
    counts = dict.fromkeys((state.value for state in CellState), 0)
    lines: list[str] = []
    for row in rows:
        by_day = found.get(row, {})
        lines.append("".join(by_day.get(day, missing) for day in dates))
    for line in lines:
        for state, code in STATE_CODES.items():
            counts[state.value] += line.count(code)
    return CoverageGrid(
        namespace=spec.namespace,
        dimension_names=tuple(name for name, _ in spec.dimensions),
        dates=tuple(dates),
        rows=tuple(rows),
        states=tuple(lines),
        counts=counts,
        queued={key: run for key, run in pending.items() if _row_of(key) in row_set},
    )


@dataclass(frozen=True)
class CellDetail:
    """Everything the grid shows about one key.

    ``version`` is the committed fencing token (the ``v<token>`` version directory of file output);
    ``holder`` is ``dag_id/run_id/task_id[map_index] try N`` of the attempt that claimed it last,
    and ``task_instance`` its parts (None when the holder is not a task instance).
    """

    partition_key: str
    state: CellState
    ledger_state: str | None
    fencing_token: int | None
    version: int | None
    commits: int
    row_count: int | None
    location: str | None
    holder: str | None
    claimed_at: dt.datetime | None
    committed_at: dt.datetime | None
    error: str | None
    task_instance: Mapping[str, Any] | None
    queued_by: str | None = None

    def to_payload(self) -> dict[str, Any]:
        return {
            "partition_key": self.partition_key,
            "state": self.state.value,
            "ledger_state": self.ledger_state,
            "fencing_token": self.fencing_token,
            "version": self.version,
            "commits": self.commits,
            "row_count": self.row_count,
            "location": self.location,
            "holder": self.holder,
            "since": _iso(self.claimed_at),
            "committed_at": _iso(self.committed_at),
            "error": self.error,
            "task_instance": dict(self.task_instance) if self.task_instance else None,
            "queued_by": self.queued_by,
        }


def _iso(value: dt.datetime | None) -> str | None:
    return value.replace(tzinfo=dt.UTC).isoformat() if value is not None else None


def parse_holder(holder: str | None) -> dict[str, Any] | None:
    """``dag/run/task[3] try 2`` (the factory's holder text) -> its parts; None for any other text.

    Run ids may contain ``/`` (``manual__2026-11-01T00:00:00+00:00`` does not, but a custom one may):
    the DAG id is before the first ``/`` and the task id after the last one.
    """
    if not holder or "/" not in holder or " try " not in holder:
        return None
    head, _, tries = holder.rpartition(" try ")
    dag_id, _, rest = head.partition("/")
    run_id, _, task = rest.rpartition("/")
    if not (dag_id and run_id and task.endswith("]") and "[" in task and tries.isdigit()):
        return None
    task_id, _, index = task[:-1].rpartition("[")
    try:
        map_index = int(index)
    except ValueError:
        return None
    return {
        "dag_id": dag_id,
        "run_id": run_id,
        "task_id": task_id,
        "map_index": map_index,
        "try_number": int(tries),
    }


def read_cell(
    engine: Engine,
    namespace: str,
    partition_key: str,
    *,
    stale_after: dt.timedelta = dt.timedelta(hours=6),
    queued: QueuedKey | None = None,
    now: dt.datetime | None = None,
) -> CellDetail:
    """The details of one key (a key with no ledger row is ``missing`` with zero commits).

    :param queued: the active backfill run that will process the key, if any (see :func:`read_coverage`).
    """
    table = ledger_table
    with engine.connect() as conn:
        row = conn.execute(
            select(table).where(table.c.namespace == namespace, table.c.partition_key == partition_key)
        ).first()
    stale_before = (now or _now()) - stale_after
    if row is None:
        state = CellState.RUNNING if queued else CellState.MISSING
        queued_by = queued.run_id if queued else None
        return CellDetail(
            partition_key, state, None, None, None, 0, None, None, None, None, None, None, None, queued_by
        )
    entry = entry_from_row(row)
    state = cell_state(entry.state, entry.claimed_at, stale_before=stale_before)
    queued_by = None
    if queued is not None and is_pending(queued, entry.claimed_at):
        state, queued_by = CellState.RUNNING, queued.run_id
    return CellDetail(
        partition_key=entry.partition_key,
        state=state,
        ledger_state=entry.state,
        fencing_token=entry.fencing_token,
        version=entry.committed_token,
        commits=entry.commits,
        row_count=entry.row_count,
        location=entry.location,
        holder=entry.holder,
        claimed_at=entry.claimed_at,
        committed_at=entry.committed_at,
        error=entry.error,
        task_instance=parse_holder(entry.holder),
        queued_by=queued_by,
    )
