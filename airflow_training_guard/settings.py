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
# Each option is declared (description, type, default, example) in ``get_provider_info()["config"]``,
# so ``airflow config list`` shows it; a test keeps the two in step. docs/configuration.md lists them.
#: Refuse ``allow_unpinned_image=True`` cluster-wide.
OPTION_FORBID_UNPINNED_IMAGES = "forbid_unpinned_images"
#: Kubernetes label selector of the GPU nodes the inventory hook (capacity, fit checks) looks at.
OPTION_GPU_NODE_LABEL_SELECTOR = "gpu_node_label_selector"
#: Turn on the cluster policy that routes every backfill run's task instances to the backfill pool.
OPTION_BACKFILL_POLICY_ENABLED = "backfill_policy_enabled"
#: The pool backfill task instances go to (the policy) and that ``pools sync`` creates.
OPTION_BACKFILL_POOL = "backfill_pool"
#: The priority weight the policy gives backfill task instances.
OPTION_BACKFILL_PRIORITY_WEIGHT = "backfill_priority_weight"
#: Slots of the backfill pool that ``pools sync`` creates or grows.
OPTION_BACKFILL_POOL_SLOTS = "backfill_pool_slots"
#: The pool of the daily, SLA-bound runs that ``pools sync`` creates.
OPTION_SLA_POOL = "sla_pool"
#: Slots of the SLA pool that ``pools sync`` creates or grows.
OPTION_SLA_POOL_SLOTS = "sla_pool_slots"

# -- environment variables read on the worker -------------------------------------------------------
#: Where checkpoints live when a DAG does not say.
ENV_CHECKPOINT_ROOT = "TRAINING_GUARD_CHECKPOINT_ROOT"
#: Where models and partition outputs go when a DAG does not say.
ENV_OUTPUT_ROOT = "TRAINING_GUARD_OUTPUT_ROOT"
#: The exactly-once ledger: an Airflow connection id (password kept in the connection) or a SQLAlchemy URL.
ENV_LEDGER_URL = "TRAINING_GUARD_LEDGER_URL"
#: The connection to Airflow's REST API a task uses to read its own pool and its backfill.
ENV_AIRFLOW_API_CONN_ID = "TRAINING_GUARD_AIRFLOW_API_CONN_ID"


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


def default_ledger_url() -> str:
    """``$TRAINING_GUARD_LEDGER_URL`` when set, else SQLite at ``$AIRFLOW_HOME/training-guard/ledger.db``."""
    return os.environ.get(ENV_LEDGER_URL) or f"sqlite:///{guard_home() / 'ledger.db'}"
