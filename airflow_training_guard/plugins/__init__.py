"""The Airflow UI plugin of training-guard: the partition coverage page and its API."""

from __future__ import annotations
