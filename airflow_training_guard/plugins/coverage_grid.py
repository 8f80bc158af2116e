"""``TrainingGuardPlugin``: the partition coverage page in the Airflow 3.3 UI.

Two of Airflow 3's plugin extension points, registered through the ``airflow.plugins`` entry point
of this package (loaded by every Airflow process, whatever ``[core] lazy_discover_providers`` says;
a provider's ``plugins`` list is only read when that option is False):

- ``fastapi_apps``: the page and its JSON API (:mod:`airflow_training_guard.plugins.api`) mounted on
  the API server under ``/training-guard``, behind Airflow's auth manager;
- ``external_views``: a "Partition coverage" entry in the UI's navigation that shows the page inside
  the Airflow UI (``/plugin/partition-coverage``), same origin, so the UI's login cookie is the
  page's identity.

Why not ``react_apps``: a React app is a JavaScript bundle built against the UI's React version,
which needs a Node tool chain and a build step this Python package does not have; the page is
plain
HTML and JavaScript served by the app above, with nothing to build and nothing to keep in step.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from airflow_training_guard.plugins.api import URL_PREFIX, app

#: The UI route of the page inside the Airflow UI: ``<base>/plugin/partition-coverage``.
UI_ROUTE = "partition-coverage"


class TrainingGuardPlugin(AirflowPlugin):
    """Partition coverage grid: per pipeline, dimension values x dates, coloured by ledger state."""

    name = "training_guard"
    fastapi_apps = [
        {"app": app, "url_prefix": URL_PREFIX, "name": "training-guard partition coverage"},
    ]
    external_views = [
        {
            "name": "Partition coverage",
            "href": f"{URL_PREFIX}/coverage",
            "destination": "nav",
            "category": "browse",
            "url_route": UI_ROUTE,
        }
    ]
