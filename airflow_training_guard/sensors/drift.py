"""ProductionDriftSensor: does the deployment serve what the production pointer says?

A promotion that succeeded in the registry but never reached the serving fleet (or a manual
deploy that bypassed the registry) is the other half of "production points at a different
artifact than the one deployed". This sensor compares one field of the pointer with what the
deployment reports and fails with both values when they differ.

The deployment is read through the http provider's ``HttpHook`` and an Airflow ``http``
connection (host, schema, port; login/password for basic auth; extra for headers such as
``{"Authorization": "Bearer ..."}``), so its credentials live in a connection, are masked in
logs, and never appear in a rendered field. The connection's secrets (password, and header values
whose names look like credentials) are given to the secrets masker before the request; an error
says the status and the URL, never the server's text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from airflow_training_guard.exceptions import GuardConfigError
from airflow_training_guard.promotion import (
    DEFAULT_HUB_CONN_ID,
    ModelRegistry,
    RegistryError,
    registry_from_url,
)
from airflow_training_guard.secrets import mask, redact

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_training_guard.promotion.registry import ProductionPointer

__all__ = ["ProductionDriftError", "ProductionDriftSensor"]

COMPARABLE_FIELDS = ("candidate_id", "artifact_uri", "commit", "version")
#: Header names in an http connection's extra whose values are credentials.
_SECRET_HEADER = re.compile(r"(?i)auth|token|key|secret|password|cookie")


class ProductionDriftError(AirflowFailException):
    """The deployment serves something other than the production pointer."""


class ProductionDriftSensor(BaseSensorOperator):
    """Compare the production pointer with what a deployment reports it serves.

    :param model_name: registry key of the model.
    :param registry: registry URL or ``ModelRegistry`` (see ``PromoteModelOperator``).
    :param hub_conn_id: the Hub connection for ``hf://`` registries (see ``PromoteModelOperator``).
    :param endpoint: path on the ``http_conn_id`` connection that returns JSON containing
        ``report_key`` (e.g. ``"v1/models/ranker"``). Templated.
    :param http_conn_id: the ``http`` connection of the deployment (default ``http_default``).
    :param deployment: callable returning that JSON object (or the bare value); use instead of
        ``endpoint``.
    :param field: pointer field compared: ``candidate_id``, ``artifact_uri``, ``commit`` or ``version``.
    :param report_key: key in the deployment's JSON (dotted for nesting); default ``field``.
    :param fail_on_drift: True (default): fail at the first mismatch, with both values. False:
        keep poking (e.g. while a rollout finishes) until they match or the sensor times out.
    :param http_timeout: seconds for the HTTP request.
    """

    template_fields: Sequence[str] = ("endpoint",)

    def __init__(
        self,
        *,
        model_name: str,
        registry: str | ModelRegistry,
        endpoint: str | None = None,
        http_conn_id: str = "http_default",
        deployment: Callable[[], Any] | None = None,
        field: str = "candidate_id",
        report_key: str | None = None,
        fail_on_drift: bool = True,
        http_timeout: float = 10.0,
        hub_conn_id: str | None = DEFAULT_HUB_CONN_ID,
        **kwargs: Any,
    ) -> None:
        deployment_url = kwargs.pop("deployment_url", None)
        super().__init__(**kwargs)
        if deployment_url is not None:
            raise GuardConfigError(
                f"task {self.task_id!r}: deployment_url {deployment_url!r} is no longer read (credentials "
                "belong in a connection); create an http connection whose host is the deployment "
                '(e.g. AIRFLOW_CONN_SERVING=\'{"conn_type": "http", "host": "https://serving.example"}\') '
                "and pass http_conn_id='serving', endpoint='<the path>'"
            )
        if (endpoint is None) == (deployment is None):
            raise GuardConfigError(
                f"task {self.task_id!r}: pass exactly one of endpoint (a path on the http connection "
                f"{http_conn_id!r} returning JSON) or deployment (a callable returning it)"
            )
        if not isinstance(http_conn_id, str) or not http_conn_id.strip():
            raise GuardConfigError(
                f"task {self.task_id!r}: http_conn_id {http_conn_id!r} must name an http connection"
            )
        if isinstance(http_timeout, bool) or not isinstance(http_timeout, (int, float)) or http_timeout <= 0:
            raise GuardConfigError(
                f"task {self.task_id!r}: http_timeout {http_timeout!r} must be seconds > 0"
            )
        if field not in COMPARABLE_FIELDS:
            raise GuardConfigError(
                f"field {field!r} is not comparable; use one of {', '.join(COMPARABLE_FIELDS)}"
            )
        if isinstance(registry, str):
            from airflow_training_guard.promotion import check_registry_url

            check_registry_url(registry)
        self.model_name = model_name
        self.registry = registry
        self.hub_conn_id = hub_conn_id
        self.endpoint = endpoint
        self.http_conn_id = http_conn_id
        self.deployment = deployment
        self.field = field
        self.report_key = report_key or field
        self.fail_on_drift = fail_on_drift
        self.http_timeout = http_timeout

    @cached_property
    def model_registry(self) -> ModelRegistry:
        if isinstance(self.registry, str):
            return registry_from_url(self.registry, hub_conn_id=self.hub_conn_id)
        return self.registry

    @property
    def _source(self) -> str:
        return (
            f"{self.endpoint!r} on http connection {self.http_conn_id!r}"
            if self.deployment is None
            else "the deployment callable"
        )

    def _report(self) -> Any:
        if self.deployment is not None:
            return self.deployment()
        from airflow.providers.http.hooks.http import HttpHook
        from requests import RequestException

        hook = HttpHook(method="GET", http_conn_id=self.http_conn_id)
        conn = hook.get_connection(self.http_conn_id)
        mask(conn.password)
        for name, value in conn.extra_dejson.items():
            if isinstance(value, str) and _SECRET_HEADER.search(name):
                mask(value)
                mask(value.rpartition(" ")[2])  # "Bearer <token>": the token alone too
        try:
            # check_response=False: HttpHook would log the whole response body at ERROR level,
            # and a server that echoes the request's headers would put them into the task log.
            response = hook.run(
                self.endpoint,
                headers={"Accept": "application/json"},
                extra_options={"timeout": self.http_timeout, "check_response": False},
            )
        except RequestException as err:
            raise AirflowException(
                f"cannot read what the deployment serves from {self._source}: {type(err).__name__}: "
                f"{redact(str(err))}; check the connection's host and the deployment's health"
            ) from None
        if response.status_code >= 400:
            raise AirflowException(
                f"cannot read what the deployment serves from {self._source}: HTTP {response.status_code} "
                f"{response.reason}; check the endpoint and the connection's credentials"
            )
        try:
            return json.loads(response.content)
        except ValueError:
            raise AirflowException(
                f"the deployment's answer from {self._source} is not JSON "
                f"(Content-Type {response.headers.get('Content-Type')!r}); point endpoint at the JSON status "
                "endpoint that names the served model"
            ) from None

    def _reported_value(self, report: Any) -> Any:
        if not isinstance(report, Mapping):
            return report
        value: Any = report
        for part in self.report_key.split("."):
            if not isinstance(value, Mapping) or part not in value:
                raise AirflowFailException(
                    f"the deployment's report has no {self.report_key!r} (keys: {', '.join(sorted(report))}); "
                    "set report_key to the key that names the served model"
                )
            value = value[part]
        return value

    def poke(self, context: Context) -> PokeReturnValue:
        try:
            pointer: ProductionPointer | None = self.model_registry.read(self.model_name).pointer
        except RegistryError as err:
            raise AirflowException(redact(str(err))) from err
        if pointer is None:
            raise AirflowFailException(
                f"model {self.model_name!r} has no production pointer in {self.model_registry!r}; "
                "nothing to compare the deployment with (promote a model first)"
            )
        expected = getattr(pointer, self.field)
        reported = self._reported_value(self._report())
        source = self._source
        xcom = {"field": self.field, "production": expected, "deployed": reported, "version": pointer.version}
        if str(expected) == str(reported):
            self.log.info(
                "no drift: %s serves %s=%r = production v%d", source, self.field, reported, pointer.version
            )
            return PokeReturnValue(is_done=True, xcom_value=xcom)
        message = (
            f"drift on {self.model_name!r}: production pointer v{pointer.version} says {self.field}="
            f"{expected!r}, but {source} reports {self.report_key}={reported!r}. Redeploy v{pointer.version} "
            f"or roll the pointer back to what is deployed (RollbackModelOperator)"
        )
        if self.fail_on_drift:
            raise ProductionDriftError(message)
        self.log.warning("%s; waiting for the rollout", message)
        return PokeReturnValue(is_done=False)
