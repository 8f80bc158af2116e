"""Fraud model features: a daily run and a UI-triggered backfill of up to 90 days, exactly once per day.

Built with :func:`airflow_training_guard.backfill.factory.build_dags` from one
:class:`~airflow_training_guard.backfill.factory.TrainingPipeline`:

- ``fraud_model_daily`` computes today's feature partition in pool ``training_sla``;
- ``fraud_model_backfill`` asks for a date range (at most 90 days, not today) and a reprocess mode,
  validates them, and computes one partition per day in pool ``training_backfill`` at the lowest
  priority. Each day is committed exactly once: two overlapping backfills cannot write duplicate
  feature rows (the failure that made the model overfit: train loss 0.3, validation loss 2.1).

Outputs are versioned directories under ``$TRAINING_GUARD_OUTPUT_ROOT/partitions/fraud_model/<day>/``;
the ledger (``$TRAINING_GUARD_LEDGER_URL``, SQLite under ``$AIRFLOW_HOME`` by default) points at the
committed one. See docs/backfills.md.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json

from airflow_training_guard.backfill.factory import TrainingPipeline, WorkUnit, build_dags

ROWS_PER_DAY = 50


def compute_fraud_features(unit: WorkUnit) -> None:
    """Write the day's feature rows and a tiny model summary into the staging directory."""
    assert unit.output_dir is not None
    seed = int(hashlib.sha256(unit.partition_key.encode()).hexdigest()[:8], 16)
    rows = [
        {"partition_key": unit.partition_key, "txn": i, "amount": (seed + 37 * i) % 1000 / 10}
        for i in range(ROWS_PER_DAY)
    ]
    with (unit.output_dir / "features.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["partition_key", "txn", "amount"])
        writer.writeheader()
        writer.writerows(rows)
    mean = sum(row["amount"] for row in rows) / len(rows)
    (unit.output_dir / "model.json").write_text(
        json.dumps({"partition_key": unit.partition_key, "mean": mean})
    )


pipeline = TrainingPipeline(
    name="fraud_model",
    work=compute_fraud_features,
    start_date=dt.date(2026, 1, 1),
    max_backfill_days=90,
    execution_timeout=dt.timedelta(minutes=30),
    doc_md=__doc__ or "",
    tags=["example"],
)

fraud_model_daily, fraud_model_backfill = build_dags(pipeline)
