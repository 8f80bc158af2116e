"""Cluster policy: every task instance of a backfill run goes to the backfill pool, at low priority.

The failure this prevents: a 90-day native backfill of a plain DAG (its tasks in ``default_pool``
or in the SLA pool) took every slot and the daily training missed its SLA by 6 hours. Pools and
priorities are declared per task, so a DAG author cannot protect the daily run from a backfill of
*another* DAG; a cluster policy sees every task instance the scheduler creates, so it can.

The package declares the ``airflow.policy`` entry point, so Airflow's scheduler loads this module
(an ``airflow_local_settings`` import of :func:`task_instance_mutation_hook` works too). Airflow
3.3.2 calls the hook while *creating* task instances only when
``airflow.settings.task_instance_mutation_hook.is_noop`` is False, which it sets only after importing
an ``airflow_local_settings`` module: with the entry point alone, native backfill task instances were
created in their declared pool. Loading this module therefore clears that flag (see
:func:`_activate_at_creation`). For runs with ``run_type == "backfill"`` it sets

- ``pool`` to ``[training_guard] backfill_pool`` (default ``training_backfill``), and
- ``priority_weight`` to ``[training_guard] backfill_priority_weight`` (default 1, the lowest).

Scheduled, manual and asset-triggered runs are not touched. The policy is registered on install but
is opt-in: it acts only with ``[training_guard] backfill_policy_enabled = True``
(``AIRFLOW__TRAINING_GUARD__BACKFILL_POLICY_ENABLED=True``), after the pools exist
(``airflow training-guard pools sync``). Installing a package must not silently reroute every
backfill of a deployment into a pool that may not exist there (tasks in a missing pool never run). The hook never opens a session or commits (the scheduler
forbids it there) and never raises: a policy bug must not stop the scheduler.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow.policies import hookimpl

from airflow_training_guard.backfill.pools import BACKFILL_POOL
from airflow_training_guard.settings import (
    CONFIG_SECTION,
    OPTION_BACKFILL_POLICY_ENABLED,
    OPTION_BACKFILL_POOL,
    OPTION_BACKFILL_PRIORITY_WEIGHT,
)

if TYPE_CHECKING:
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance

log = logging.getLogger(__name__)

#: The entry point value in ``pyproject.toml``: ``[project.entry-points."airflow.policy"]``.
ENTRY_POINT_VALUE = "airflow_training_guard.backfill.policy"
BACKFILL_RUN_TYPE = "backfill"
_BACKFILL_RUN_ID_PREFIX = "backfill__"


@dataclass(frozen=True)
class BackfillRouting:
    """Where backfill task instances go; read from ``[training_guard]`` in the Airflow config."""

    enabled: bool = False
    pool: str = BACKFILL_POOL
    priority_weight: int = 1

    @classmethod
    def from_config(cls) -> BackfillRouting:
        from airflow.configuration import conf

        return cls(
            enabled=conf.getboolean(CONFIG_SECTION, OPTION_BACKFILL_POLICY_ENABLED, fallback=False),
            pool=conf.get(CONFIG_SECTION, OPTION_BACKFILL_POOL, fallback=BACKFILL_POOL) or BACKFILL_POOL,
            priority_weight=conf.getint(CONFIG_SECTION, OPTION_BACKFILL_PRIORITY_WEIGHT, fallback=1),
        )


def is_backfill_run(dag_run: Any, run_id: str | None = None) -> bool:
    """Whether a run is a (native) backfill run: ``run_type == "backfill"``.

    ``dag_run`` may be None when Airflow re-applies the hook before the instance is bound to a run;
    then the run id's ``backfill__`` prefix decides.
    """
    run_type = getattr(dag_run, "run_type", None)
    if run_type is not None:
        return str(getattr(run_type, "value", run_type)) == BACKFILL_RUN_TYPE
    run_id = run_id or getattr(dag_run, "run_id", None)
    return bool(run_id) and str(run_id).startswith(_BACKFILL_RUN_ID_PREFIX)


def route_backfill_task_instance(task_instance: Any, dag_run: Any, routing: BackfillRouting) -> bool:
    """Apply ``routing`` to ``task_instance`` if it belongs to a backfill run; True if it did."""
    if not routing.enabled or not is_backfill_run(dag_run, getattr(task_instance, "run_id", None)):
        return False
    changed = task_instance.pool != routing.pool or task_instance.priority_weight != routing.priority_weight
    task_instance.pool = routing.pool
    task_instance.priority_weight = routing.priority_weight
    if changed:
        log.debug(
            "training-guard backfill policy: %s.%s run %s -> pool=%s priority_weight=%s",
            task_instance.dag_id,
            task_instance.task_id,
            task_instance.run_id,
            routing.pool,
            routing.priority_weight,
        )
    return True


_routing: BackfillRouting | None = None


def _current_routing() -> BackfillRouting:
    global _routing
    if _routing is None:
        _routing = BackfillRouting.from_config()
    return _routing


@hookimpl
def task_instance_mutation_hook(task_instance: TaskInstance, dag_run: DagRun | None) -> None:
    """Route task instances of backfill runs to the backfill pool at the lowest priority."""
    try:
        route_backfill_task_instance(task_instance, dag_run, _current_routing())
    except Exception:  # never let a policy bug stop the scheduler
        log.exception("training-guard backfill policy failed for %r; task instance left as is", task_instance)


def _activate_at_creation() -> None:
    """Make Airflow call the hook when it creates task instances, not only when it refreshes them.

    ``DagRun._create_tasks`` skips the mutation hook while ``task_instance_mutation_hook.is_noop`` is
    True, and Airflow 3.3.2 clears it only after importing ``airflow_local_settings``, ignoring hooks
    registered through the ``airflow.policy`` entry point (measured: a native backfill's task instances
    stayed in ``training_sla``). This module is loaded only as a registered policy plugin, so clearing
    the flag here is what registering it means. The hook does nothing unless the policy is enabled.
    """
    try:
        import airflow.settings

        hook = getattr(airflow.settings, "task_instance_mutation_hook", None)
        if hook is not None and getattr(hook, "is_noop", False):
            hook.is_noop = False
    except Exception:  # never let the policy stop Airflow from starting
        log.exception("training-guard backfill policy could not activate task_instance_mutation_hook")


_activate_at_creation()
