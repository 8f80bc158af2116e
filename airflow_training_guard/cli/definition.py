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
    help="Print the plan (create/grow/keep/would-shrink per pool) without changing anything.",
    action="store_true",
)
ARG_FORCE_SHRINK = Arg(  # type: ignore[no-untyped-call]
    ("--force",),
    help=(
        "Also shrink pools that have more slots than configured (an operator may have raised them on "
        "purpose; without --force they are kept)."
    ),
    action="store_true",
)

POOLS_COMMANDS = (
    ActionCommand(
        name="sync",
        help="Create or grow the SLA and backfill pools as [training_guard] configures them (idempotent)",
        description=(
            "Create or grow the pools training-guard's DAGs and cluster policy use: the SLA pool (daily "
            "runs; [training_guard] sla_pool, default training_sla, sla_pool_slots, default 4) and the "
            "backfill pool (every backfill run, fixed slots, lowest priority; backfill_pool, default "
            "training_backfill, backfill_pool_slots, default 2). Prints one plan line per pool first "
            "(create, grow, keep, would-shrink). A pool with more slots than configured is kept unless "
            "--force. A DAG cannot create a pool; run this once per deployment (or `airflow pools "
            "import deploy/pools.json` for the defaults)."
        ),
        func=lazy_load_command("airflow_training_guard.cli.commands.pools_sync"),
        args=(ARG_DRY_RUN, ARG_FORCE_SHRINK, ARG_OUTPUT, ARG_VERBOSE),
    ),
    ActionCommand(
        name="list",
        help="Show training-guard's pools as they are in Airflow, and whether they match the configuration",
        func=lazy_load_command("airflow_training_guard.cli.commands.pools_list"),
        args=(ARG_OUTPUT, ARG_VERBOSE),
    ),
)

ARG_PIPELINE = Arg(("pipeline",), help="The pipeline's name (its ledger namespace), e.g. city_pricing")  # type: ignore[no-untyped-call]
ARG_FROM = Arg(  # type: ignore[no-untyped-call]
    ("--from",), dest="date_from", metavar="DATE", help="First date, YYYY-MM-DD (included)"
)
ARG_TO = Arg(  # type: ignore[no-untyped-call]
    ("--to",), dest="date_to", metavar="DATE", help="Last date, YYYY-MM-DD (included)"
)
ARG_FROM_REQUIRED = Arg(  # type: ignore[no-untyped-call]
    ("--from",), dest="date_from", metavar="DATE", required=True, help="First date, YYYY-MM-DD (included)"
)
ARG_TO_REQUIRED = Arg(  # type: ignore[no-untyped-call]
    ("--to",), dest="date_to", metavar="DATE", required=True, help="Last date, YYYY-MM-DD (included)"
)
ARG_WHERE = Arg(  # type: ignore[no-untyped-call]
    ("--where",),
    action="append",
    metavar="NAME=VALUE[,VALUE...]",
    help="Only these values of a dimension, e.g. --where city=berlin,oslo (repeat for more dimensions)",
)
ARG_REPROCESS = Arg(  # type: ignore[no-untyped-call]
    ("--reprocess",),
    choices=("missing", "failed", "all"),
    default="missing",
    help="Which keys the backfill would process: missing (default), failed (missing and failed) or all",
)

PARTITIONS_COMMANDS = (
    ActionCommand(
        name="status",
        help="Show each partition key of a pipeline: committed, running, failed, superseded or missing",
        description=(
            "One row per partition key of the range (default: the 30 days up to yesterday) with its state, "
            "commits, fencing token, version, rows, holder, since when and the last error; the same data "
            "as the partition coverage page."
        ),
        func=lazy_load_command("airflow_training_guard.cli.partitions.status"),
        args=(ARG_PIPELINE, ARG_FROM, ARG_TO, ARG_WHERE, ARG_OUTPUT, ARG_VERBOSE),
    ),
    ActionCommand(
        name="plan",
        help="Dry run of a backfill: which keys would run, which are skipped, and why",
        description=(
            "Validates the request like the backfill DAG (dates, range, known values, max_map_length) and "
            "lists every key with run or skip and the reason. Nothing is claimed or triggered."
        ),
        func=lazy_load_command("airflow_training_guard.cli.partitions.plan"),
        args=(
            ARG_PIPELINE,
            ARG_FROM_REQUIRED,
            ARG_TO_REQUIRED,
            ARG_WHERE,
            ARG_REPROCESS,
            ARG_OUTPUT,
            ARG_VERBOSE,
        ),
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
        name="partitions",
        help="Partition coverage of a pipeline and backfill dry runs (the coverage page, in a terminal)",
        subcommands=PARTITIONS_COMMANDS,
    ),
    GroupCommand(
        name="runs",
        help="Work with past training runs (reproduce one from its run manifest)",
        subcommands=RUNS_COMMANDS,
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
