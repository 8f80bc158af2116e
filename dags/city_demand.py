"""City demand features, and a report scheduled on each committed ``city|date`` key (native partitions).

Built with :func:`airflow_training_guard.backfill.factory.build_dags` like the other pipelines
(``city_demand_daily``, ``city_demand_backfill``: 6 cities x dates, exactly once per key), plus what
makes each committed key visible to Airflow's own partition machinery:

- both DAGs end with ``announce_partitions``, whose outlet is the asset ``city_demand``; it adds
  one partition per key that *this run* committed (``outlet_events[asset].add_partitions``), so
  Airflow records one asset event per key with ``partition_key = "berlin|2026-11-01"``. Keys that
  were skipped (already committed), superseded or failed are not announced; a run that committed
  nothing is skipped and announces nothing. ``fail_if_a_key_failed`` keeps a run with a failed key
  failed (``announce_partitions`` runs after failures too, and would otherwise be the only leaf).
- ``city_demand_report`` is scheduled with ``PartitionedAssetTimetable(assets=city_demand)``: Airflow
  creates one run per announced key, with ``dag_run.partition_key`` set to it. No sensor, no
  polling of the ledger.

Each key reads its input, ``$TRAINING_GUARD_DATA_ROOT/city_demand/<city>/<date>.json`` (one number
per hour), and writes hourly demand features. A key whose input is missing fails at once (retrying
cannot create the file); after the input lands, backfill it with reprocess "failed", from the
trigger form or the partition coverage page (docs/coverage-grid.md).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from pathlib import Path
from typing import Any

from airflow.sdk import Asset, PartitionedAssetTimetable, XComArg, dag, task
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from airflow_training_guard.backfill.factory import TrainingPipeline, WorkUnit, build_dags
from airflow_training_guard.backfill.validation import Dimension
from airflow_training_guard.partitions.events import announce_committed

CITIES = ("berlin", "hamburg", "munich", "oslo", "paris", "rome")
#: The asset every committed key of the pipeline is announced on.
CITY_DEMAND = Asset(name="city_demand", uri="training-guard://city_demand")


def input_path(city: str, day: str) -> Path:
    """Where the input of one key lives (written by the upstream ingestion, or by tests)."""
    root = Path(os.environ.get("TRAINING_GUARD_DATA_ROOT", "/tmp/training-guard-data"))
    return root / "city_demand" / city / f"{day}.json"


def compute_city_demand(unit: WorkUnit) -> None:
    """Hourly demand features of one city and day, from that key's input file."""
    source = input_path(unit.parts["city"], unit.parts["date"])
    if not source.is_file():
        raise FileNotFoundError(
            f"input of partition_key={unit.partition_key!r} is missing: {source}; land it, then backfill "
            "this key with reprocess 'failed'"
        )
    hourly = json.loads(source.read_text())
    features = {
        "partition_key": unit.partition_key,
        "total": sum(hourly),
        "peak_hour": max(range(len(hourly)), key=hourly.__getitem__),
    }
    assert unit.output_dir is not None
    (unit.output_dir / "features.json").write_text(json.dumps(features, sort_keys=True))


pipeline = TrainingPipeline(
    name="city_demand",
    work=compute_city_demand,
    start_date=dt.date(2026, 1, 1),
    dimensions=(Dimension("city", CITIES),),
    output="files",
    max_backfill_days=60,
    # A missing input is not fixed by a retry: fail at once and show it on the coverage page.
    retries=0,
    execution_timeout=dt.timedelta(minutes=10),
    doc_md=__doc__ or "",
    tags=["example", "partitions"],
)

city_demand_daily, city_demand_backfill = build_dags(pipeline)

for _built in (city_demand_daily, city_demand_backfill):
    with _built:

        @task(
            task_id="announce_partitions",
            outlets=[CITY_DEMAND],
            # Announce what did commit even when another key of the run failed.
            trigger_rule="all_done",
            retries=0,
            doc_md="Adds one partition of the `city_demand` asset per key this run committed, so "
            "`city_demand_report` gets one run per key (`dag_run.partition_key`).",
        )
        def announce_partitions(results: Any, outlet_events: Any = None) -> list[str]:
            keys = announce_committed(outlet_events[CITY_DEMAND], list(results or ()))
            if not keys:
                raise AirflowSkipException("this run committed no partition key; nothing to announce")
            logging.getLogger("airflow.task").info("announced %d partition(s): %s", len(keys), keys)
            return keys

        @task(
            task_id="fail_if_a_key_failed",
            trigger_rule="one_failed",
            retries=0,
            doc_md="Fails the run when a key failed. `announce_partitions` runs even then (all_done) and is "
            "a leaf, so without this task a run with failed keys would end as success.",
        )
        def fail_if_a_key_failed() -> None:
            raise AirflowFailException(
                "at least one partition key failed (or the request was refused); its task log says why. The "
                "committed keys were announced; backfill the failed ones with reprocess 'failed'"
            )

        _train = _built.get_task("train_partition")
        _announce = announce_partitions(XComArg(_train))
        [_train, _announce] >> fail_if_a_key_failed()


@dag(
    dag_id="city_demand_report",
    schedule=PartitionedAssetTimetable(assets=CITY_DEMAND),
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    tags=["training-guard", "example", "partitions"],
    doc_md="One run per committed `city|date` key of `city_demand` (partitioned asset events): "
    "`dag_run.partition_key` names the key. See dags/city_demand.py and docs/coverage-grid.md.",
)
def city_demand_report() -> None:
    @task(doc_md="Reads the committed features of the run's partition_key through the ledger.")
    def report(dag_run: Any = None) -> dict[str, Any]:
        key = str(dag_run.partition_key)
        path = pipeline.ledger().current_path(key)
        if path is None:
            raise FileNotFoundError(f"partition_key={key!r} has no committed output in the ledger")
        features: dict[str, Any] = json.loads((path / "features.json").read_text())
        logging.getLogger("airflow.task").info("partition_key=%s features=%s", key, features)
        return features

    report()


city_demand_report()
