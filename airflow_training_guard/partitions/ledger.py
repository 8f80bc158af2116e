"""Exactly-once commits per partition key: a ledger table with fencing tokens.

The failure this prevents: concurrent backfills of the same cities and dates, without idempotent
keys, appended duplicate feature rows and the model overfit (train loss 0.3, validation loss 2.1).
Here every unit of work goes through three steps, and only the newest claimant can finish them:

1. :meth:`PartitionLedger.claim` takes the key: one ``UPDATE`` raises the row's ``fencing_token``
   by one and returns it. Whether the key is claimed at all depends on its :class:`LedgerState`
   and the reprocess mode (:class:`ReprocessMode`): ``missing`` and ``failed`` leave committed keys
   and live claims alone, ``all`` always takes the key, which turns every older attempt into a
   stale one. That decision is one rule, :class:`Eligibility`, which :meth:`PartitionLedger.claim`
   evaluates in SQL (atomically, on the locked row) and :meth:`PartitionLedger.plan` in Python, so
   the plan a backfill logs is the decision its claims make.
2. The work writes its output to a private staging directory (:meth:`PartitionLedger.staging_dir`),
   or produces rows in memory.
3. :meth:`PartitionLedger.publish` commits. The ledger ``UPDATE ... WHERE fencing_token = :mine``
   runs first in the transaction, so it also locks the key's row: a concurrent publisher waits, then
   matches 0 rows and gets :class:`StaleClaimError`. Nothing it wrote becomes visible.

How readers see "old complete output or new complete output, never a mix":

- **Files (the primary mechanism).** The staging directory is renamed (one atomic ``rename`` on the
  same file system) to an immutable version directory ``<output_root>/<namespace>/<key>/v<token>``;
  then the *current pointer* (the ledger row's ``location``) moves to it in the same database
  transaction that records the commit. Readers resolve the pointer first
  (:meth:`PartitionLedger.current_path`) and read a directory that never changes afterwards. A
  rerun in mode ``all`` writes a new version and moves the pointer: it replaces, it never appends.
  The same transaction records the version in the committed history
  (``training_guard_partition_versions``). The newest ``keep_versions`` committed versions are
  kept, so a reader that resolved the pointer just before the swap can finish; older ones are
  deleted. Pruning reads the committed history, never the directory listing alone: a version
  directory whose publish died between its rename and its commit, or whose claim went stale, was
  never committed and is deleted, and never counts as a version (issue 13: counting it deleted
  the previous committed version that readers still held).
- **Rows (for small row data).** ``publish(claim, rows=[...])`` deletes the key's rows and inserts
  the new ones in the same transaction as the ledger update; under READ COMMITTED (PostgreSQL) or
  SQLite's single writer, :meth:`PartitionLedger.read_rows` sees one committed set.

SQLite (the embedded default) and PostgreSQL (production) through SQLAlchemy; no Airflow import.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import os
import shutil
import threading
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
    create_engine,
    delete,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

from airflow_training_guard.exceptions import GuardConfigError, TrainingGuardError
from airflow_training_guard.partitions.keys import PartitionKey, validate_part
from airflow_training_guard.policies.paths import path_segment
from airflow_training_guard.runtime.publish import publish_dir

if TYPE_CHECKING:
    from sqlalchemy import ColumnElement
    from sqlalchemy.engine import Connection

__all__ = [
    "Claim",
    "Commit",
    "Eligibility",
    "LedgerEntry",
    "LedgerPlan",
    "LedgerState",
    "PartitionLedger",
    "ReprocessMode",
    "StaleClaimError",
    "ledger_table",
    "metadata",
    "rows_table",
    "versions_table",
]

metadata = MetaData()

ledger_table = Table(
    "training_guard_partition_ledger",
    metadata,
    Column("namespace", String(250), primary_key=True),
    Column("partition_key", String(250), primary_key=True),
    # A LedgerState: new -> claimed -> committed | failed; a committed key goes back to claimed on a rerun.
    Column("state", String(16), nullable=False),
    Column("fencing_token", Integer, nullable=False),
    Column("holder", String(500), nullable=True),
    Column("claimed_at", DateTime, nullable=True),
    Column("committed_token", Integer, nullable=True),
    Column("committed_at", DateTime, nullable=True),
    Column("commits", Integer, nullable=False),
    Column("location", Text, nullable=True),
    Column("row_count", Integer, nullable=True),
    Column("error", Text, nullable=True),
)

rows_table = Table(
    "training_guard_partition_rows",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("namespace", String(250), nullable=False),
    Column("partition_key", String(250), nullable=False),
    Column("fencing_token", Integer, nullable=False),
    Column("row_number", Integer, nullable=False),
    Column("payload", Text, nullable=False),
    # A second line of defence: even a buggy caller cannot store row 0 of a key twice.
    UniqueConstraint("namespace", "partition_key", "row_number", name="uq_training_guard_partition_row"),
    Index("ix_training_guard_partition_rows_key", "namespace", "partition_key"),
)

# The committed history of file versions: one row per successful file publish, written in the
# commit's transaction. Pruning keeps the newest keep_versions of these and nothing uncommitted.
versions_table = Table(
    "training_guard_partition_versions",
    metadata,
    Column("namespace", String(250), primary_key=True),
    Column("partition_key", String(250), primary_key=True),
    Column("fencing_token", Integer, primary_key=True),
    Column("location", Text, nullable=False),
    Column("committed_at", DateTime, nullable=False),
)

#: Name of the hidden directory under ``output_root`` that holds staging directories.
STAGING_DIRNAME = ".staging"

_IN_CHUNK = 500


class ReprocessMode(enum.StrEnum):
    """Which keys a run processes; the same three choices as the backfill trigger form.

    - ``missing``: keys never attempted, or whose claim went stale (the worker died);
    - ``failed``: the above plus keys whose last attempt failed;
    - ``all``: every key; committed output is replaced by a new version and a live claim is taken
      over (its holder can no longer publish).

    Airflow's native backfill ``reprocess_behavior`` maps as none -> missing, failed -> failed,
    completed -> all.
    """

    MISSING = "missing"
    FAILED = "failed"
    ALL = "all"

    @classmethod
    def parse(cls, value: object) -> ReprocessMode:
        if isinstance(value, cls):
            return value
        native = {"none": cls.MISSING, "completed": cls.ALL}
        if isinstance(value, str):
            if value in native:
                return native[value]
            try:
                return cls(value)
            except ValueError:
                pass
        raise GuardConfigError(
            f"reprocess mode {value!r} is not valid; use 'missing' (only keys never done), 'failed' "
            "(missing and failed keys) or 'all' (redo every key, replacing its committed output)"
        )


class LedgerState(enum.StrEnum):
    """The state of one key in the ledger, stored as its value in the ``state`` column.

    ``new`` (a row made before its first claim; also what a key without a row counts as) ->
    ``claimed`` -> ``committed`` or ``failed``; a claim in any mode the key is eligible for moves it
    back to ``claimed``. A ``str`` enum: stored rows, ``entry.state == "committed"`` and tuples of
    states compare as the plain strings they were before the enum.
    """

    NEW = "new"
    CLAIMED = "claimed"
    COMMITTED = "committed"
    FAILED = "failed"

    @classmethod
    def parse(cls, value: object) -> LedgerState:
        """The state of a stored value; a value this version does not know is a :class:`LedgerError`."""
        try:
            return cls(value)  # type: ignore[arg-type]
        except ValueError:
            raise LedgerError(
                f"ledger state {value!r} is not one of {[state.value for state in cls]}; the row was "
                "written by another version of airflow-training-guard: upgrade this one to match"
            ) from None

    @property
    def skip_reason(self) -> str:
        """Why a plan skips a key in this state (see :meth:`PartitionLedger.plan`)."""
        return {LedgerState.CLAIMED: "in progress", LedgerState.COMMITTED: "already committed"}.get(
            self, self.value
        )


#: The states a run in each mode takes. One table for :class:`Eligibility`'s SQL and Python forms.
ELIGIBLE_STATES: Mapping[ReprocessMode, frozenset[LedgerState]] = {
    ReprocessMode.MISSING: frozenset({LedgerState.NEW}),
    ReprocessMode.FAILED: frozenset({LedgerState.NEW, LedgerState.FAILED}),
    ReprocessMode.ALL: frozenset(LedgerState),
}
#: The states an earlier try of the same task instance may have left its key in (see ``retry_of``).
RETRYABLE_STATES = frozenset({LedgerState.CLAIMED, LedgerState.FAILED})


@dataclass(frozen=True)
class Eligibility:
    """The one rule for whether a run may take a key: :meth:`PartitionLedger.claim` and :meth:`~PartitionLedger.plan`.

    A key is eligible when

    1. its state is in :data:`ELIGIBLE_STATES` for ``mode`` (every state for ``all``), where a
       claim older than ``stale_before`` counts as ``new`` (its worker died); or
    2. ``retry_of`` is set and the key is ``claimed`` or ``failed`` by a holder starting with it:
       an earlier try of this task instance, which is over (Airflow retries only after a try ended).

    The claim evaluates :meth:`where` inside its one ``UPDATE``/upsert (on the newest, locked row, so
    concurrent claims cannot both win); the plan evaluates :meth:`allows` on rows it read. Before
    this class each had its own copy of the rule.

    :param mode: the run's reprocess mode.
    :param stale_before: claims taken before this instant (naive UTC) are abandoned.
    :param retry_of: the holder prefix every try of one task instance shares, or None.
    """

    mode: ReprocessMode
    stale_before: dt.datetime
    retry_of: str | None = None

    @property
    def states(self) -> frozenset[LedgerState]:
        """The states eligible in ``mode`` (before the stale-claim and retry rules)."""
        return ELIGIBLE_STATES[self.mode]

    def allows(
        self, state: LedgerState | str | None, claimed_at: dt.datetime | None, holder: str | None
    ) -> bool:
        """Whether a key in ``state`` (None: no row yet) may be taken; the rule in Python."""
        if self.mode is ReprocessMode.ALL:
            return True
        current = LedgerState.NEW if state is None else LedgerState.parse(state)
        if self.is_abandoned(current, claimed_at):
            current = LedgerState.NEW
        if current in self.states:
            return True
        return bool(
            self.retry_of
            and current in RETRYABLE_STATES
            and holder is not None
            and holder.startswith(self.retry_of)
        )

    def is_abandoned(self, state: LedgerState | str, claimed_at: dt.datetime | None) -> bool:
        """Whether a claim is older than ``stale_before`` (it counts as ``new``)."""
        return state == LedgerState.CLAIMED and claimed_at is not None and claimed_at < self.stale_before

    def where(self, table: Table) -> ColumnElement[bool] | None:
        """The rule as a SQL condition on ``table``'s row; None when every row is eligible."""
        if self.mode is ReprocessMode.ALL:
            return None
        column = table.c
        condition: ColumnElement[bool] = column.state.in_(sorted(self.states))
        if LedgerState.NEW in self.states:
            abandoned = and_(column.state == LedgerState.CLAIMED, column.claimed_at < self.stale_before)
            condition = or_(condition, abandoned)
        if self.retry_of:
            own_earlier_try = and_(
                column.state.in_(sorted(RETRYABLE_STATES)),
                column.holder.startswith(self.retry_of, autoescape=True),
            )
            condition = or_(condition, own_earlier_try)
        return condition


class StaleClaimError(TrainingGuardError):
    """A newer claim took the key: this attempt's output was not published (and never will be)."""


class LedgerError(TrainingGuardError):
    """The ledger cannot be used as asked (bad staging path, unknown key ...)."""


@dataclass(frozen=True)
class Claim:
    """The right to publish one key's output, valid while ``fencing_token`` is the key's newest.

    :param namespace: the ledger namespace (usually the pipeline name).
    :param partition_key: the key, e.g. ``berlin|2026-11-01``.
    :param fencing_token: strictly increasing per key; publish succeeds only with the newest.
    :param holder: who claimed (DAG, run, task, try) for logs and the ledger row.
    """

    namespace: str
    partition_key: PartitionKey
    fencing_token: int
    holder: str


@dataclass(frozen=True)
class Commit:
    """What :meth:`PartitionLedger.publish` committed."""

    partition_key: str
    fencing_token: int
    commits: int
    location: str | None
    row_count: int | None
    replaced: str | None


@dataclass(frozen=True)
class LedgerEntry:
    """One key's ledger row."""

    partition_key: str
    state: LedgerState
    fencing_token: int
    holder: str | None
    claimed_at: dt.datetime | None
    committed_token: int | None
    committed_at: dt.datetime | None
    commits: int
    location: str | None
    row_count: int | None
    error: str | None


@dataclass(frozen=True)
class LedgerPlan:
    """Which keys a run in a given mode would process, and why the others are skipped."""

    mode: ReprocessMode
    to_run: tuple[str, ...]
    skipped: Mapping[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        reasons: dict[str, int] = {}
        for reason in self.skipped.values():
            reasons[reason] = reasons.get(reason, 0) + 1
        skipped = ", ".join(f"{count} {reason}" for reason, count in sorted(reasons.items()))
        return f"{len(self.to_run)} key(s) to process in mode {self.mode.value!r}" + (
            f"; skipped: {skipped}" if skipped else ""
        )


def _now() -> dt.datetime:
    # Naive UTC: SQLite has no time zones, and comparisons in SQL must mean the same everywhere.
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


#: One pooled engine per database URL and process, shared by every ledger the process opens.
_ENGINES: dict[str, Engine] = {}
#: Databases (engine URLs) whose ledger tables this process has already checked or created.
_TABLES_READY: set[str] = set()
_ENGINES_LOCK = threading.Lock()
#: A pooled connection idle longer than this is replaced when it is next checked out. A key's work
#: can run for hours between claim and publish, and servers and firewalls drop idle connections;
#: this costs nothing per checkout, unlike a pre-ping (one extra round trip per transaction).
POOL_RECYCLE_SECONDS = 300


def engine_for(url: str) -> Engine:
    """One pooled engine per URL and process; SQLite waits for its file lock instead of failing.

    Every ledger a process opens on ``url`` shares it (issue 17: a new engine per key cost ~31 ms
    against ~10 ms). Thread-safe; a forked child (Airflow's task runners are forks) drops the
    parent's pooled connections and builds its own engine on first use.
    """
    engine = _ENGINES.get(url)
    if engine is not None:
        return engine
    with _ENGINES_LOCK:
        engine = _ENGINES.get(url)
        if engine is None:
            if url.startswith("sqlite"):
                engine = create_engine(url, connect_args={"timeout": 60, "check_same_thread": False})
            else:
                engine = create_engine(url, pool_recycle=POOL_RECYCLE_SECONDS)
            _ENGINES[url] = engine
    return engine


def _forget_engines_after_fork() -> None:
    # A connection must never be used by two processes: the child leaves the parent's sockets to the
    # parent (close=False) and starts with no engine. Tables the parent checked stay checked.
    for engine in _ENGINES.values():
        engine.dispose(close=False)
    _ENGINES.clear()
    global _ENGINES_LOCK
    _ENGINES_LOCK = threading.Lock()


os.register_at_fork(after_in_child=_forget_engines_after_fork)


class PartitionLedger:
    """Claims, staging and atomic commits of partition outputs.

    :param url_or_engine: a SQLAlchemy URL (``sqlite:////var/lib/tg/ledger.db``,
        ``postgresql+psycopg://user@host/db``) or an :class:`~sqlalchemy.Engine`.
    :param namespace: separates pipelines sharing one ledger (e.g. ``"fraud_model"``).
    :param output_root: absolute directory for file outputs (versions and staging); needed only
        for :meth:`staging_dir` and file publishes.
    :param stale_after: a claim older than this counts as abandoned (its worker died) in modes
        ``missing`` and ``failed``; pick more than the longest expected runtime.
    :param keep_versions: committed versions kept per key (>= 2: the current and the one a slow
        reader may still be reading). Only committed versions count; a version directory that was
        never committed (its publish died, or its claim went stale) is deleted.
    :param create_tables: create the ledger tables if they do not exist.
    """

    def __init__(
        self,
        url_or_engine: str | Engine,
        *,
        namespace: str,
        output_root: str | os.PathLike[str] | None = None,
        stale_after: dt.timedelta = dt.timedelta(hours=6),
        keep_versions: int = 2,
        create_tables: bool = True,
    ) -> None:
        self.engine = engine_for(url_or_engine) if isinstance(url_or_engine, str) else url_or_engine
        self.namespace = validate_part(namespace)
        if output_root is not None:
            output_root = Path(output_root)
            if not output_root.is_absolute():
                raise GuardConfigError(
                    f"output_root {str(output_root)!r} is not absolute; use an absolute directory such as "
                    "'/var/lib/training-guard/outputs' so every worker resolves the same place"
                )
        self.output_root: Path | None = output_root
        if stale_after <= dt.timedelta(0):
            raise GuardConfigError(f"stale_after {stale_after} must be positive, e.g. timedelta(hours=6)")
        self.stale_after = stale_after
        if keep_versions < 2:
            raise GuardConfigError(
                f"keep_versions {keep_versions} must be >= 2: the current version and the previous one, "
                "which a reader that resolved the pointer just before a swap may still be reading"
            )
        self.keep_versions = keep_versions
        if create_tables:
            self.create_tables()

    def __repr__(self) -> str:
        url = self.engine.url.render_as_string(hide_password=True)
        return f"PartitionLedger({url!r}, namespace={self.namespace!r}, output_root={self.output_root!r})"

    def create_tables(self, *, force: bool = False) -> None:
        """Create the ledger tables if they do not exist; checked once per engine and process.

        Every task opens the ledger, and re-checking the tables each time cost a round trip or two per
        key (issue 17). ``force`` checks again (after the tables were dropped).
        """
        database = self.engine.url.render_as_string(hide_password=False)
        if not force and database in _TABLES_READY:
            return
        try:
            metadata.create_all(self.engine, checkfirst=True)
        except (IntegrityError, ProgrammingError, OperationalError):
            # Several workers creating the tables at once: one wins, the others find them.
            metadata.create_all(self.engine, checkfirst=True)
        _TABLES_READY.add(database)

    # -- claim ----------------------------------------------------------------------------------

    def claim(
        self,
        partition_key: str,
        *,
        mode: ReprocessMode | str,
        holder: str = "",
        retry_of: str | None = None,
    ) -> Claim | None:
        """Take ``partition_key`` for this attempt, or return None when ``mode`` says to leave it.

        :param partition_key: a valid key (see :func:`~airflow_training_guard.partitions.keys.parse_key`).
        :param mode: see :class:`ReprocessMode`. Required: ``"all"`` takes over a key even from a
            live claim, which must be a decision, never a default.
        :param holder: who is claiming, recorded in the ledger and in error messages.
        :param retry_of: the holder prefix shared by every try of this task instance (the holder
            without its try number). A key still claimed, or failed, by an earlier try of the same
            task instance is taken again whatever ``mode`` says: that try is over (Airflow retries
            only after it ended), and in mode ``missing`` its retry used to skip the very key it was
            retried for and succeed without committing it. A still-running zombie of the earlier try
            loses its publish to the new fencing token.
        """
        partition_key = PartitionKey(partition_key)
        now = _now()
        eligibility = self.eligibility(mode, now=now, retry_of=retry_of)
        table = ledger_table
        where_key = and_(table.c.namespace == self.namespace, table.c.partition_key == partition_key)
        condition = eligibility.where(table)
        claimed = {"state": LedgerState.CLAIMED, "holder": holder[:500], "claimed_at": now, "error": None}
        if self.engine.dialect.name in ("postgresql", "sqlite"):
            token = self._claim_upsert(partition_key, condition, claimed)
            return None if token is None else Claim(self.namespace, partition_key, int(token), holder)
        with self.engine.begin() as conn:
            self._ensure_row(conn, partition_key)
            # One statement: the row lock makes concurrent claims of one key take turns, and each
            # re-checks the condition on the newest row (PostgreSQL re-evaluates WHERE after a wait).
            statement = update(table).where(where_key)
            if condition is not None:
                statement = statement.where(condition)
            result = conn.execute(statement.values(fencing_token=table.c.fencing_token + 1, **claimed))
            if result.rowcount != 1:
                return None
            token = conn.execute(select(table.c.fencing_token).where(where_key)).scalar_one()
        return Claim(self.namespace, partition_key, int(token), holder)

    def _claim_upsert(
        self, partition_key: str, condition: ColumnElement[bool] | None, claimed: Mapping[str, Any]
    ) -> int | None:
        """The claim as ONE statement on PostgreSQL and SQLite; the new fencing token, or None.

        ``INSERT ... ON CONFLICT DO UPDATE SET fencing_token = fencing_token + 1 WHERE <eligible> RETURNING``:
        a new key is inserted already claimed with token 1; an existing row is locked and the
        :class:`Eligibility` condition (None: always) is evaluated on its newest version (as the ``UPDATE`` of the generic path), so
        concurrent claims of one key still take turns. One statement needs no explicit transaction:
        run in autocommit it is one round trip instead of five (issue 17).
        """
        from sqlalchemy.dialects import postgresql, sqlite

        dialect_insert: Any = postgresql.insert if self.engine.dialect.name == "postgresql" else sqlite.insert
        table = ledger_table
        statement = (
            dialect_insert(table)
            .values(
                namespace=self.namespace, partition_key=partition_key, fencing_token=1, commits=0, **claimed
            )
            .on_conflict_do_update(
                index_elements=[table.c.namespace, table.c.partition_key],
                set_={"fencing_token": table.c.fencing_token + 1, **claimed},
                where=condition,
            )
            .returning(table.c.fencing_token)
        )
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            token = conn.execute(statement).scalar_one_or_none()
        return None if token is None else int(token)

    def _ensure_row(self, conn: Connection, partition_key: str) -> None:
        values = {
            "namespace": self.namespace,
            "partition_key": partition_key,
            "state": LedgerState.NEW,
            "fencing_token": 0,
            "commits": 0,
        }
        dialect = conn.dialect.name
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            conn.execute(pg_insert(ledger_table).values(**values).on_conflict_do_nothing())
            return
        if dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert as sqlite_insert

            conn.execute(sqlite_insert(ledger_table).values(**values).on_conflict_do_nothing())
            return
        exists = conn.execute(
            select(ledger_table.c.state).where(
                ledger_table.c.namespace == self.namespace, ledger_table.c.partition_key == partition_key
            )
        ).first()
        if exists is None:
            conn.execute(insert(ledger_table).values(**values))

    # -- staging and publish --------------------------------------------------------------------

    def _require_output_root(self) -> Path:
        if self.output_root is None:
            raise LedgerError(
                f"{self!r} has no output_root; pass output_root='/abs/dir' to publish files, or publish rows"
            )
        return self.output_root

    def key_dir(self, partition_key: str) -> Path:
        """The directory holding every version of one key's output (one safe segment per value)."""
        partition_key = PartitionKey(partition_key)
        return self._require_output_root() / path_segment(self.namespace) / path_segment(partition_key)

    def staging_dir(self, claim: Claim) -> Path:
        """A fresh, private directory to write ``claim``'s output into before :meth:`publish`.

        It is under ``output_root`` so the publish is a rename on one file system (atomic).
        """
        root = self._require_output_root()
        path = (
            root
            / STAGING_DIRNAME
            / path_segment(self.namespace)
            / path_segment(claim.partition_key)
            / f"t{claim.fencing_token:08d}-{uuid.uuid4().hex[:12]}"
        )
        path.mkdir(parents=True)
        return path

    def publish(
        self,
        claim: Claim,
        *,
        staging_path: str | os.PathLike[str] | None = None,
        rows: Iterable[Mapping[str, Any]] | None = None,
    ) -> Commit:
        """Commit ``claim``'s output atomically; exactly one of ``staging_path`` and ``rows``.

        :raises StaleClaimError: a newer claim exists; nothing of this attempt is visible.
        """
        if (staging_path is None) == (rows is None):
            raise LedgerError("publish() needs exactly one of staging_path=... (files) or rows=[...] (rows)")
        if claim.namespace != self.namespace:
            raise LedgerError(f"claim of namespace {claim.namespace!r} published to {self.namespace!r}")
        if staging_path is not None:
            return self._publish_files(claim, Path(staging_path))
        assert rows is not None
        return self._publish_rows(claim, [dict(row) for row in rows])

    def _commit_update(
        self, conn: Connection, claim: Claim, *, location: str | None, row_count: int | None
    ) -> str | None:
        table = ledger_table
        where_key = and_(table.c.namespace == self.namespace, table.c.partition_key == claim.partition_key)
        result = conn.execute(
            update(table)
            .where(
                where_key, table.c.fencing_token == claim.fencing_token, table.c.state == LedgerState.CLAIMED
            )
            .values(
                state=LedgerState.COMMITTED,
                committed_token=claim.fencing_token,
                committed_at=_now(),
                commits=table.c.commits + 1,
                location=location,
                row_count=row_count,
                error=None,
            )
        )
        if result.rowcount == 1:
            return None
        current = conn.execute(
            select(table.c.fencing_token, table.c.holder, table.c.state).where(where_key)
        ).first()
        newest = (
            f"token {current.fencing_token} held by {current.holder!r} ({current.state})"
            if current
            else "none"
        )
        return (
            f"claim of partition_key={claim.partition_key!r} with fencing token {claim.fencing_token} "
            f"({claim.holder!r}) is stale: the newest claim is {newest}; this attempt's output was "
            "discarded, the newer attempt's output is the one that counts"
        )

    def _previous_location(self, conn: Connection, partition_key: str) -> tuple[str | None, int | None]:
        row = conn.execute(
            select(ledger_table.c.location, ledger_table.c.committed_token).where(
                ledger_table.c.namespace == self.namespace, ledger_table.c.partition_key == partition_key
            )
        ).first()
        return (row.location, row.committed_token) if row else (None, None)

    def _record_versions(
        self, conn: Connection, partition_key: str, versions: Sequence[tuple[int, str]]
    ) -> None:
        """Add committed file versions to the history (those already there are left alone)."""
        table = versions_table
        where_key = and_(table.c.namespace == self.namespace, table.c.partition_key == partition_key)
        tokens = [token for token, _ in versions]
        known = set(
            conn.execute(select(table.c.fencing_token).where(where_key, table.c.fencing_token.in_(tokens)))
            .scalars()
            .all()
        )
        now = _now()
        for token, location in versions:
            if token not in known:
                conn.execute(
                    insert(table).values(
                        namespace=self.namespace,
                        partition_key=partition_key,
                        fencing_token=token,
                        location=location,
                        committed_at=now,
                    )
                )

    def _publish_files(self, claim: Claim, staging: Path) -> Commit:
        root = self._require_output_root()
        staging_root = (root / STAGING_DIRNAME).resolve()
        resolved = staging.resolve()
        if not resolved.is_dir() or staging_root not in resolved.parents:
            raise LedgerError(
                f"staging_path {str(staging)!r} is not a directory under {str(staging_root)!r}; write the "
                "output into ledger.staging_dir(claim) so the publish is one atomic rename"
            )
        version_dir = self.key_dir(claim.partition_key) / f"v{claim.fencing_token:08d}"
        version_dir.parent.mkdir(parents=True, exist_ok=True)
        try:
            # Files are fsynced before the rename and the rename before the commit that points at
            # it: a power loss must not leave the ledger pointing at a directory that is not there,
            # or whose files are empty.
            publish_dir(resolved, version_dir)
        except OSError as err:
            if version_dir.exists():  # fencing tokens are unique: only a second publish of this claim
                raise StaleClaimError(
                    f"cannot publish partition_key={claim.partition_key!r}: version directory {version_dir} "
                    f"already exists ({err}); this claim was already published"
                ) from err
            # A full disk, a permission, a staging area on another filesystem: a real failure that
            # must fail (and retry) the task, never pass as "superseded" with nothing published.
            raise LedgerError(
                f"cannot publish partition_key={claim.partition_key!r}: renaming {str(resolved)!r} to "
                f"{str(version_dir)!r} failed: {err}; check free space and permissions under "
                f"{str(root)!r} (staging and versions must be on one filesystem)"
            ) from err
        with self.engine.begin() as conn:
            previous, previous_token = self._previous_location(conn, claim.partition_key)
            stale = self._commit_update(conn, claim, location=str(version_dir), row_count=None)
            if not stale:
                versions = [(claim.fencing_token, str(version_dir))]
                if previous is not None and previous_token is not None:
                    # Committed before this ledger kept a history (or by a rows publish): it is the
                    # version readers hold right now, so it must count.
                    versions.append((int(previous_token), previous))
                self._record_versions(conn, claim.partition_key, versions)
            commits = self._commits(conn, claim.partition_key)
        if stale:
            shutil.rmtree(version_dir, ignore_errors=True)
            raise StaleClaimError(stale)
        self._prune_versions(claim.partition_key)
        return Commit(claim.partition_key, claim.fencing_token, commits, str(version_dir), None, previous)

    def _publish_rows(self, claim: Claim, rows: Sequence[dict[str, Any]]) -> Commit:
        payloads = [json.dumps(row, sort_keys=True, default=str) for row in rows]
        with self.engine.begin() as conn:
            # The ledger update goes first: it locks the key's row, so a concurrent publisher of the
            # same key waits here and then finds its token stale, before touching the rows.
            stale = self._commit_update(conn, claim, location=None, row_count=len(payloads))
            if stale:
                conn.rollback()
                raise StaleClaimError(stale)
            conn.execute(
                delete(rows_table).where(
                    rows_table.c.namespace == self.namespace,
                    rows_table.c.partition_key == claim.partition_key,
                )
            )
            if payloads:
                conn.execute(
                    insert(rows_table),
                    [
                        {
                            "namespace": self.namespace,
                            "partition_key": claim.partition_key,
                            "fencing_token": claim.fencing_token,
                            "row_number": index,
                            "payload": payload,
                        }
                        for index, payload in enumerate(payloads)
                    ],
                )
            commits = self._commits(conn, claim.partition_key)
        return Commit(claim.partition_key, claim.fencing_token, commits, None, len(payloads), None)

    def _commits(self, conn: Connection, partition_key: str) -> int:
        return int(
            conn.execute(
                select(ledger_table.c.commits).where(
                    ledger_table.c.namespace == self.namespace, ledger_table.c.partition_key == partition_key
                )
            ).scalar_one()
        )

    def _prune_versions(self, partition_key: str) -> None:
        """Delete version directories outside the newest ``keep_versions`` committed ones.

        Decided from the committed history, read after this publish committed: a directory older
        than the newest commit that is not among the kept ones is either an old version or one
        that was never committed (a publish killed between rename and commit, a stale claim);
        its claim can never commit any more, because fencing tokens only grow. Directories newer
        than the newest commit belong to a publish in progress and are left alone.
        """
        table = versions_table
        with self.engine.connect() as conn:
            kept = (
                conn.execute(
                    select(table.c.fencing_token)
                    .where(table.c.namespace == self.namespace, table.c.partition_key == partition_key)
                    .order_by(table.c.fencing_token.desc())
                    .limit(self.keep_versions)
                )
                .scalars()
                .all()
            )
        if not kept:
            return
        newest = max(kept)
        for path in self.key_dir(partition_key).glob("v*"):
            if not path.name[1:].isdigit():
                continue
            token = int(path.name[1:])
            if token < newest and token not in kept:
                shutil.rmtree(path, ignore_errors=True)

    def fail(self, claim: Claim, error: str) -> bool:
        """Record that ``claim``'s attempt failed (so mode ``failed`` retries it); False if stale."""
        table = ledger_table
        with self.engine.begin() as conn:
            result = conn.execute(
                update(table)
                .where(
                    table.c.namespace == self.namespace,
                    table.c.partition_key == claim.partition_key,
                    table.c.fencing_token == claim.fencing_token,
                    table.c.state == LedgerState.CLAIMED,
                )
                .values(state=LedgerState.FAILED, error=error[:4000])
            )
        return result.rowcount == 1

    # -- readers --------------------------------------------------------------------------------

    def entry(self, partition_key: str) -> LedgerEntry | None:
        """The ledger row of one key, or None if it was never claimed."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(ledger_table).where(
                    ledger_table.c.namespace == self.namespace, ledger_table.c.partition_key == partition_key
                )
            ).first()
        return entry_from_row(row) if row is not None else None

    def entries(self) -> list[LedgerEntry]:
        """Every ledger row of this namespace, ordered by key."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(ledger_table)
                .where(ledger_table.c.namespace == self.namespace)
                .order_by(ledger_table.c.partition_key)
            ).all()
        return [entry_from_row(row) for row in rows]

    def current_path(self, partition_key: str) -> Path | None:
        """The committed version directory of a key (immutable), or None when nothing is committed.

        Readers must resolve this once and read only inside it: that is what guarantees old-or-new,
        never a mix.
        """
        found = self.entry(partition_key)
        if found is None or found.committed_token is None or found.location is None:
            return None
        return Path(found.location)

    def read_rows(self, partition_key: str) -> list[dict[str, Any]]:
        """The committed rows of a key (row data mode), in the order they were published."""
        with self.engine.connect() as conn:
            payloads = conn.execute(
                select(rows_table.c.payload)
                .where(rows_table.c.namespace == self.namespace, rows_table.c.partition_key == partition_key)
                .order_by(rows_table.c.row_number)
            ).scalars()
            return [json.loads(payload) for payload in payloads]

    def eligibility(
        self, mode: ReprocessMode | str, *, now: dt.datetime | None = None, retry_of: str | None = None
    ) -> Eligibility:
        """The :class:`Eligibility` rule of a run in ``mode`` now, with this ledger's ``stale_after``."""
        return Eligibility(
            mode=ReprocessMode.parse(mode),
            stale_before=(now or _now()) - self.stale_after,
            retry_of=retry_of or None,
        )

    def plan(self, keys: Sequence[str], mode: ReprocessMode | str) -> LedgerPlan:
        """Which of ``keys`` a run in ``mode`` would process now (read-only; claims decide for real).

        Decided by the same :class:`Eligibility` rule as :meth:`claim`.
        """
        eligibility = self.eligibility(mode)
        rows: dict[str, Any] = {}
        with self.engine.connect() as conn:
            for start in range(0, len(keys), _IN_CHUNK):
                chunk = list(keys[start : start + _IN_CHUNK])
                for found in conn.execute(
                    select(
                        ledger_table.c.partition_key,
                        ledger_table.c.state,
                        ledger_table.c.claimed_at,
                        ledger_table.c.holder,
                    ).where(
                        ledger_table.c.namespace == self.namespace, ledger_table.c.partition_key.in_(chunk)
                    )
                ):
                    rows[found.partition_key] = found
        to_run: list[str] = []
        skipped: dict[str, str] = {}
        for partition_key in keys:
            row = rows.get(partition_key)  # None: never claimed, which counts as new
            state, claimed_at, holder = (row.state, row.claimed_at, row.holder) if row else (None, None, None)
            if eligibility.allows(state, claimed_at, holder):
                to_run.append(partition_key)
            else:
                skipped[partition_key] = LedgerState.parse(state).skip_reason
        return LedgerPlan(mode=eligibility.mode, to_run=tuple(to_run), skipped=skipped)


def entry_from_row(row: Any) -> LedgerEntry:
    """A :class:`LedgerEntry` from a row of the ledger table (any object with its column attributes)."""
    return LedgerEntry(
        partition_key=row.partition_key,
        state=LedgerState.parse(row.state),
        fencing_token=int(row.fencing_token),
        holder=row.holder,
        claimed_at=row.claimed_at,
        committed_token=row.committed_token,
        committed_at=row.committed_at,
        commits=int(row.commits),
        location=row.location,
        row_count=row.row_count,
        error=row.error,
    )
