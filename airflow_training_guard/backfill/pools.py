"""The two Airflow pools that keep backfills from starving the daily SLA run, and their sync.

A DAG cannot create a pool (tasks in a missing pool are never scheduled, with only a DAG warning),
so the pools are created by an operator of the deployment, once, with either

- ``airflow training-guard pools sync`` (this module, through the provider's CLI), or
- ``airflow pools import deploy/pools.json`` (docker-compose's init does this).

Both give the same result; a test keeps ``deploy/pools.json`` equal to :data:`DEFAULT_POOLS`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_training_guard.exceptions import GuardConfigError

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

#: Pool of the daily, SLA-bound training runs.
SLA_POOL = "training_sla"
#: Pool of every backfill run: a fixed number of slots, so a 90-day backfill cannot take more.
BACKFILL_POOL = "training_backfill"


@dataclass(frozen=True)
class PoolSpec:
    """One Airflow pool as this package wants it.

    :param name: the pool's name.
    :param slots: how many task instances may run in it at once (>= 1).
    :param description: shown in the UI's pool list.
    :param include_deferred: whether deferred tasks hold a slot. True: a deferred training job still
        occupies GPUs, so it must count against the pool.
    """

    name: str
    slots: int
    description: str
    include_deferred: bool = True

    def __post_init__(self) -> None:
        if not self.name or not self.name.replace("_", "").replace("-", "").isalnum():
            raise GuardConfigError(
                f"pool name {self.name!r} must be letters, digits, '_' or '-', e.g. 'training_backfill'"
            )
        if isinstance(self.slots, bool) or not isinstance(self.slots, int) or self.slots < 1:
            raise GuardConfigError(
                f"pool {self.name!r} has slots={self.slots!r}; use an integer >= 1 (0 slots would never "
                "run anything, -1 means unlimited and would let backfills take the whole cluster)"
            )

    def as_import_dict(self) -> dict[str, Any]:
        """The entry of ``airflow pools import``'s JSON file for this pool."""
        return {
            "description": self.description,
            "include_deferred": self.include_deferred,
            "slots": self.slots,
        }


DEFAULT_POOLS: tuple[PoolSpec, ...] = (
    PoolSpec(BACKFILL_POOL, 2, "backfill runs; low priority, cannot take the daily run's slots"),
    PoolSpec(SLA_POOL, 4, "daily SLA training runs"),
)


def pools_file_content(pools: Iterable[PoolSpec] = DEFAULT_POOLS) -> dict[str, dict[str, Any]]:
    """The JSON document ``airflow pools import`` reads (``deploy/pools.json``)."""
    return {pool.name: pool.as_import_dict() for pool in sorted(pools, key=lambda pool: pool.name)}


@dataclass(frozen=True)
class SyncResult:
    """What :func:`sync_pools` did to one pool: ``created``, ``updated`` or ``unchanged``."""

    name: str
    action: str
    slots: int


def sync_pools(
    pools: Sequence[PoolSpec] = DEFAULT_POOLS, *, session: Session | None = None
) -> list[SyncResult]:
    """Create or update ``pools`` in Airflow's metadata database (idempotent).

    Uses Airflow's own ``Pool.create_or_update_pool``; must run where the metadata database is
    reachable (the CLI, an init container), never inside a DAG file.
    """
    from airflow.models.pool import Pool
    from airflow.utils.session import create_session

    results: list[SyncResult] = []

    def _sync(active: Session) -> None:
        for spec in pools:
            existing = Pool.get_pool(spec.name, session=active)
            if existing is None:
                action = "created"
            elif (
                existing.slots == spec.slots
                and (existing.description or "") == spec.description
                and bool(existing.include_deferred) == spec.include_deferred
            ):
                action = "unchanged"
            else:
                action = "updated"
            if action != "unchanged":
                Pool.create_or_update_pool(
                    name=spec.name,
                    slots=spec.slots,
                    description=spec.description,
                    include_deferred=spec.include_deferred,
                    session=active,
                )
            results.append(SyncResult(spec.name, action, spec.slots))

    if session is not None:
        _sync(session)
    else:
        with create_session() as new_session:
            _sync(new_session)
    return results


def read_pools(names: Iterable[str] | None = None, *, session: Session | None = None) -> list[dict[str, Any]]:
    """The current state of Airflow pools (all, or ``names``), as plain dicts for printing."""
    from airflow.models.pool import Pool
    from airflow.utils.session import create_session

    wanted = set(names) if names is not None else None

    def _read(active: Session) -> list[dict[str, Any]]:
        rows = []
        for pool in Pool.get_pools(session=active):
            if wanted is not None and pool.pool not in wanted:
                continue
            rows.append(
                {
                    "pool": pool.pool,
                    "slots": pool.slots,
                    "include_deferred": bool(pool.include_deferred),
                    "description": pool.description or "",
                }
            )
        return sorted(rows, key=lambda row: str(row["pool"]))

    if session is not None:
        return _read(session)
    with create_session() as new_session:
        return _read(new_session)
