"""Airflow loads the coverage plugin through the package's ``airflow.plugins`` entry point."""

from __future__ import annotations

import json


def test_airflow_plugins_lists_the_coverage_page_and_its_api(airflow_cli) -> None:
    proc = airflow_cli("plugins", "--output", "json")
    plugins = {plugin["name"]: plugin for plugin in json.loads(proc.stdout)}
    assert "training_guard" in plugins, f"plugins found: {sorted(plugins)}"
    plugin = plugins["training_guard"]
    assert [(app["url_prefix"], app["name"]) for app in plugin["fastapi_apps"]] == [
        ("/training-guard", "training-guard partition coverage")
    ]
    assert [
        (view["name"], view["href"], view["url_route"], view["destination"])
        for view in plugin["external_views"]
    ] == [("Partition coverage", "/training-guard/coverage", "partition-coverage", "nav")]
    assert "airflow.plugins" in plugin["source"]
