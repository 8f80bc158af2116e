"""The CLI group parses with Airflow's own parser code, as `airflow training-guard ...` would."""

from __future__ import annotations

import argparse

from airflow_training_guard.cli.definition import get_training_guard_cli_commands


def test_pools_sync_and_list_parse_with_airflows_parser() -> None:
    from airflow.cli.cli_parser import _add_command

    parser = argparse.ArgumentParser(prog="airflow")
    subparsers = parser.add_subparsers(dest="subcommand")
    for command in get_training_guard_cli_commands():
        _add_command(subparsers, command)
    args = parser.parse_args(["training-guard", "pools", "sync", "--dry-run", "-o", "json"])
    assert args.dry_run is True and args.output == "json"
    assert args.func.__name__ == "pools_sync" or "pools_sync" in repr(args.func)
    args = parser.parse_args(["training-guard", "pools", "list"])
    assert "pools_list" in repr(args.func) or args.func.__name__ == "pools_list"
