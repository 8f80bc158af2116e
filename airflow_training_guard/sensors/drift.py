"""ProductionDriftSensor: does the deployment serve what the production pointer says?

A promotion that succeeded in the registry but never reached the serving fleet (or a manual
deploy that bypassed the registry) is the other half of "production points at a different
artifact than the one deployed". This sensor compares one field of the pointer with what the
deployment reports and fails with both values when they differ.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from airflow_training_guard.exceptions import GuardConfigError
from airflow_training_guard.promotion import ModelRegistry, RegistryError, registry_from_url

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_training_guard.promotion.registry import ProductionPointer

__all__ = ["ProductionDriftError", "ProductionDriftSensor"]

COMPARABLE_FIELDS = ("candidate_id", "artifact_uri", "commit", "version")


class ProductionDriftError(AirflowFailException):
    """The deployment serves something other than the production pointer."""


class ProductionDriftSensor(BaseSensorOperator):
    """Compare the production pointer with what a deployment reports it serves.

    :param model_name: registry key of the model.
    :param registry: registry URL or ``ModelRegistry`` (see ``PromoteModelOperator``).
    :param deployment_url: HTTP(S) endpoint returning JSON that contains ``report_key``. Templated.
    :param deployment: callable returning that JSON object (or the bare value); use instead of a URL.
    :param field: pointer field compared: ``candidate_id``, ``artifact_uri``, ``commit`` or ``version``.
    :param report_key: key in the deployment's JSON (dotted for nesting); default ``field``.
    :param fail_on_drift: True (default): fail at the first mismatch, with both values. False:
        keep poking (e.g. while a rollout finishes) until they match or the sensor times out.
    :param http_timeout: seconds for the HTTP request.
    """

    template_fields: Sequence[str] = ("deployment_url",)

    def __init__(
        self,
        *,
        model_name: str,
        registry: str | ModelRegistry,
        deployment_url: str | None = None,
        deployment: Callable[[], Any] | None = None,
        field: str = "candidate_id",
        report_key: str | None = None,
        fail_on_drift: bool = True,
        http_timeout: float = 10.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if (deployment_url is None) == (deployment is None):
            raise GuardConfigError(
                f"task {self.task_id!r}: pass exactly one of deployment_url (an endpoint returning "
                "JSON) or deployment (a callable returning it)"
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
        self.deployment_url = deployment_url
        self.deployment = deployment
        self.field = field
        self.report_key = report_key or field
        self.fail_on_drift = fail_on_drift
        self.http_timeout = http_timeout

    @cached_property
    def model_registry(self) -> ModelRegistry:
        return registry_from_url(self.registry) if isinstance(self.registry, str) else self.registry

    def _report(self) -> Any:
        if self.deployment is not None:
            return self.deployment()
        assert self.deployment_url is not None
        try:
            with urllib.request.urlopen(self.deployment_url, timeout=self.http_timeout) as response:
                return json.loads(response.read())
        except (OSError, ValueError) as err:
            raise AirflowException(
                f"cannot read what the deployment serves from {self.deployment_url}: {err}"
            ) from err

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
            raise AirflowException(str(err)) from err
        if pointer is None:
            raise AirflowFailException(
                f"model {self.model_name!r} has no production pointer in {self.model_registry!r}; "
                "nothing to compare the deployment with (promote a model first)"
            )
        expected = getattr(pointer, self.field)
        reported = self._reported_value(self._report())
        source = self.deployment_url or "the deployment callable"
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
