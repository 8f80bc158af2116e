"""Launchers: how a training program is started and supervised (no Airflow import).

``process`` runs a program as a local subprocess under a deadline and stall detection; the
operators in :mod:`airflow_training_guard.operators` adapt launchers to Airflow.
"""

from __future__ import annotations
