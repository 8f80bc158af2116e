"""Small helpers shared by test modules of several tiers (fixtures live in conftest.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write_hour(root: Path, date: str, hour: int, *, data: bytes = b"x,y\n1,2\n", marker: bool = True) -> Path:
    """One hourly partition in the layout examples/training/sample_data.py writes (``_SUCCESS`` last)."""
    folder = root / f"date={date}" / f"hour={hour:02d}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "part-0.csv").write_bytes(data)
    if marker:
        (folder / "_SUCCESS").touch()
    return folder


def xcom_value(dag_id: str, task_id: str, key: str = "return_value") -> Any:
    """The newest XCom ``key`` of ``dag_id.task_id`` in the test's metadata database, deserialised."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = (
            session.query(XComModel)
            .filter(XComModel.dag_id == dag_id, XComModel.task_id == task_id, XComModel.key == key)
            .order_by(XComModel.timestamp.desc())
            .first()
        )
        assert row is not None, f"no XCom {key!r} from {dag_id}.{task_id}"
        value = row.value
    return json.loads(value) if isinstance(value, str) else value


def write_dag_to_db(dag: Any) -> None:
    """Serialize a DAG built inside a test, as the dag-processor would for a file in dags/.

    ``dag.test()`` in Airflow 3.3 only runs DAGs whose serialized version is in the metadata
    database; DAGs defined in a test module are in no bundle, so write them the same way the
    dag-processor does (``sync_bag_to_db``), under the ``dags-folder`` bundle.
    """
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db

    DagBundlesManager().sync_bundles_to_db()
    bag = DagBag(dag_folder=os.devnull, collect_dags=False)
    bag.bag_dag(dag)
    sync_bag_to_db(bag, "dags-folder", None)
