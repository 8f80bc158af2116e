"""A year of 30 cities from the backfill form: split into part runs that each fit max_map_length.

Issue 17: one request mapped every key into one task, capped by ``[core] max_map_length`` (1,024:
34 days of 30 cities), so 30 cities x 365 days = 10,950 keys was refused. Now the backfill DAG's
first run starts part runs of the same DAG instead (``start_part_runs``, Airflow's own
TriggerDagRunOperator), each a request of at most ``max_map_length`` keys, queued under the DAG's
``max_active_runs``, all against one ledger.

Both tests run the real backfill DAG with ``dag.test()`` (tests/conftest.py ``run_dag``): the
10,950-key request through Airflow's own mapping and run triggering (the part runs it creates are read
back from the metadata database); and a small request split the same way (``max_map_length`` 5),
whose parts are then run as the part runs would run them, to check every key commits exactly once.
"""

from __future__ import annotations

import collections
import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from airflow_training_guard.backfill.factory import TrainingPipeline, WorkUnit, build_dags
from airflow_training_guard.backfill.validation import Dimension, validate_request
from airflow_training_guard.partitions.ledger import PartitionLedger

CITIES = tuple(f"city{index:02d}" for index in range(30))


def _pipeline(tmp_path: Path, name: str, cities: tuple[str, ...], max_days: int) -> TrainingPipeline:
    def work(unit: WorkUnit) -> list[dict[str, Any]]:
        return [{"key": unit.partition_key, "row": row} for row in range(3)]

    return TrainingPipeline(
        name=name,
        work=work,
        start_date=dt.date(2025, 1, 1),
        dimensions=(Dimension("city", cities),),
        output="rows",
        max_backfill_days=max_days,
        ledger_url=f"sqlite:///{tmp_path / 'ledger.db'}",
        output_root=str(tmp_path / "out"),
        checkpoint_root=str(tmp_path / "ckpt"),
        retries=0,
        doc_md="split test pipeline",
    )


def _part_runs(dag_id: str) -> list[Any]:
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        runs = session.query(DagRun).filter(DagRun.dag_id == dag_id, DagRun.run_id.like("%__part%")).all()
        session.expunge_all()
    return sorted(runs, key=lambda run: run.run_id)


def test_a_year_of_30_cities_is_accepted_and_split_into_part_runs_within_max_map_length(
    run_dag, tmp_path: Path
) -> None:
    """Regression (issue 17): 30 cities x 365 days = 10,950 keys was refused (max_map_length 1,024)."""
    from airflow.configuration import conf as airflow_conf

    max_map_length = airflow_conf.getint("core", "max_map_length")
    assert max_map_length == 1024
    pipeline = _pipeline(tmp_path, "tg_year", CITIES, max_days=365)
    dags = build_dags(pipeline)
    request = {"start_date": "2025-01-01", "end_date": "2025-12-31", "reprocess": "missing"}

    states = run_dag(dags.backfill, run_conf=request)

    assert states["validate_request"] == "success", states
    assert states["train_partition"] == "skipped", states  # this run maps nothing itself
    started = sorted(key for key in states if key.startswith("start_part_runs["))
    assert len(started) == 11 and {states[key] for key in started} == {"success"}, states
    runs = _part_runs(dags.backfill.dag_id)
    assert len(runs) == 11
    assert all(run.run_id.endswith("of011") for run in runs), [run.run_id for run in runs]
    assert {str(run.state) for run in runs} == {"queued"}  # waiting under max_active_runs
    keys: collections.Counter[str] = collections.Counter()
    for run in runs:
        part = validate_request(
            run.conf,
            dimensions=pipeline.dimensions,
            max_days=pipeline.max_backfill_days,
            max_keys=max_map_length,
        )
        assert part.reprocess.value == "missing"
        keys.update(part.partition_keys())
    assert len(keys) == 30 * 365 == 10_950
    assert set(keys.values()) == {1}  # every key in exactly one part
    assert PartitionLedger(pipeline.ledger_url or "", namespace=pipeline.name).entries() == []


def test_split_parts_commit_every_key_exactly_once(
    run_dag, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW__CORE__MAX_MAP_LENGTH", "5")
    pipeline = _pipeline(tmp_path, "tg_split", ("berlin", "paris"), max_days=30)
    dags = build_dags(pipeline)
    request = {"start_date": "2025-03-01", "end_date": "2025-03-06", "reprocess": "missing"}  # 12 keys

    states = run_dag(dags.backfill, run_conf=request)

    assert states["train_partition"] == "skipped", states
    runs = _part_runs(dags.backfill.dag_id)
    confs = [run.conf for run in runs]
    assert [(conf["start_date"], conf["end_date"]) for conf in confs] == [
        ("2025-03-01", "2025-03-02"),
        ("2025-03-03", "2025-03-04"),
        ("2025-03-05", "2025-03-06"),
    ]
    # Each part, run as its part run runs it (and the first one twice, as an overlapping rerun would).
    for conf in [*confs, confs[0]]:
        part_states = run_dag(dags.backfill, run_conf=conf, logical_date=None)
        assert part_states["validate_request"] == "success", part_states
        assert part_states["start_part_runs"] == "skipped", part_states  # a part never splits again
    ledger = PartitionLedger(pipeline.ledger_url or "", namespace=pipeline.name)
    entries = ledger.entries()
    assert len(entries) == 12
    assert {(entry.state, entry.commits) for entry in entries} == {("committed", 1)}
    for entry in entries:
        assert [row["row"] for row in ledger.read_rows(entry.partition_key)] == [0, 1, 2]
