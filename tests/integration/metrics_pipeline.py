"""The run whose metrics tests/integration/test_metrics.py receives: run as its own process.

``python -m tests.integration.metrics_pipeline <workdir>`` with ``[metrics] statsd_on`` pointing at a
listener. Airflow sets its Stats up once per process from ``[metrics]``, so the run gets a process of
its own, configured like a worker.

Two DAGs run with ``dag.test()``:

- ``tg_metrics_daily``, the daily retraining shape: the completeness sensor waits while the last 6
  of 24 hourly partitions are still being written; the example training program stalls on its first
  attempt (the process stops after checkpoint 30) and the retry resumes from that checkpoint; the
  promotion loses one compare-and-swap race to a rival promotion, re-reads and promotes.
- the backfill factory's backfill DAG, run twice in mode ``missing``: a commit, then a skip.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import textwrap
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pendulum

REPO = Path(__file__).resolve().parents[2]
TRAIN = REPO / "examples" / "training" / "train.py"
sys.path.insert(0, str(REPO / "examples" / "training"))
from sample_data import write_day, write_hour  # noqa: E402

from airflow_training_guard.promotion.policy import PromotionPolicy  # noqa: E402
from airflow_training_guard.promotion.promote import promote  # noqa: E402
from airflow_training_guard.promotion.registry import Candidate, Observed, ProductionPointer  # noqa: E402
from airflow_training_guard.promotion.sql import SqlModelRegistry  # noqa: E402
from tests.helpers import write_dag_to_db  # noqa: E402

DAY = "2026-11-01"
MODEL = "ranker"
#: Hours the sensor finds missing at first; written while it waits.
LATE_HOURS = range(18, 24)
LATE_AFTER_SECONDS = 2.0
#: The training program stops itself (a hang) once this step is checkpointed, on attempt 1.
STALL_AT_STEP = 30
STEPS = 80


class RacedRegistry(SqlModelRegistry):
    """A SQL registry where a rival promotion lands just before this promoter's first compare-and-swap.

    The rival writes through its own registry object (its own connections) into the same database, so
    the swap really finds the pointer moved: a lost race, as two DAGs promoting at once produce.
    """

    def __init__(self, url: str, rival: Candidate) -> None:
        super().__init__(url)
        self.url = url
        self.rival = rival
        self.raced = False

    def compare_and_swap(self, model_name: str, expected: Observed, new: ProductionPointer) -> bool:
        if not self.raced:
            self.raced = True
            policy = PromotionPolicy(metric="accuracy", direction="max")
            promote(SqlModelRegistry(self.url), model_name, self.rival, policy, promoted_by="rival")
        return super().compare_and_swap(model_name, expected, new)


def _stalling_program(workdir: Path) -> Path:
    """The example program, which on attempt 1 stops its own process once step 30 is checkpointed."""
    wrapper = workdir / "stall_once.py"
    wrapper.write_text(
        textwrap.dedent(
            f"""
            import os, runpy, signal, sys, threading, time
            from pathlib import Path

            if os.environ["TRAINING_GUARD_ATTEMPT"] == "1":
                done = Path(os.environ["TRAINING_GUARD_CHECKPOINT_DIR"]) / "step-{STALL_AT_STEP:012d}"
                def hang():
                    while not (done / "MANIFEST.json").exists():
                        time.sleep(0.01)
                    os.kill(os.getpid(), signal.SIGSTOP)  # a hung process: no heartbeat, no exit
                threading.Thread(target=hang, daemon=True).start()
            sys.argv = [{str(TRAIN)!r}] + sys.argv[1:]
            runpy.run_path({str(TRAIN)!r}, run_name="__main__")
            """
        )
    )
    return wrapper


def daily_dag(workdir: Path) -> Any:
    from airflow.sdk import DAG

    from airflow_training_guard.operators.local import LocalTrainingOperator
    from airflow_training_guard.operators.promotion import PromoteModelOperator
    from airflow_training_guard.partitions import HoursOfDay, ObjectStorageSource
    from airflow_training_guard.sensors.completeness import PartitionCompletenessSensor

    data = workdir / "data"
    rival_artifact = workdir / "rival-model"
    rival_artifact.mkdir(parents=True)
    (rival_artifact / "model.bin").write_bytes(b"weights")
    rival = Candidate(
        candidate_id="rival",
        artifact_uri=str(rival_artifact),
        metrics={"accuracy": 0.01},
        run_id="rival-run",
        partition_key=DAY,
        manifest_missing=(),
    )
    registry = RacedRegistry(f"sqlite:///{workdir / 'registry.db'}", rival)
    with DAG(
        dag_id="tg_metrics_daily", schedule=None, start_date=pendulum.datetime(2026, 11, 1, tz="UTC")
    ) as dag:
        wait = PartitionCompletenessSensor(
            task_id="wait_for_partitions",
            expected=HoursOfDay(DAY),
            source=ObjectStorageSource(str(data) + "/date={date}/hour={hour}"),
            poke_interval=0.5,
            timeout="2m",
            # The last hours land while the sensor waits: their writer starts with the sensor.
            on_execute_callback=lambda context: threading.Thread(
                target=_write_late_hours, args=(data,), daemon=True
            ).start(),
        )
        train = LocalTrainingOperator(
            task_id="train",
            command=[
                *(sys.executable, str(_stalling_program(workdir)), "--data-dir", str(data)),
                *("--steps", str(STEPS), "--step-seconds", "0.01"),
            ],
            partition_key=DAY,
            expected_runtime="2m",
            stall_after="1s",
            poll_interval="0.2s",
            termination_grace="1s",
            checkpoint_every_steps=10,
            smoke_run_steps=0,
            checkpoint_root=str(workdir / "checkpoints"),
            output_dir=str(workdir / "model"),
            retries=1,
            retry_delay=timedelta(seconds=0),
        )
        promote_model = PromoteModelOperator(
            task_id="promote",
            model_name=MODEL,
            registry=registry,
            manifest_path=str(workdir / "model"),
            metric="accuracy",
        )
        wait >> train >> promote_model
    return dag


def _work(unit: Any) -> list[dict[str, Any]]:
    return [{"key": unit.partition_key, "rows": 3}]


def backfill_dag(workdir: Path) -> Any:
    from airflow_training_guard.backfill.factory import TrainingPipeline, build_dags
    from airflow_training_guard.backfill.validation import Dimension

    pipeline = TrainingPipeline(
        name="tg_metrics_cities",
        work=_work,
        start_date=dt.date(2026, 1, 1),
        dimensions=(Dimension("city", ("berlin", "paris")),),
        output="rows",
        max_backfill_days=5,
        ledger_url=f"sqlite:///{workdir / 'ledger.db'}",
        output_root=str(workdir / "out"),
        checkpoint_root=str(workdir / "ckpt"),
        retries=0,
        doc_md="metrics test pipeline",
    )
    return build_dags(pipeline).backfill


def _write_late_hours(data: Path) -> None:
    time.sleep(LATE_AFTER_SECONDS)
    for hour in LATE_HOURS:
        write_hour(data, DAY, hour, 60, 1)


def _states(dag: Any, run: Any) -> dict[str, str]:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        tis = session.query(TaskInstance).filter(
            TaskInstance.dag_id == dag.dag_id, TaskInstance.run_id == run.run_id
        )
        return {f"{ti.task_id}[{ti.map_index}]": str(ti.state) for ti in tis}


def main(workdir: Path) -> None:
    data = workdir / "data"
    write_day(data, DAY, rows_per_hour=60, hours=min(LATE_HOURS))
    states: dict[str, dict[str, str]] = {}

    daily = daily_dag(workdir)
    write_dag_to_db(daily)
    states["daily"] = _states(daily, daily.test(logical_date=pendulum.datetime(2026, 11, 2, tz="UTC")))

    backfill = backfill_dag(workdir)
    write_dag_to_db(backfill)
    conf = {"start_date": "2026-02-01", "end_date": "2026-02-01", "city": ["berlin"], "reprocess": "missing"}
    for attempt in ("first", "again"):
        run = backfill.test(run_conf=conf, logical_date=None)
        states[f"backfill_{attempt}"] = _states(backfill, run)
    (workdir / "states.json").write_text(json.dumps(states, indent=2))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
