"""Every setting name of the package in one place: the config section, its options, environment names, roots.

One concept, one name: the ``[training_guard]`` section (``AIRFLOW__TRAINING_GUARD__<OPTION>``
environment variables work as for any Airflow option), the ``TRAINING_GUARD_*`` environment
variables the launchers and the backfill factory read on the worker, and the default roots under
``$AIRFLOW_HOME/training-guard``. Names of the environment contract a *training program* reads
live in :mod:`airflow_training_guard.runtime.contract` (they ship into the container without the
rest of the package).

Pure Python: no Airflow import.
"""

from __future__ import annotations

import os
from pathlib import Path

#: The Airflow config section of this provider.
CONFIG_SECTION = "training_guard"

# -- [training_guard] options ----------------------------------------------------------------------
#: Refuse ``allow_unpinned_image=True`` cluster-wide.
OPTION_FORBID_UNPINNED_IMAGES = "forbid_unpinned_images"

# -- environment variables read on the worker -------------------------------------------------------
#: Where checkpoints live when a DAG does not say.
ENV_CHECKPOINT_ROOT = "TRAINING_GUARD_CHECKPOINT_ROOT"
#: Where models and partition outputs go when a DAG does not say.
ENV_OUTPUT_ROOT = "TRAINING_GUARD_OUTPUT_ROOT"
#: The exactly-once ledger: an Airflow connection id (password kept in the connection) or a SQLAlchemy URL.
ENV_LEDGER_URL = "TRAINING_GUARD_LEDGER_URL"


def airflow_home() -> Path:
    """``$AIRFLOW_HOME``, or ``~/airflow`` as Airflow itself defaults it."""
    return Path(os.environ.get("AIRFLOW_HOME", str(Path.home() / "airflow")))


def guard_home() -> Path:
    """The package's own folder under ``$AIRFLOW_HOME`` (the embedded default's roots)."""
    return airflow_home() / "training-guard"


def default_root(env_name: str, leaf: str) -> str:
    """``$<env_name>`` when set, else ``$AIRFLOW_HOME/training-guard/<leaf>``."""
    return os.environ.get(env_name) or str(guard_home() / leaf)


def is_templated(value: object) -> bool:
    """Whether ``value`` is a Jinja template Airflow renders later (so it cannot be checked at parse time)."""
    return isinstance(value, str) and ("{{" in value or "{%" in value)
