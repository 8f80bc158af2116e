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

RUNS_COMMANDS = (
    ActionCommand(
        name="reproduce",
        help="Re-run a past training run from its run manifest and compare the model's SHA-256",
        description=(
            "Read a run manifest (run-manifest.json next to a model), refuse with the reason when the "
            "Python environment, the content-pinned data or the program changed since (unless --force), "
            "re-run the recorded command with the same partition key and pins into a scratch directory, "
            "and report whether every model file is byte-identical. Exit 0 identical, 1 different or "
            "failed, 2 refused."
        ),
        func=lazy_load_command("airflow_training_guard.cli.reproduce.runs_reproduce"),
        args=(
            Arg(("manifest",), help="Path of run-manifest.json, or the model directory holding it"),  # type: ignore[no-untyped-call]
            Arg(  # type: ignore[no-untyped-call]
                ("--work-dir",),
                help="Scratch directory for the re-run (default: a new temporary directory, kept)",
            ),
            Arg(  # type: ignore[no-untyped-call]
                ("--force",),
                help="Re-run even when the environment, data or program drifted (the drift is still reported)",
                action="store_true",
            ),
            Arg(("--timeout",), help="Hard deadline of the re-run in seconds (default 7200)", type=float),  # type: ignore[no-untyped-call]
            ARG_OUTPUT,
            ARG_VERBOSE,
        ),
    ),
)

TRAINING_GUARD_COMMANDS = (
    GroupCommand(
        name="pools",
        help="Manage the Airflow pools that keep backfills from starving the daily SLA run",
        subcommands=POOLS_COMMANDS,
    ),
    GroupCommand(
        name="runs",
        help="Work with past training runs (reproduce one from its run manifest)",
        subcommands=RUNS_COMMANDS,
    ),
)


def get_training_guard_cli_commands() -> list[GroupCommand]:
    """The provider's CLI commands: ``airflow training-guard pools sync|list``, ``runs reproduce``."""
    return [
        GroupCommand(
            name="training-guard",
            help="Tools of the airflow-training-guard provider (pools for safe backfills)",
            subcommands=TRAINING_GUARD_COMMANDS,
        )
    ]
