"""City pricing features: 30 cities x dates, a daily run and a UI-triggered backfill, exactly once per key.

Built with :func:`airflow_training_guard.backfill.factory.build_dags`. Every unit of work is one
composite partition key ``city|date`` (``berlin|2026-11-01``):

- ``city_pricing_daily`` computes today's 30 keys in pool ``training_sla``;
- ``city_pricing_backfill`` has a trigger form: the date range (up to a year, not today), a
  multi-select of the 30 known cities and the reprocess mode (missing only / failed / all). Unknown
  cities, reversed or future dates, too long ranges and keys with ``|``, ``/`` or shell characters are
  rejected by its first task, with every problem in the task log, before anything starts.

The feature rows of each key are committed to the ledger's row table in one transaction with the
ledger entry (``output="rows"``): a rerun with "all" replaces a key's rows, never appends. A year of all
30 cities is 10,950 keys, more than one run may map (``[core] max_map_length``, 1,024 by default): the
run splits it into part runs of at most that many keys each (34 days of 30 cities), queued under
``max_active_runs``, all committing through the same ledger (docs/backfills.md, "Long backfills").
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

from airflow_training_guard.backfill.factory import TrainingPipeline, WorkUnit, build_dags
from airflow_training_guard.backfill.validation import Dimension

CITIES = (
    "amsterdam", "athens", "barcelona", "berlin", "bratislava", "brussels", "bucharest", "budapest",
    "copenhagen", "dublin", "helsinki", "istanbul", "kyiv", "lisbon", "ljubljana", "london", "madrid",
    "milan", "munich", "oslo", "paris", "porto", "prague", "riga", "rome", "sofia", "stockholm",
    "tallinn", "vienna", "warsaw",
)  # fmt: skip
ROWS_PER_KEY = 24


def compute_city_prices(unit: WorkUnit) -> list[dict[str, Any]]:
    """One feature row per hour of the key's day, deterministic per key (a rerun gives the same rows)."""
    seed = int(hashlib.sha256(unit.partition_key.encode()).hexdigest()[:8], 16)
    return [
        {
            "city": unit.parts["city"],
            "date": unit.parts["date"],
            "hour": hour,
            "price": 50 + (seed >> hour) % 50,
        }
        for hour in range(ROWS_PER_KEY)
    ]


pipeline = TrainingPipeline(
    name="city_pricing",
    work=compute_city_prices,
    start_date=dt.date(2026, 1, 1),
    dimensions=(Dimension("city", CITIES),),
    output="rows",
    max_backfill_days=366,
    execution_timeout=dt.timedelta(minutes=30),
    doc_md=__doc__ or "",
    tags=["example"],
)

city_pricing_daily, city_pricing_backfill = build_dags(pipeline)
