"""The individual pre-flight checks, each built as a :class:`~.checklist.Check`.

Every factory takes what it needs explicitly (a Hub client, a registry client, a lookup function),
so the checks are pure and testable without Airflow; the operator wires them to hooks.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from airflow_training_guard.exceptions import TrainingGuardError
from airflow_training_guard.policies.durations import format_duration
from airflow_training_guard.policies.gpus import GpuRequest, NodeShape, check_fit
from airflow_training_guard.policies.hub_repos import HubClient, HubError, RepoSpec, is_commit_sha
from airflow_training_guard.policies.timeouts import format_buffer
from airflow_training_guard.preflight.checklist import Check, CheckResult
from airflow_training_guard.preflight.data import DataPinError, content_digest, open_location
from airflow_training_guard.preflight.estimates import estimate_cost, estimate_memory, format_parameters

if TYPE_CHECKING:
    from airflow_training_guard.policies.images import ImageReference


class RegistryClient(Protocol):
    """What the image check needs (implemented by ``OciRegistryClient``/``OciRegistryHook``)."""

    def digest_exists(self, image: str | ImageReference) -> str: ...

    def resolve_tag(self, image: str | ImageReference) -> ImageReference: ...


def hub_repo_check(hub: HubClient, spec: RepoSpec) -> Check:
    """The repository exists, the revision resolves to a commit, the named files exist there."""
    name = f"{spec.repo_type} {spec.repo_id}"

    def run() -> CheckResult:
        try:
            resolved = hub.resolve(spec)
        except HubError as err:
            return CheckResult.fail(name, err.problem, err.fix)
        evidence = f"revision {spec.revision or 'main'!r} -> {resolved.sha}"
        if spec.revision and not is_commit_sha(spec.revision):
            evidence += " (moving name; the run is pinned to the SHA)"
        if resolved.missing_files:
            return CheckResult.fail(
                name,
                f"{spec.repo_type} {spec.repo_id!r}@{resolved.sha[:12]} has no file(s) "
                f"{', '.join(map(repr, resolved.missing_files))}",
                "fix the file names or the revision; the repository has "
                + (", ".join(resolved.existing_files[:10]) or "no files"),
                evidence=evidence,
            )
        if spec.files:
            evidence += f"; files present: {', '.join(spec.files)}"
        return CheckResult.ok(name, evidence, pin=(spec.category, spec.repo_id, resolved.sha))

    return Check(name=name, run=run, network=True)


def image_check(registry: RegistryClient, image: ImageReference, *, resolve_tag: bool = False) -> Check:
    """The pinned digest exists in its registry; or (``resolve_tag``) the tag resolves, once, to a digest."""
    from airflow_training_guard.hooks.oci_registry import RegistryError

    name = "image"

    def run() -> CheckResult:
        try:
            if image.digest is not None:
                digest = registry.digest_exists(image)
                return CheckResult.ok(
                    name, f"{image} exists in {image.registry_host}", pin=("image_digest", str(image), digest)
                )
            if not resolve_tag:
                return CheckResult.fail(
                    name,
                    f"image {str(image)!r} is not pinned by digest",
                    f"use '{image.name}@sha256:<digest>' (crane digest {image}), or set resolve_image_tag=True",
                )
            pinned = registry.resolve_tag(image)
        except RegistryError as err:
            return CheckResult.fail(name, err.problem, err.fix)
        assert pinned.digest is not None
        return CheckResult.ok(
            name,
            f"tag {image.tag or 'latest'!r} -> {pinned.digest}",
            pin=("image_digest", str(pinned), pinned.digest),
        )

    return Check(name=name, run=run, network=True)


def timeout_check(*, expected_runtime: timedelta, timeout: timedelta | None, buffer: float = 0.30) -> Check:
    """The task's timeout is at least ``expected_runtime * (1 + buffer)``."""
    name = "timeout"

    def run() -> CheckResult:
        minimum = expected_runtime * (1 + buffer)
        if timeout is None:
            return CheckResult.fail(
                name,
                f"no timeout is set for a job expected to run {format_duration(expected_runtime)}",
                f"set execution_timeout (or deadline) to at least {format_duration(minimum)}",
            )
        evidence = (
            f"timeout {format_duration(timeout)} vs expected_runtime {format_duration(expected_runtime)} "
            f"+ {format_buffer(buffer)} = {format_duration(minimum)}"
        )
        if timeout < minimum:
            return CheckResult.fail(
                name,
                f"timeout {format_duration(timeout)} is shorter than expected_runtime "
                f"{format_duration(expected_runtime)} + {format_buffer(buffer)} ({format_duration(minimum)})",
                f"raise the timeout to at least {format_duration(minimum)} or lower expected_runtime",
                evidence=evidence,
            )
        return CheckResult.ok(name, evidence)

    return Check(name=name, run=run)


def gpu_fit_check(request: GpuRequest, nodes: Callable[[], Sequence[NodeShape]]) -> Check:
    """The GPU request fits at least one eligible node shape (now or once GPUs free up)."""
    name = "gpu fit"

    def run() -> CheckResult:
        report = check_fit(request, nodes())
        evidence = f"{request.describe()}; nodes: {report.inventory_text()}"
        if not report.fits_ever:
            return CheckResult.fail(
                name,
                f"GPU request of {request.describe()} can never fit: no eligible node has "
                f"{request.gpus} allocatable GPUs",
                "request fewer GPUs per pod, or change node_selector/tolerations",
                evidence=evidence,
            )
        state = "fits now" if report.fits_now else "fits once GPUs free up"
        return CheckResult.ok(name, f"{state} on {report.best_node}; {evidence}")

    return Check(name=name, run=run, network=True)


def data_check(location: str) -> Check:
    """The location holds files; pin them by content (``sha256:...``) as a dataset of the run.

    For data without a commit SHA (a folder of partitions, a bucket prefix): see
    :mod:`airflow_training_guard.preflight.data`.
    """
    name = f"data {location}"

    def run() -> CheckResult:
        try:
            digest = content_digest(open_location(location), location=location)
        except DataPinError as err:
            return CheckResult.fail(name, err.problem, err.fix)
        return CheckResult.ok(name, digest.describe(), pin=("datasets", location, digest.digest))

    return Check(name=name, run=run, network="://" in location and not location.startswith("file://"))


def writable_check(path: str | os.PathLike[str], *, name: str = "checkpoint location") -> Check:
    """A file can be created and removed under ``path`` (created when missing)."""

    def run() -> CheckResult:
        directory = Path(path)
        probe = directory / f".preflight-{uuid.uuid4().hex}"
        try:
            directory.mkdir(parents=True, exist_ok=True)
            probe.write_bytes(b"ok")
            probe.unlink()
        except OSError as err:
            return CheckResult.fail(
                name,
                f"{str(directory)!r} is not writable: {err.strerror or err}",
                "fix the permissions or the mount, or choose another checkpoint_dir",
            )
        return CheckResult.ok(name, f"wrote and removed a probe file in {directory}")

    return Check(name=name, run=run)


class LookupUnavailableError(TrainingGuardError):
    """A lookup cannot answer from where it runs; ``problem`` and ``fix`` feed the failed check."""

    def __init__(self, problem: str, fix: str) -> None:
        super().__init__(f"{problem}; {fix}")
        self.problem = problem
        self.fix = fix


def exists_check(kind: str, key: str, lookup: Callable[[str], bool], *, fix: str) -> Check:
    """An Airflow object (connection, variable, pool, secret) named ``key`` exists.

    ``lookup`` may raise :class:`LookupUnavailableError` when it cannot tell (the check fails with
    that problem and fix, never passes).
    """
    name = f"{kind} {key}"

    def run() -> CheckResult:
        try:
            found = lookup(key)
        except LookupUnavailableError as err:
            return CheckResult.fail(name, err.problem, err.fix)
        if found:
            return CheckResult.ok(name, f"{kind} {key!r} exists")
        return CheckResult.fail(name, f"{kind} {key!r} does not exist", fix)

    return Check(name=name, run=run)


def model_fit_check(
    *,
    mode: str,
    gpus: int,
    gpu_memory: float,
    parameters: int | None = None,
    hub: HubClient | None = None,
    model: RepoSpec | None = None,
) -> Check:
    """The model fits the requested GPUs' memory in ``mode`` (parameter count given or from the Hub)."""
    name = "model fits hardware"

    def run() -> CheckResult:
        count = parameters
        if count is None:
            if hub is None or model is None:
                return CheckResult.fail(
                    name, "no parameter count", "pass model_parameters or a model to read it from"
                )
            try:
                count = hub.resolve(model).parameters
            except HubError as err:
                return CheckResult.fail(name, f"cannot read the parameter count: {err.problem}", err.fix)
            if count is None:
                return CheckResult.fail(
                    name,
                    f"the Hub reports no parameter count for {model.repo_id!r} (no safetensors metadata)",
                    "pass model_parameters explicitly",
                )
        estimate = estimate_memory(count, mode, gpus=gpus, gpu_memory=gpu_memory)
        if not estimate.fits:
            return CheckResult.fail(
                name,
                f"{format_parameters(count)}-parameter model in mode {mode!r} needs ~{estimate.needed_gib:.0f} GiB "
                f"but {gpus} GPU(s) of {gpu_memory:g} GiB have {estimate.available_gib:.0f} GiB",
                "request more or larger GPUs, or train with mode 'lora' or 'qlora'",
                evidence=estimate.describe(),
            )
        return CheckResult.ok(name, estimate.describe())

    return Check(name=name, run=run, network=parameters is None)


def cost_check(
    *, gpus: int, duration: timedelta, price_per_gpu_hour: float, limit: float, currency: str = "USD"
) -> Check:
    """GPU-hours (of the worst case: the hard deadline) x price is under the limit."""
    name = "cost"

    def run() -> CheckResult:
        hours = duration.total_seconds() / 3600
        cost = estimate_cost(gpus=gpus, hours=hours, price_per_gpu_hour=price_per_gpu_hour)
        evidence = (
            f"{gpus} GPU(s) x {hours:.2f} h x {price_per_gpu_hour:g} {currency}/GPU-h = {cost:.2f} {currency} "
            f"(limit {limit:g})"
        )
        if cost > limit:
            return CheckResult.fail(
                name,
                f"estimated cost {cost:.2f} {currency} is over the limit of {limit:g} {currency}",
                "lower the GPU count or the runtime, or raise cost_limit if the spend is approved",
                evidence=evidence,
            )
        return CheckResult.ok(name, evidence)

    return Check(name=name, run=run)
