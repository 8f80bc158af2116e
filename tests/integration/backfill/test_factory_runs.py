"""Factory DAGs run for real with dag.test(): keys in task identity, ledger commits, validation."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from airflow_training_guard.backfill.factory import TrainingPipeline, WorkUnit, build_dags
from airflow_training_guard.backfill.validation import Dimension
from airflow_training_guard.partitions.ledger import PartitionLedger


def _pipeline(tmp_path: Path, name: str, output: str = "rows") -> TrainingPipeline:
    def work(unit: WorkUnit) -> list[dict[str, Any]] | None:
        if output == "files":
            assert unit.output_dir is not None
            (unit.output_dir / "rows.csv").write_text(f"{unit.partition_key}\n")
            return None
        return [{"key": unit.partition_key, "i": i} for i in range(3)]

    return TrainingPipeline(
        name=name,
        work=work,
        start_date=dt.date(2026, 1, 1),
        dimensions=(Dimension("city", ("berlin", "paris", "rome")),),
        output=output,
        max_backfill_days=5,
        ledger_url=f"sqlite:///{tmp_path / 'ledger.db'}",
        output_root=str(tmp_path / "out"),
        checkpoint_root=str(tmp_path / "ckpt"),
        retries=0,
        doc_md="test pipeline",
    )


def test_backfill_dag_commits_every_selected_key_once_and_rerun_replaces(run_dag, tmp_path: Path) -> None:
    pipeline = _pipeline(tmp_path, "tg_factory_rows")
    dags = build_dags(pipeline)
    conf = {
        "start_date": "2026-02-01",
        "end_date": "2026-02-03",
        "city": ["berlin", "rome"],
        "reprocess": "missing",
    }
    states = run_dag(dags.backfill, run_conf=conf)
    assert states["validate_request"] == "success"
    assert sorted(k for k in states if k.startswith("train_partition")) == [
        f"train_partition[{i}]" for i in range(6)
    ]
    # The request fits one run: no part runs are started (the mapped trigger task has nothing to map).
    assert (states["part_runs"], states["start_part_runs"]) == ("success", "skipped")
    assert {state for task, state in states.items() if task != "start_part_runs"} == {"success"}
    ledger = PartitionLedger(pipeline.ledger_url or "", namespace=pipeline.name)
    committed = {entry.partition_key: entry for entry in ledger.entries()}
    assert sorted(committed) == [f"{c}|2026-02-0{d}" for c in ("berlin", "rome") for d in (1, 2, 3)]
    assert all(entry.commits == 1 for entry in committed.values())
    # "all" replaces: each key's rows are still exactly 3, and every key has 2 commits.
    run_dag(dags.backfill, run_conf={**conf, "reprocess": "all"}, logical_date=None)
    for key in committed:
        assert len(ledger.read_rows(key)) == 3
        entry = ledger.entry(key)
        assert entry is not None and entry.commits == 2


def test_map_index_shows_the_partition_key(run_dag, tmp_path: Path) -> None:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    pipeline = _pipeline(tmp_path, "tg_factory_files", output="files")
    dags = build_dags(pipeline)
    run_dag(dags.backfill, run_conf={"start_date": "2026-02-01", "end_date": "2026-02-01", "city": ["paris"]})
    with create_session() as session:
        names = [
            ti.rendered_map_index
            for ti in session.query(TaskInstance).filter(
                TaskInstance.dag_id == dags.backfill.dag_id, TaskInstance.task_id == "train_partition"
            )
        ]
    assert names == ["paris|2026-02-01"]
    ledger = PartitionLedger(pipeline.ledger_url or "", namespace=pipeline.name)
    current = ledger.current_path("paris|2026-02-01")
    assert current is not None and (current / "rows.csv").read_text() == "paris|2026-02-01\n"


@pytest.mark.parametrize(
    ("conf", "message"),
    [
        ({"start_date": "2026-02-05", "end_date": "2026-02-01"}, "is after end_date"),
        ({"start_date": "2026-01-01", "end_date": "2026-01-31"}, "at most 5 are allowed"),
        ({"start_date": "2999-01-01", "end_date": "2999-01-01"}, "in the future"),
    ],
)
def test_invalid_request_fails_in_the_first_task_and_nothing_starts(
    run_dag, tmp_path: Path, conf: dict[str, Any], message: str, capfd: pytest.CaptureFixture[str]
) -> None:
    pipeline = _pipeline(tmp_path, "tg_factory_invalid")
    dags = build_dags(pipeline)
    states = run_dag(dags.backfill, run_conf=conf)
    assert states["validate_request"] == "failed"
    assert all(
        state in {"upstream_failed", "None", "skipped"}
        for key, state in states.items()
        if key != "validate_request"
    ), states
    ledger = PartitionLedger(pipeline.ledger_url or "", namespace=pipeline.name)
    assert ledger.entries() == []
    out, err = capfd.readouterr()
    # The task log (what the UI shows) has the whole explanation.
    assert "the backfill request is invalid; nothing was started" in out + err
    assert message in out + err


def test_daily_dag_commits_todays_keys_for_every_city(run_dag, tmp_path: Path) -> None:
    pipeline = _pipeline(tmp_path, "tg_factory_daily")
    dags = build_dags(pipeline)
    states = run_dag(dags.daily, logical_date=dt.datetime(2026, 3, 1, tzinfo=dt.UTC))
    assert set(states.values()) == {"success"}, states
    ledger = PartitionLedger(pipeline.ledger_url or "", namespace=pipeline.name)
    assert [entry.partition_key for entry in ledger.entries()] == [
        "berlin|2026-03-01",
        "paris|2026-03-01",
        "rome|2026-03-01",
    ]
