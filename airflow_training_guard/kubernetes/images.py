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

from airflow_training_guard.exceptions import GuardConfigError
from airflow_training_guard.policies.images import ImageReference, require_pinned
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


@dataclass(frozen=True)
class PinRule:
    """The digest rule as the DAG and the cluster set it.

    :param allow_unpinned: the DAG's ``allow_unpinned_image`` (development only).
    :param forbid_unpinned: the cluster's ``[training_guard] forbid_unpinned_images``.
    """

    allow_unpinned: bool = False
    forbid_unpinned: bool = False

    def require(self, image: str, *, where: str | None = None) -> ImageReference:
        """The parsed, pinned reference; ``where`` names the image's source when it is not ``image=``."""
        try:
            return require_pinned(
                image, allow_unpinned=self.allow_unpinned, forbid_unpinned_override=self.forbid_unpinned
            )
        except GuardConfigError as err:
            if where is None:
                raise
            raise type(err)(f"{where}: {err}") from None


def check_parse_time_images(
    rule: PinRule,
    *,
    image: str | None,
    base_container_name: str,
    full_pod_spec: k8s.V1Pod | None,
    pod_template_dict: dict[str, Any] | None,
    pod_template_file: str | None,
) -> ImageReference | None:
    """Apply the digest rule to every image known when the DAG is parsed; the base image's reference.

    The base container's image is ``image``, else the template's or spec's (as in
    KubernetesPodOperator). Templated images and templates that cannot be read now return ``None``
    and are checked on the built pod (:func:`check_pod_images`).

    :raises GuardConfigError: for an unpinned image (naming where it came from), or no image at all.
    """
    template, source = template_pod(
        full_pod_spec=full_pod_spec, pod_template_dict=pod_template_dict, pod_template_file=pod_template_file
    )
    base_label = f"container {base_container_name!r}"
    reference = None
    if image is None:
        found = base_image(template, base_container_name)
        knowable = template is not None or not (pod_template_file or pod_template_dict)
        if found is None and knowable:
            raise GuardConfigError(
                f"no image for container {base_container_name!r}: pass "
                "image='registry/repository@sha256:<digest>', or set it in "
                f"{source or 'the pod template'}'s container {base_container_name!r}"
            )
        if found is not None and not is_templated(found):
            reference = rule.require(found, where=f"image of {base_label} from {source}")
    elif not is_templated(image):
        reference = rule.require(image)
    if template is not None:
        for pod_image in pod_images(template, base_container_name=base_container_name, source=source):
            if pod_image.container != base_label and pod_image.image and not is_templated(pod_image.image):
                rule.require(pod_image.image, where=f"image of {pod_image.container} from {pod_image.source}")
    return reference


def check_pod_images(rule: PinRule, pod: k8s.V1Pod, *, base_container_name: str) -> ImageReference | None:
    """The digest rule on every image of the pod about to be created; the base container's reference."""
    reference = None
    for found in pod_images(pod, base_container_name=base_container_name, source="the pod"):
        if not found.image:
            raise GuardConfigError(
                f"{found.container} has no image; set image= or the container's image in the pod template"
            )
        checked = rule.require(found.image, where=f"image of {found.container}")
        if found.container == f"container {base_container_name!r}":
            reference = checked
    return reference
