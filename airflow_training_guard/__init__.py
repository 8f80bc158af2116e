"""airflow-training-guard: an Apache Airflow provider that makes ML training pipelines hard to break.

Importing the package is cheap on purpose: it imports neither Airflow, the Kubernetes client nor
``huggingface_hub``. DAG files and training containers import the submodule they need
(``airflow_training_guard.operators.local``, ``airflow_training_guard.runtime`` ...).
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
