"""The two Airflow pools that keep backfills from starving the daily SLA run, and their sync.

A DAG cannot create a pool (tasks in a missing pool are never scheduled, with only a DAG warning),
so the pools are created by an operator of the deployment, once, with either

- ``airflow training-guard pools sync`` (this module, through the provider's CLI), or
- ``airflow pools import deploy/pools.json`` (docker-compose's init does this).

Both give the same result with the default configuration; a test keeps ``deploy/pools.json`` equal
to :data:`DEFAULT_POOLS`. ``pools sync`` reads the pool names and sizes from ``[training_guard]``
(``sla_pool``, ``sla_pool_slots``, ``backfill_pool``, ``backfill_pool_slots``; see
:func:`configured_pools`) and plans one change per pool (:func:`plan_pool_changes`): it creates a
missing pool and grows a small one, but never shrinks a pool an operator gave more slots unless
told to (``--force``): shrinking a pool under running work is an outage, not a sync.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_training_guard.exceptions import GuardConfigError
from airflow_training_guard.settings import (
    CONFIG_SECTION,
    OPTION_BACKFILL_POOL,
    OPTION_BACKFILL_POOL_SLOTS,
    OPTION_SLA_POOL,
    OPTION_SLA_POOL_SLOTS,
)

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

#: Pool of the daily, SLA-bound training runs.
SLA_POOL = "training_sla"
#: Pool of every backfill run: a fixed number of slots, so a 90-day backfill cannot take more.
BACKFILL_POOL = "training_backfill"
#: Default slots of :data:`SLA_POOL` (``[training_guard] sla_pool_slots``).
DEFAULT_SLA_POOL_SLOTS = 4
#: Default slots of :data:`BACKFILL_POOL` (``[training_guard] backfill_pool_slots``).
DEFAULT_BACKFILL_POOL_SLOTS = 2
SLA_POOL_DESCRIPTION = "daily SLA training runs"
BACKFILL_POOL_DESCRIPTION = "backfill runs; low priority, cannot take the daily run's slots"


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
    PoolSpec(BACKFILL_POOL, DEFAULT_BACKFILL_POOL_SLOTS, BACKFILL_POOL_DESCRIPTION),
    PoolSpec(SLA_POOL, DEFAULT_SLA_POOL_SLOTS, SLA_POOL_DESCRIPTION),
)


def pools_file_content(pools: Iterable[PoolSpec] = DEFAULT_POOLS) -> dict[str, dict[str, Any]]:
    """The JSON document ``airflow pools import`` reads (``deploy/pools.json``)."""
    return {pool.name: pool.as_import_dict() for pool in sorted(pools, key=lambda pool: pool.name)}


def configured_pools() -> tuple[PoolSpec, ...]:
    """The two pools as the ``[training_guard]`` options of the Airflow configuration name and size them.

    ``sla_pool`` / ``sla_pool_slots`` (default ``training_sla``, 4) and ``backfill_pool`` /
    ``backfill_pool_slots`` (default ``training_backfill``, 2). ``backfill_pool`` is also the pool
    the cluster policy routes backfill runs to, so the two always agree.

    :raises GuardConfigError: a size is not an integer >= 1, or both pools have one name.
    """
    from airflow.configuration import conf

    # An empty name (``AIRFLOW__TRAINING_GUARD__SLA_POOL=``) means the default, as in the policy.
    backfill_name = (conf.get(CONFIG_SECTION, OPTION_BACKFILL_POOL, fallback=BACKFILL_POOL) or "").strip()
    backfill_name = backfill_name or BACKFILL_POOL
    sla_name = (conf.get(CONFIG_SECTION, OPTION_SLA_POOL, fallback=SLA_POOL) or "").strip() or SLA_POOL
    backfill_slots = conf.get(
        CONFIG_SECTION, OPTION_BACKFILL_POOL_SLOTS, fallback=str(DEFAULT_BACKFILL_POOL_SLOTS)
    )
    sla_slots = conf.get(CONFIG_SECTION, OPTION_SLA_POOL_SLOTS, fallback=str(DEFAULT_SLA_POOL_SLOTS))
    if backfill_name == sla_name:
        raise GuardConfigError(
            f"[{CONFIG_SECTION}] {OPTION_SLA_POOL} and {OPTION_BACKFILL_POOL} are both {sla_name!r}; a "
            f"backfill would then take the daily run's slots. Use two pools (defaults {SLA_POOL!r} and "
            f"{BACKFILL_POOL!r})"
        )
    return (
        _configured_spec(
            backfill_name, OPTION_BACKFILL_POOL_SLOTS, backfill_slots, BACKFILL_POOL_DESCRIPTION
        ),
        _configured_spec(sla_name, OPTION_SLA_POOL_SLOTS, sla_slots, SLA_POOL_DESCRIPTION),
    )


def configured_pool_names() -> tuple[str, str]:
    """``(sla_pool, backfill_pool)`` as the ``[training_guard]`` options name them (see :func:`configured_pools`)."""
    by_description = {spec.description: spec.name for spec in configured_pools()}
    return by_description[SLA_POOL_DESCRIPTION], by_description[BACKFILL_POOL_DESCRIPTION]


def _configured_spec(name: str, slots_option: str, raw_slots: object, description: str) -> PoolSpec:
    """A :class:`PoolSpec` from configuration text, with an error that names the option to fix."""
    fix = (
        f"set [{CONFIG_SECTION}] {slots_option} (or AIRFLOW__{CONFIG_SECTION.upper()}__"
        f"{slots_option.upper()}) to an integer >= 1"
    )
    try:
        slots = int(str(raw_slots).strip())
    except ValueError:
        raise GuardConfigError(
            f"pool {name!r}: {slots_option} = {raw_slots!r} is not a number; {fix}"
        ) from None
    if slots < 1:
        raise GuardConfigError(
            f"pool {name!r}: {slots_option} = {slots} would never run anything (0) or let backfills take "
            f"the whole cluster (-1 is unlimited); {fix}"
        )
    return PoolSpec(name, slots, description)


class PoolAction(enum.StrEnum):
    """What a sync does to one pool."""

    #: The pool does not exist: create it with the configured slots.
    CREATE = "create"
    #: The pool has fewer slots than configured: raise them to the configured number.
    GROW = "grow"
    #: The pool has the configured slots: nothing to do.
    KEEP = "keep"
    #: The pool has more slots than configured (an operator tuned it): left as it is; ``--force``
    #: would shrink it.
    WOULD_SHRINK = "would-shrink"
    #: With ``force``: lower the slots to the configured number.
    SHRINK = "shrink"


@dataclass(frozen=True)
class PoolChange:
    """The change a sync makes (or, for a dry run, would make) to one pool.

    :param name: the pool's name.
    :param action: see :class:`PoolAction`.
    :param current_slots: the pool's slots before the sync; None when it does not exist, -1 when
        unlimited.
    :param configured_slots: the slots the configuration asks for.
    """

    name: str
    action: PoolAction
    current_slots: int | None
    configured_slots: int

    @property
    def slots_after(self) -> int:
        """The pool's slots once the change is applied."""
        if self.action in (PoolAction.KEEP, PoolAction.WOULD_SHRINK) and self.current_slots is not None:
            return self.current_slots
        return self.configured_slots

    def describe(self) -> str:
        """One line for the operator, e.g. ``grow training_sla from 4 to 8 slots``."""
        current = "unlimited" if self.current_slots == -1 else self.current_slots
        if self.action is PoolAction.CREATE:
            return f"create {self.name} with {self.configured_slots} slots"
        if self.action is PoolAction.GROW:
            return f"grow {self.name} from {current} to {self.configured_slots} slots"
        if self.action is PoolAction.KEEP:
            return f"keep {self.name} at {current} slots"
        if self.action is PoolAction.WOULD_SHRINK:
            return (
                f"would shrink {self.name} from {current} to {self.configured_slots} slots: kept at "
                f"{current}, an operator set it; pass --force to shrink it"
            )
        return f"shrink {self.name} from {current} to {self.configured_slots} slots (--force)"

    def as_row(self) -> dict[str, Any]:
        """The change as a flat dict, for the CLI's table and JSON output."""
        return {
            "pool": self.name,
            "action": self.action.value,
            "current_slots": "-" if self.current_slots is None else self.current_slots,
            "configured_slots": self.configured_slots,
            "slots": self.slots_after,
        }


def plan_pool_changes(
    pools: Iterable[PoolSpec], current_slots: Mapping[str, int], *, force: bool = False
) -> list[PoolChange]:
    """What a sync does to each of ``pools``, given the slots the existing pools have (pure).

    :param pools: the pools as configured.
    :param current_slots: ``{name: slots}`` of the pools that exist (-1 means unlimited).
    :param force: shrink pools that have more slots than configured instead of keeping them.
    """
    changes = []
    for spec in pools:
        current = current_slots.get(spec.name)
        if current is None:
            action = PoolAction.CREATE
        elif current == spec.slots:
            action = PoolAction.KEEP
        elif current != -1 and current < spec.slots:
            action = PoolAction.GROW
        else:  # more slots than configured, or unlimited (-1)
            action = PoolAction.SHRINK if force else PoolAction.WOULD_SHRINK
        changes.append(PoolChange(spec.name, action, current, spec.slots))
    return changes


def sync_pools(
    pools: Sequence[PoolSpec] | None = None,
    *,
    force: bool = False,
    dry_run: bool = False,
    session: Session | None = None,
) -> list[PoolChange]:
    """Create or grow ``pools`` in Airflow's metadata database (idempotent); return the changes.

    :param pools: the pools to sync; default :func:`configured_pools`.
    :param force: also shrink pools that have more slots than configured.
    :param dry_run: only plan; change nothing.

    A pool is created with its description and ``include_deferred``; an existing pool only has its
    slots changed, so what an operator set on it (description, ``include_deferred``, team) stays.
    Must run where the metadata database is reachable (the CLI, an init container), never inside
    a DAG file.
    """
    from airflow.models.pool import Pool
    from airflow.utils.session import create_session

    specs = {spec.name: spec for spec in (configured_pools() if pools is None else pools)}

    def _sync(active: Session) -> list[PoolChange]:
        existing = {name: Pool.get_pool(name, session=active) for name in specs}
        current = {name: int(pool.slots) for name, pool in existing.items() if pool is not None}
        changes = plan_pool_changes(specs.values(), current, force=force)
        if dry_run:
            return changes
        for change in changes:
            spec, pool = specs[change.name], existing[change.name]
            if change.action is PoolAction.CREATE:
                Pool.create_or_update_pool(
                    name=spec.name,
                    slots=spec.slots,
                    description=spec.description,
                    include_deferred=spec.include_deferred,
                    session=active,
                )
            elif change.action in (PoolAction.GROW, PoolAction.SHRINK) and pool is not None:
                pool.slots = spec.slots
        active.flush()
        return changes

    if session is not None:
        return _sync(session)
    with create_session() as new_session:
        return _sync(new_session)


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
