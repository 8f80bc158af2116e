"""The real ``airflow`` command line discovers the provider and its ``[training_guard]`` options."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from airflow_training_guard import __version__


def test_airflow_providers_list_shows_training_guard(airflow_cli) -> None:
    proc = airflow_cli("providers", "list", "--output", "json")
    providers = {p["package_name"]: p for p in json.loads(proc.stdout)}
    assert "airflow-training-guard" in providers, sorted(providers)
    assert providers["airflow-training-guard"]["version"] == __version__


def test_airflow_config_get_value_knows_a_training_guard_option_without_a_warning(tmp_path: Path) -> None:
    """Regression (issue 19): get-value printed nothing but 'section/key [training_guard/...] not found'."""
    home = tmp_path / "airflow-home"
    home.mkdir()
    env = {
        name: value for name, value in os.environ.items() if not name.startswith("AIRFLOW__TRAINING_GUARD__")
    }
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home / 'airflow.db'}",
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
    )
    airflow_bin = str(Path(sys.executable).with_name("airflow"))
    proc = subprocess.run(
        [airflow_bin, "config", "get-value", "training_guard", "gpu_node_label_selector"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stdout == "\n"  # the declared default: empty, every node
    assert "not found" not in proc.stdout + proc.stderr
    assert "warning" not in proc.stderr.lower(), proc.stderr[-4000:]
