"""AirflowApiHook: read Airflow's own objects (pools) from task code, through the REST API.

In Airflow 3 a task has no metadata-database access (the task runner replaces the ORM session
with one that raises "Direct database access via the ORM is not allowed"), and the execution API
a task talks to has no pools endpoint. The public REST API has one: ``GET /api/v2/pools/{name}``.

The connection (any type, ``http`` is natural): ``host`` is the API server's base URL
(``http://airflow-apiserver:8080``, or a host name with ``schema`` ``http``/``https`` and
``port``); ``login``/``password`` a user allowed to read pools, exchanged for a token at
``POST /auth/token`` (the simple auth manager's endpoint); without a login no token is sent (an
API server in all-admins mode, or a proxy that authenticates). The password is masked in logs
and never appears in errors.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any
from urllib.parse import quote

from airflow.sdk import BaseHook

from airflow_training_guard.exceptions import TrainingGuardError

DEFAULT_TIMEOUT = 10.0


class AirflowApiError(TrainingGuardError):
    """The Airflow REST API could not answer (unreachable, refused the login, unexpected status)."""


class AirflowApiHook(BaseHook):
    """A small client of Airflow's public REST API for pre-flight checks.

    :param api_conn_id: the connection to the API server.
    :param timeout: seconds per request.
    """

    conn_name_attr = "api_conn_id"
    hook_name = "Airflow REST API (training-guard)"

    def __init__(self, api_conn_id: str, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        super().__init__()
        self.api_conn_id = api_conn_id
        self.timeout = timeout

    @cached_property
    def _connection(self) -> Any:
        return self.get_connection(self.api_conn_id)

    @cached_property
    def base_url(self) -> str:
        """``scheme://host:port`` of the API server, from the connection."""
        conn = self._connection
        host = (conn.host or "").rstrip("/")
        if not host:
            raise AirflowApiError(
                f"connection {self.api_conn_id!r} has no host; set it to the API server's URL, "
                "e.g. http://airflow-apiserver:8080"
            )
        if "://" not in host:
            # As HttpHook reads it: the schema field is the protocol; else the connection type's.
            scheme = (
                conn.schema
                if conn.schema in ("http", "https")
                else ("https" if conn.conn_type == "https" else "http")
            )
            host = f"{scheme}://{host}"
        if conn.port and host.count(":") == 1:
            host = f"{host}:{conn.port}"
        return host

    @cached_property
    def _client(self) -> Any:
        import httpx

        headers = {"Accept": "application/json"}
        conn = self._connection
        if conn.login:
            try:
                response = httpx.post(
                    f"{self.base_url}/auth/token",
                    json={"username": conn.login, "password": conn.password or ""},
                    timeout=self.timeout,
                )
            except httpx.HTTPError as err:
                raise AirflowApiError(f"Airflow API at {self.base_url} is unreachable: {err}") from err
            if response.status_code not in (200, 201):
                raise AirflowApiError(
                    f"Airflow API at {self.base_url} refused the login of {conn.login!r} from connection "
                    f"{self.api_conn_id!r} (HTTP {response.status_code}); check the user and password"
                )
            headers["Authorization"] = f"Bearer {response.json()['access_token']}"
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=self.timeout)

    def pool_exists(self, name: str) -> bool:
        """Whether pool ``name`` exists (``GET /api/v2/pools/{name}``: 200 yes, 404 no)."""
        import httpx

        try:
            response = self._client.get(f"/api/v2/pools/{quote(name, safe='')}")
        except httpx.HTTPError as err:
            raise AirflowApiError(f"Airflow API at {self.base_url} is unreachable: {err}") from err
        if response.status_code == 200:
            return True
        if response.status_code == 404:
            return False
        raise AirflowApiError(
            f"Airflow API at {self.base_url} answered HTTP {response.status_code} for pool {name!r}; "
            f"check that the user of connection {self.api_conn_id!r} may read pools"
        )

    def get_json(self, path: str, *, params: dict[str, Any] | None = None, what: str) -> Any:
        """``GET /api/v2{path}`` and return the JSON body; ``what`` names the object in errors.

        :raises AirflowApiError: unreachable, or any status but 200 (the status is in the message).
        """
        import httpx

        try:
            response = self._client.get(f"/api/v2{path}", params=params)
        except httpx.HTTPError as err:
            raise AirflowApiError(f"Airflow API at {self.base_url} is unreachable: {err}") from err
        if response.status_code != 200:
            raise AirflowApiError(
                f"Airflow API at {self.base_url} answered HTTP {response.status_code} for {what}; check that "
                f"the user of connection {self.api_conn_id!r} may read it"
            )
        return response.json()
