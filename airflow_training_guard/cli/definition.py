"""``airflow training-guard ...``: the provider's command group, registered like cncf.kubernetes'.

``get_provider_info()["cli"]`` lists :func:`get_training_guard_cli_commands`; Airflow's CLI parser
adds the returned group. Commands are loaded lazily so ``airflow --help`` stays fast.
"""

from __future__ import annotations

from airflow.cli.cli_config import (
    ARG_OUTPUT,
    ARG_VERBOSE,
    ActionCommand,
    Arg,
    GroupCommand,
    lazy_load_command,
)

ARG_DRY_RUN = Arg(  # type: ignore[no-untyped-call]
    ("--dry-run",),
    help="Show what would be created or updated without changing anything.",
    action="store_true",
)

POOLS_COMMANDS = (
    ActionCommand(
        name="sync",
        help="Create or update the training_sla and training_backfill pools (idempotent)",
        description=(
            "Create or update the pools training-guard's DAGs and cluster policy use: training_sla (daily "
            "runs) and training_backfill (every backfill run, fixed slots, lowest priority). A DAG cannot "
            "create a pool; run this once per deployment (or `airflow pools import deploy/pools.json`)."
        ),
        func=lazy_load_command("airflow_training_guard.cli.commands.pools_sync"),
        args=(ARG_DRY_RUN, ARG_OUTPUT, ARG_VERBOSE),
    ),
    ActionCommand(
        name="list",
        help="Show training-guard's pools as they are in Airflow, and whether they match",
        func=lazy_load_command("airflow_training_guard.cli.commands.pools_list"),
        args=(ARG_OUTPUT, ARG_VERBOSE),
    ),
)

TRAINING_GUARD_COMMANDS = (
    GroupCommand(
        name="pools",
        help="Manage the Airflow pools that keep backfills from starving the daily SLA run",
        subcommands=POOLS_COMMANDS,
    ),
)


def get_training_guard_cli_commands() -> list[GroupCommand]:
    """The provider's CLI commands: ``airflow training-guard pools sync|list``."""
    return [
        GroupCommand(
            name="training-guard",
            help="Tools of the airflow-training-guard provider (pools for safe backfills)",
            subcommands=TRAINING_GUARD_COMMANDS,
        )
    ]
