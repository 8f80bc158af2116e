"""Every example DAG in dags/ loads in a real DagBag with zero import errors."""

from __future__ import annotations

from pathlib import Path

import pytest

DAGS_FOLDER = Path(__file__).resolve().parents[2] / "dags"
DAG_FILES = sorted(p.name for p in DAGS_FOLDER.glob("*.py"))


@pytest.fixture(scope="module")
def dagbag(airflow_db: Path):
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS_FOLDER))


def test_dags_folder_is_not_empty() -> None:
    assert "daily_retraining.py" in DAG_FILES


def test_every_example_dag_file_loads_without_import_errors(dagbag) -> None:
    assert dagbag.import_errors == {}, "\n".join(f"{k}:\n{v}" for k, v in dagbag.import_errors.items())


@pytest.mark.parametrize("filename", DAG_FILES)
def test_example_dag_file_defines_at_least_one_dag_with_docs(dagbag, filename: str) -> None:
    dags = [d for d in dagbag.dags.values() if Path(d.fileloc).name == filename]
    assert dags, f"{filename} defines no DAG"
    for dag in dags:
        assert dag.doc_md, f"DAG {dag.dag_id} has no doc_md"
        undocumented = [t.task_id for t in dag.tasks if not t.doc_md]
        assert not undocumented, f"tasks without doc_md in {dag.dag_id}: {undocumented}"
