"""Helpers shared by the training operators (local and Kubernetes launchers)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow.sdk.exceptions import AirflowFailException

if TYPE_CHECKING:
    from airflow.sdk import Context


def resolve_partition_key(explicit: str | None, context: Context, *, task_id: str) -> str:
    """The partition a training task works on: explicit, else the run's ``partition_key``, else ``ds``.

    Airflow 3.3 runs of partitioned DAGs carry ``DagRun.partition_key``; classic scheduled runs
    have a logical date. A manual run with neither cannot be keyed, and a run without a key would
    share checkpoints with others, so it fails without retry.
    """
    if explicit:
        return str(explicit)
    dag_run = context.get("dag_run")
    run_key = getattr(dag_run, "partition_key", None)
    if run_key:
        return str(run_key)
    ds = context.get("ds")
    if ds:
        return str(ds)
    raise AirflowFailException(
        f"task {task_id!r} has no partition_key: the run has neither a partition_key nor a "
        "logical date; pass partition_key='...' to the operator or trigger the run with one"
    )
