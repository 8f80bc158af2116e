"""The provider registers itself the way Airflow expects, and importing it stays cheap."""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from airflow_training_guard import __version__
from airflow_training_guard.get_provider_info import get_provider_info


def _schema() -> dict:
    import airflow

    path = Path(airflow.__file__).parent / "provider_info.schema.json"
    return json.loads(path.read_text())


def test_provider_info_validates_against_airflows_own_schema() -> None:
    jsonschema.validate(get_provider_info(), _schema())


def test_provider_info_package_name_and_version_match_the_installed_distribution() -> None:
    info = get_provider_info()
    dist = importlib.metadata.distribution(info["package-name"])
    assert dist.version == __version__
    assert info["versions"][0] == __version__


def test_entry_point_returns_the_provider_info() -> None:
    points = importlib.metadata.entry_points(group="apache_airflow_provider")
    ours = [p for p in points if p.value.startswith("airflow_training_guard.")]
    assert len(ours) == 1, f"expected one apache_airflow_provider entry point, found {ours}"
    assert ours[0].load()() == get_provider_info()


def _listed_modules() -> list[str]:
    info = get_provider_info()
    modules: list[str] = []
    for kind in ("operators", "sensors", "hooks", "triggers"):
        for entry in info.get(kind, []):
            modules.extend(entry["python-modules"])
    return modules


@pytest.mark.parametrize("module", _listed_modules())
def test_every_module_listed_in_provider_info_imports(module: str) -> None:
    importlib.import_module(module)


def _modules_loaded_by(statement: str) -> set[str]:
    code = f"import sys; {statement}; print('\\n'.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return {line.split(".")[0] for line in out.splitlines()}


def test_importing_the_package_loads_neither_airflow_nor_kubernetes_nor_the_hub() -> None:
    """DAG parsing and training containers import us often; heavy clients load only when used."""
    loaded = _modules_loaded_by("import airflow_training_guard")
    assert not loaded & {"airflow", "kubernetes", "kubernetes_asyncio", "huggingface_hub"}


@pytest.mark.parametrize("package", ["airflow_training_guard.runtime", "airflow_training_guard.policies"])
def test_pure_packages_import_no_airflow_and_no_third_party_clients(package: str) -> None:
    """runtime/ runs inside training images that do not have Airflow; policies/ must test without it."""
    loaded = _modules_loaded_by(f"import {package}")
    assert not loaded & {"airflow", "kubernetes", "huggingface_hub", "numpy", "sqlalchemy", "pendulum"}


def test_partitions_package_imports_no_airflow_and_no_clients() -> None:
    """partitions/ is pure logic; pendulum (time zones) is its only third-party import."""
    loaded = _modules_loaded_by("import airflow_training_guard.partitions")
    assert not loaded & {"airflow", "kubernetes", "huggingface_hub", "numpy", "sqlalchemy"}
