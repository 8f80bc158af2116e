"""The backfill DAG's trigger form: Airflow ``Param`` s for the range, the selections and the mode.

The JSON schema does what a form can: a date picker for both dates, a multi-select of the known
values for each dimension (``type: array`` with ``examples``; ``items.enum`` makes the API reject
anything else), a drop-down for the reprocess mode. Checks that need more than one field or the
current date (order, future dates, range size) are done by the DAG's first task with
:func:`~airflow_training_guard.backfill.validation.validate_request`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from airflow.sdk import Param

from airflow_training_guard.backfill.validation import (
    END_FIELD,
    REPROCESS_FIELD,
    START_FIELD,
    Dimension,
)
from airflow_training_guard.partitions.ledger import ReprocessMode

REPROCESS_LABELS = {
    ReprocessMode.MISSING.value: "Missing only: keys never done (committed keys are left alone)",
    ReprocessMode.FAILED.value: "Failed: missing keys and keys whose last attempt failed",
    ReprocessMode.ALL.value: "All: redo every key, replacing its committed output (never appending)",
}


def backfill_params(
    dimensions: Sequence[Dimension], *, max_days: int, default_day: dt.date | None = None
) -> dict[str, Param]:
    """The ``params`` of a backfill DAG: the trigger form users fill in.

    :param dimensions: categorical dimensions; each becomes a multi-select of its known values.
    :param max_days: shown in the date fields' descriptions.
    :param default_day: the default start and end date (a fixed value keeps the DAG's serialized
        form stable between parses; the UI user picks real dates anyway).
    """
    day = (default_day or dt.date(2026, 11, 1)).isoformat()
    params: dict[str, Param] = {
        START_FIELD: Param(
            day,
            type="string",
            format="date",
            title="First date",
            description=f"First date to backfill (included). At most {max_days} days per backfill; not today or later.",
        ),
        END_FIELD: Param(
            day,
            type="string",
            format="date",
            title="Last date",
            description="Last date to backfill (included); at the latest yesterday (UTC).",
        ),
    }
    for dimension in dimensions:
        params[dimension.name] = Param(
            list(dimension.values),
            type="array",
            items={"type": "string", "enum": list(dimension.values)},
            examples=list(dimension.values),
            minItems=1,
            uniqueItems=True,
            title=f"{dimension.name.capitalize()} values",
            description=f"Which {dimension.name} values to backfill (default: all {len(dimension.values)}).",
        )
    params[REPROCESS_FIELD] = Param(
        ReprocessMode.MISSING.value,
        type="string",
        enum=[mode.value for mode in ReprocessMode],
        values_display=REPROCESS_LABELS,
        title="Reprocess",
        description="Which keys to process. Overlapping backfills are safe: every key commits exactly once.",
    )
    return params
