"""PromoteModelOperator and RollbackModelOperator: thin adapters over :mod:`..promotion`.

Promotion is compare-and-swap on the registry's production pointer, so two DAG runs promoting
at once cannot leave production on a model nobody chose (the failure this guards against); the
loser re-reads, re-applies the policy and either retries or reports why it stopped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from airflow_training_guard import telemetry
from airflow_training_guard.exceptions import GuardConfigError
from airflow_training_guard.promotion import (
    DEFAULT_HUB_CONN_ID,
    Backoff,
    Candidate,
    ModelRegistry,
    PromotionOutcome,
    PromotionPolicy,
    PromotionResult,
    RegistryError,
    UnknownVersionError,
    check_registry_url,
    default_artifact_exists,
    promote,
    registry_from_url,
    rollback,
)
from airflow_training_guard.secrets import redact

if TYPE_CHECKING:
    from airflow.sdk import Context

__all__ = ["PromoteModelOperator", "RollbackModelOperator", "check_hub_conn_id"]


def _check_registry(registry: str | ModelRegistry) -> None:
    if isinstance(registry, str):
        check_registry_url(registry)
    elif not isinstance(registry, ModelRegistry):
        raise GuardConfigError(
            f"registry {registry!r} is neither a registry URL nor a ModelRegistry "
            "(SqlModelRegistry, HubModelRegistry)"
        )


def _promoted_by(context: Context, dag_id: str, task_id: str) -> str:
    run_id = getattr(context.get("dag_run"), "run_id", None) or context.get("run_id")
    return f"{dag_id}.{task_id}" + (f" ({run_id})" if run_id else "")


def check_hub_conn_id(hub_conn_id: str | None) -> str | None:
    """A connection id or ``None``; anything else is refused when the DAG is parsed."""
    if hub_conn_id is not None and (not isinstance(hub_conn_id, str) or not hub_conn_id.strip()):
        raise GuardConfigError(
            f"hub_conn_id {hub_conn_id!r} must be the id of a huggingface_hub connection "
            f"(default {DEFAULT_HUB_CONN_ID!r}) or None"
        )
    return hub_conn_id


class _RegistryOperator(BaseOperator):
    def __init__(
        self,
        *,
        model_name: str,
        registry: str | ModelRegistry,
        max_attempts: int,
        hub_conn_id: str | None = DEFAULT_HUB_CONN_ID,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        if not model_name or not isinstance(model_name, str):
            raise GuardConfigError(f"model_name {model_name!r} must be the registry key, e.g. 'ranker'")
        _check_registry(registry)
        self.model_name = model_name
        self.registry = registry
        self.hub_conn_id = check_hub_conn_id(hub_conn_id)
        self.backoff = Backoff(max_attempts=max_attempts)

    @cached_property
    def model_registry(self) -> ModelRegistry:
        if isinstance(self.registry, str):
            return registry_from_url(self.registry, hub_conn_id=self.hub_conn_id)
        return self.registry

    def _finish(self, result: PromotionResult, *, fail_on_reject: bool) -> dict[str, Any]:
        self.log.info(
            "%s: outcome=%s attempts=%d conflicts=%d: %s",
            self.model_name,
            result.outcome.value,
            result.attempts,
            result.conflicts,
            result.reason,
        )
        telemetry.promotion_finished(self, result, model_name=self.model_name)
        if result.outcome is PromotionOutcome.CONFLICT_GAVE_UP:
            raise AirflowException(result.reason)  # a retry, later, may win the race
        if result.outcome is PromotionOutcome.REJECTED and fail_on_reject:
            raise AirflowFailException(f"promotion of {self.model_name!r} rejected: {result.reason}")
        return result.to_dict()


class PromoteModelOperator(_RegistryOperator):
    """Promote the model a training run produced, if it beats production; race-free.

    Reads the candidate (artifact, metrics, completeness) from the run manifest, applies the
    policy, compare-and-swaps the production pointer and records the swap in the history. Pushes
    the :class:`~airflow_training_guard.promotion.PromotionResult` as a dict to XCom.

    :param model_name: registry key of the model (for the Hub: the model repo id).
    :param registry: registry URL (``sqlite:///…``, ``postgresql+psycopg://…``, ``hf://``,
        ``hf+https://<endpoint>``) or a ``ModelRegistry`` instance.
    :param hub_conn_id: for ``hf://`` registries: the ``huggingface_hub`` connection whose password
        is the write token and whose host is the endpoint (the same connection, and default, as
        ``PreflightOperator``); ``None`` for anonymous access. Ignored by SQL registries.
    :param manifest_path: the run manifest file, or the directory holding ``run-manifest.json``.
        Templated.
    :param metric: metric compared with production's.
    :param direction: ``"max"`` (higher is better) or ``"min"``.
    :param min_improvement: margin by which the candidate must beat production.
    :param candidate_id: id recorded in the pointer. Templated. Default:
        ``dag_id/task_id/run_id/partition_key`` of the manifest.
    :param artifact_commit: immutable revision of the artifact, if any (e.g. a Hub SHA). Templated.
    :param require_complete_manifest: refuse candidates whose manifest misses fields.
    :param fail_on_reject: fail the task (no retry) when the policy rejects the candidate;
        default False: the task succeeds and XCom says ``outcome: rejected``.
    :param max_attempts: compare-and-swap attempts before giving up (the task then fails and
        may be retried).
    :param artifact_exists: callable ``uri -> bool``; default checks the path (fsspec for URLs).
    """

    template_fields: Sequence[str] = ("manifest_path", "candidate_id", "artifact_commit")
    ui_color = "#fdf3d8"

    def __init__(
        self,
        *,
        model_name: str,
        registry: str | ModelRegistry,
        manifest_path: str,
        metric: str,
        direction: str = "max",
        min_improvement: float = 0.0,
        candidate_id: str | None = None,
        artifact_commit: str | None = None,
        require_complete_manifest: bool = True,
        fail_on_reject: bool = False,
        max_attempts: int = 20,
        artifact_exists: Callable[[str], bool] | None = None,
        hub_conn_id: str | None = DEFAULT_HUB_CONN_ID,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            model_name=model_name,
            registry=registry,
            max_attempts=max_attempts,
            hub_conn_id=hub_conn_id,
            **kwargs,
        )
        self.policy = PromotionPolicy(
            metric=metric,
            direction=direction,
            min_improvement=min_improvement,
            require_complete_manifest=require_complete_manifest,
        )
        if not manifest_path:
            raise GuardConfigError(
                f"manifest_path of task {self.task_id!r} is empty; pass the run manifest file or its "
                "directory, e.g. \"{{ ti.xcom_pull('train')['output_dir'] }}\""
            )
        self.manifest_path = manifest_path
        self.candidate_id = candidate_id
        self.artifact_commit = artifact_commit
        self.fail_on_reject = fail_on_reject
        self.artifact_exists = artifact_exists or default_artifact_exists

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_training_guard.manifest import RunManifest

        try:
            manifest = RunManifest.read(self.manifest_path)
        except (OSError, ValueError) as err:
            raise AirflowFailException(
                f"cannot read the run manifest at {self.manifest_path!r}: {err}; promotion needs the "
                "manifest the training task wrote"
            ) from err
        candidate = Candidate.from_manifest(
            manifest, candidate_id=self.candidate_id or None, commit=self.artifact_commit or None
        )
        self.log.info(
            "promoting %s to %s in %r: artifact_uri=%s %s=%s policy=%s>%g manifest_complete=%s "
            "max_attempts=%d",
            candidate.candidate_id,
            self.model_name,
            self.model_registry,
            candidate.artifact_uri,
            self.policy.metric,
            candidate.metrics.get(self.policy.metric),
            self.policy.direction,
            self.policy.min_improvement,
            candidate.manifest_complete,
            self.backoff.max_attempts,
        )
        try:
            result = promote(
                self.model_registry,
                self.model_name,
                candidate,
                self.policy,
                promoted_by=_promoted_by(context, self.dag_id, self.task_id),
                artifact_exists=self.artifact_exists,
                backoff=self.backoff,
            )
        except GuardConfigError as err:  # a missing or malformed connection: a retry cannot help
            raise AirflowFailException(redact(str(err))) from None
        except RegistryError as err:
            raise AirflowException(redact(str(err))) from err
        return self._finish(result, fail_on_reject=self.fail_on_reject)

    # -- OpenLineage (docs/lineage.md): called by the provider's listener when it is installed ----------

    def get_openlineage_facets_on_start(self) -> Any:
        from airflow_training_guard.lineage import promotion_lineage, read_manifest

        manifest = read_manifest(self.manifest_path)
        return promotion_lineage(manifest, model_name=self.model_name, registry=self.model_registry)

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """The candidate model artifact in; the production pointer out when this run moved it."""
        from airflow_training_guard.lineage import promotion_lineage, read_manifest

        return promotion_lineage(
            read_manifest(self.manifest_path),
            model_name=self.model_name,
            registry=self.model_registry,
            promoted_by=_promoted_by(task_instance.get_template_context(), self.dag_id, self.task_id),
        )


class RollbackModelOperator(_RegistryOperator):
    """Move production back to the content of an earlier version, by compare-and-swap.

    The rollback is a new version in the history (``action: rollback``, ``rolled_back_to``), so
    the chain stays linear and the rollback itself can be rolled back.

    :param model_name: registry key of the model.
    :param registry: registry URL or ``ModelRegistry`` (see :class:`PromoteModelOperator`).
    :param hub_conn_id: the Hub connection for ``hf://`` registries (see :class:`PromoteModelOperator`).
    :param to_version: the version to restore. Templated (e.g. from a trigger form Param).
    :param reason: why, recorded in the log and the result.
    """

    template_fields: Sequence[str] = ("to_version", "reason")
    ui_color = "#f6dcdc"

    def __init__(
        self,
        *,
        model_name: str,
        registry: str | ModelRegistry,
        to_version: int | str,
        reason: str = "",
        max_attempts: int = 20,
        artifact_exists: Callable[[str], bool] | None = None,
        hub_conn_id: str | None = DEFAULT_HUB_CONN_ID,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            model_name=model_name,
            registry=registry,
            max_attempts=max_attempts,
            hub_conn_id=hub_conn_id,
            **kwargs,
        )
        self.to_version = to_version
        self.reason = reason
        self.artifact_exists = artifact_exists or default_artifact_exists

    def execute(self, context: Context) -> dict[str, Any]:
        try:
            version = int(self.to_version)
        except (TypeError, ValueError) as err:
            raise AirflowFailException(
                f"to_version {self.to_version!r} is not a version number; see the history in XCom of "
                "the promote task, or the registry"
            ) from err
        self.log.info(
            "rolling back %s in %r to v%d: %s", self.model_name, self.model_registry, version, self.reason
        )
        try:
            result = rollback(
                self.model_registry,
                self.model_name,
                version,
                promoted_by=_promoted_by(context, self.dag_id, self.task_id),
                reason=self.reason,
                artifact_exists=self.artifact_exists,
                backoff=self.backoff,
            )
        except UnknownVersionError as err:
            raise AirflowFailException(redact(str(err))) from err
        except GuardConfigError as err:
            raise AirflowFailException(redact(str(err))) from None
        except RegistryError as err:
            raise AirflowException(redact(str(err))) from err
        return self._finish(result, fail_on_reject=True)
