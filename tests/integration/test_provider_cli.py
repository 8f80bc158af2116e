"""The real ``airflow`` command line discovers the provider through its entry point."""

from __future__ import annotations

import json

from airflow_training_guard import __version__


def test_airflow_providers_list_shows_training_guard(airflow_cli) -> None:
    proc = airflow_cli("providers", "list", "--output", "json")
    providers = {p["package_name"]: p for p in json.loads(proc.stdout)}
    assert "airflow-training-guard" in providers, sorted(providers)
    assert providers["airflow-training-guard"]["version"] == __version__
