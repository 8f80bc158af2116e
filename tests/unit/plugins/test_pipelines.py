"""What the coverage page reads from a backfill DAG: dimensions, limits, claim timeout."""

from __future__ import annotations

import datetime as dt

from airflow_training_guard.backfill.factory import TrainingPipeline, build_dags
from airflow_training_guard.backfill.validation import Dimension
from airflow_training_guard.plugins.pipelines import DEFAULT_MAX_DAYS, pipeline_from_dag


def _work(unit: object) -> None:
    return None


def test_pipeline_from_the_backfill_dag_has_its_dimensions_limits_and_claim_timeout() -> None:
    pipeline = TrainingPipeline(
        name="shop_sales",
        work=_work,
        start_date=dt.date(2026, 3, 1),
        dimensions=(Dimension("region", ("eu", "us")), Dimension("shop", ("s1", "s2", "s3"))),
        max_backfill_days=45,
        execution_timeout=dt.timedelta(minutes=20),
    )
    info = pipeline_from_dag(build_dags(pipeline).backfill)

    assert info.name == "shop_sales"
    assert info.backfill_dag_id == "shop_sales_backfill"
    assert [(d.name, d.values) for d in info.dimensions] == [
        ("region", ("eu", "us")),
        ("shop", ("s1", "s2", "s3")),
    ]
    assert info.earliest == dt.date(2026, 3, 1)
    assert info.max_days == 45
    # The ledger's stale_after is twice the unit's execution_timeout (TrainingPipeline.ledger()).
    assert info.stale_after == dt.timedelta(minutes=40)
    assert pipeline.ledger().stale_after == info.stale_after


def test_a_pipeline_with_only_dates_has_no_dimensions() -> None:
    pipeline = TrainingPipeline(name="fraud_days", work=_work, start_date=dt.date(2026, 1, 1))
    info = pipeline_from_dag(build_dags(pipeline).backfill)
    assert info.dimensions == ()
    assert info.max_days == DEFAULT_MAX_DAYS == pipeline.max_backfill_days
