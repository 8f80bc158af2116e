#!/usr/bin/env python3
"""Generate hourly event partitions for the example training program.

Layout: ``<data-dir>/date=YYYY-MM-DD/hour=HH/part-0.csv`` plus a ``_SUCCESS`` marker written
last (a partition without its marker is not finalized). Features are Gaussian; the label follows
a fixed logistic model, so the example program has something real to learn.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

N_FEATURES = 8
TRUE_WEIGHTS = np.linspace(-1.5, 1.5, N_FEATURES)


def write_hour(data_dir: Path, date: str, hour: int, rows: int, seed: int) -> Path:
    """Write one finalized hourly partition and return its directory."""
    rng = np.random.default_rng([seed, int(date.replace("-", "")), hour])
    x = rng.normal(size=(rows, N_FEATURES))
    p = 1.0 / (1.0 + np.exp(-(x @ TRUE_WEIGHTS)))
    y = (rng.random(rows) < p).astype(float)
    target = data_dir / f"date={date}" / f"hour={hour:02d}"
    target.mkdir(parents=True, exist_ok=True)
    np.savetxt(target / "part-0.csv", np.column_stack([x, y]), delimiter=",", fmt="%.6f")
    (target / "_SUCCESS").touch()
    return target


def write_day(
    data_dir: Path, date: str, rows_per_hour: int = 200, seed: int = 1, hours: int = 24
) -> list[Path]:
    """Write ``hours`` hourly partitions (default all 24) of ``date``."""
    return [write_hour(data_dir, date, hour, rows_per_hour, seed) for hour in range(hours)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--date", required=True, help="YYYY-MM-DD")
    parser.add_argument("--rows-per-hour", type=int, default=200)
    parser.add_argument("--hours", type=int, default=24)
    args = parser.parse_args()
    written = write_day(args.data_dir, args.date, args.rows_per_hour, hours=args.hours)
    print(f"wrote {len(written)} hourly partitions of {args.date} under {args.data_dir}")


if __name__ == "__main__":
    main()
