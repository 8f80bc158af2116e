"""Which images a pod will run, and where each came from, so the digest rule covers all of them.

KubernetesPodOperator takes the base container's image from the ``image`` argument, else from
``full_pod_spec``, else from ``pod_template_file``/``pod_template_dict``; init and extra containers
come only from the template or spec. The guard applies the digest rule to every one of them (the
provider's own xcom sidecar excepted: its image is the deployment's ``[kubernetes]`` setting, not
the DAG's), and names the source in the error.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_training_guard.settings import is_templated

if TYPE_CHECKING:
    from kubernetes.client import models as k8s

#: The provider's xcom sidecar (``xcom_sidecar.PodDefaults.SIDECAR_CONTAINER_NAME``).
XCOM_SIDECAR_NAME = "airflow-xcom-sidecar"


@dataclass(frozen=True)
class PodImage:
    """One container's image and where it came from (for messages)."""

    container: str
    image: str | None
    source: str


def template_pod(
    *,
    full_pod_spec: k8s.V1Pod | None,
    pod_template_dict: dict[str, Any] | None,
    pod_template_file: str | None,
) -> tuple[k8s.V1Pod | None, str]:
    """The pod KubernetesPodOperator starts from before applying its arguments, and its source.

    Returns ``(None, reason)`` when it cannot be known when the DAG is parsed (a templated or missing
    template file); the operator then checks the built pod when the task runs.
    """
    from airflow.providers.cncf.kubernetes.pod_generator import PodGenerator

    base: k8s.V1Pod | None = None
    source = ""
    if pod_template_file:
        if is_templated(pod_template_file):
            return None, f"pod_template_file {pod_template_file!r} (templated)"
        import os

        if not os.path.isfile(pod_template_file):
            return None, f"pod_template_file {pod_template_file!r} (not readable when the DAG is parsed)"
        base = PodGenerator.deserialize_model_file(pod_template_file)
        source = f"pod_template_file {pod_template_file!r}"
    elif pod_template_dict:
        if any(is_templated(v) for v in _walk_strings(pod_template_dict)):
            return None, "pod_template_dict (templated)"
        base = PodGenerator.deserialize_model_dict(pod_template_dict)
        source = "pod_template_dict"
    if full_pod_spec is not None:
        base = PodGenerator.reconcile_pods(base, full_pod_spec) if base is not None else full_pod_spec
        source = f"full_pod_spec (over {source})" if source else "full_pod_spec"
    return base, source


def _walk_strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _walk_strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _walk_strings(item)


def pod_images(pod: k8s.V1Pod, *, base_container_name: str, source: str) -> list[PodImage]:
    """Every container's image except the xcom sidecar's, init containers first."""
    spec = pod.spec
    if spec is None:
        return []
    found: list[PodImage] = []
    for kind, containers in (("init container", spec.init_containers), ("container", spec.containers)):
        for container in containers or []:
            if container.name == XCOM_SIDECAR_NAME:
                continue
            found.append(
                PodImage(container=f"{kind} {container.name!r}", image=container.image, source=source)
            )
    return found


def base_image(pod: k8s.V1Pod | None, base_container_name: str) -> str | None:
    """The base container's image in ``pod``, or ``None``."""
    if pod is None or pod.spec is None:
        return None
    for container in pod.spec.containers or []:
        if container.name == base_container_name:
            return str(container.image) if container.image else None
    return None
