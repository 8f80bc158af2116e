"""SQL model registry (SQLAlchemy): SQLite embedded by default, PostgreSQL in production.

One row per model holds the production pointer and a ``version`` column. A swap is
``UPDATE ... SET version = :seen + 1 WHERE model_name = :m AND version = :seen`` plus the
history insert, in one transaction: a concurrent writer makes the UPDATE match 0 rows and the
caller re-reads. The very first promotion of a model is an INSERT; two first promotions racing
collide on the primary key and the loser sees a conflict, never a duplicate pointer.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError, SQLAlchemyError

from airflow_training_guard.hooks.sql import engine_for
from airflow_training_guard.promotion.registry import (
    HistoryEntry,
    Observed,
    ProductionPointer,
    RegistryError,
)

__all__ = ["SqlModelRegistry", "history_table", "metadata", "pointers_table"]

metadata = MetaData()

pointers_table = Table(
    "training_guard_production_pointer",
    metadata,
    Column("model_name", String(255), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("candidate_id", String(512), nullable=False),
    Column("artifact_uri", Text, nullable=False),
    Column("pointer", Text, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

history_table = Table(
    "training_guard_promotion_history",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model_name", String(255), nullable=False),
    Column("version", Integer, nullable=False),
    Column("replaced_version", Integer, nullable=True),
    Column("action", String(32), nullable=False),
    Column("pointer", Text, nullable=False),
    Column("replaced", Text, nullable=True),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    # A second line of defence: even a buggy caller cannot write two version-N entries.
    UniqueConstraint("model_name", "version", name="uq_training_guard_history_version"),
)


class SqlModelRegistry:
    """Production pointers and their history in a SQL database.

    :param url_or_engine: the id of an Airflow SQL connection (``registry_db``; the password stays in
        the connection), a SQLAlchemy URL (``sqlite:////path/registry.db``,
        ``postgresql+psycopg://user@host/db``) or an :class:`~sqlalchemy.Engine`.
    :param create_tables: create the two tables if they do not exist.
    """

    def __init__(self, url_or_engine: str | Engine, *, create_tables: bool = True) -> None:
        self.engine = engine_for(url_or_engine) if isinstance(url_or_engine, str) else url_or_engine
        if create_tables:
            self.create_tables()

    def __repr__(self) -> str:
        return f"SqlModelRegistry({self.engine.url.render_as_string(hide_password=True)!r})"

    def create_tables(self) -> None:
        try:
            metadata.create_all(self.engine, checkfirst=True)
        except (IntegrityError, ProgrammingError, OperationalError):
            # Several processes creating the tables at once: one wins, the others find them.
            metadata.create_all(self.engine, checkfirst=True)

    def read(self, model_name: str) -> Observed:
        try:
            with self.engine.connect() as conn:
                row = conn.execute(
                    select(pointers_table.c.version, pointers_table.c.pointer).where(
                        pointers_table.c.model_name == model_name
                    )
                ).first()
        except SQLAlchemyError as err:
            raise RegistryError(f"cannot read the production pointer of {model_name!r}: {err}") from err
        if row is None:
            return Observed(pointer=None, token=0)
        return Observed(pointer=ProductionPointer.from_dict(json.loads(row.pointer)), token=int(row.version))

    def compare_and_swap(self, model_name: str, expected: Observed, new: ProductionPointer) -> bool:
        seen = int(expected.token)
        if new.version != seen + 1 or new.model_name != model_name:
            raise ValueError(
                f"new pointer v{new.version} of {new.model_name!r} must be v{seen + 1} of {model_name!r}"
            )
        now = dt.datetime.now(dt.UTC)
        values: dict[str, Any] = {
            "version": new.version,
            "candidate_id": new.candidate_id,
            "artifact_uri": new.artifact_uri,
            "pointer": json.dumps(new.to_dict(), sort_keys=True),
            "updated_at": now,
        }
        try:
            with self.engine.begin() as conn:
                if seen == 0:
                    conn.execute(insert(pointers_table).values(model_name=model_name, **values))
                else:
                    swapped = conn.execute(
                        update(pointers_table)
                        .where(pointers_table.c.model_name == model_name, pointers_table.c.version == seen)
                        .values(**values)
                    )
                    if swapped.rowcount != 1:
                        return False
                conn.execute(
                    insert(history_table).values(
                        model_name=model_name,
                        version=new.version,
                        replaced_version=seen or None,
                        action=new.action,
                        pointer=values["pointer"],
                        replaced=json.dumps(expected.pointer.to_dict(), sort_keys=True)
                        if expected.pointer
                        else None,
                        recorded_at=now,
                    )
                )
        except IntegrityError:
            return False  # another first promotion (or version N) committed first
        except SQLAlchemyError as err:
            raise RegistryError(f"cannot write the production pointer of {model_name!r}: {err}") from err
        return True

    def history(self, model_name: str) -> list[HistoryEntry]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(history_table.c.pointer, history_table.c.replaced)
                .where(history_table.c.model_name == model_name)
                .order_by(history_table.c.version)
            ).all()
        return [
            HistoryEntry(
                pointer=ProductionPointer.from_dict(json.loads(row.pointer)),
                replaced=ProductionPointer.from_dict(json.loads(row.replaced)) if row.replaced else None,
            )
            for row in rows
        ]

    def close(self) -> None:
        """Close the pooled connections (the engine, shared per database in this process, stays usable)."""
        self.engine.dispose()
