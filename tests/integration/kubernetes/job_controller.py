"""What kube-controller-manager does for Indexed Jobs, driven over HTTP against the emulator.

The emulator stores Jobs but runs no controllers. This one, in a background thread, does what the
Job controller and the garbage collector do for the cases the operator relies on:

- an unsuspended Indexed Job gets ``completions`` pods, each with its completion index (label and
  annotation), hostname ``<job>-<index>``, the template's labels and an ownerReference;
- a Job with a Failed pod and ``backoffLimit: 0`` gets ``Failed`` (``BackoffLimitExceeded``); one
  whose pods all Succeeded gets ``Complete``;
- pods whose owning Job is gone are deleted (foreground deletion of the Job takes its ranks).

Pods then progress through the emulator's own rules (``K8sApi.auto_complete``) or the test's calls.
"""

from __future__ import annotations

import threading
from typing import Any

from tests.integration.kubernetes.k8s_api import K8sApi

INDEX = "batch.kubernetes.io/job-completion-index"


class JobController:
    def __init__(self, k8s_api: K8sApi, *, poll: float = 0.2) -> None:
        import kubernetes.client

        self.core = k8s_api.core_v1()
        self.batch = kubernetes.client.BatchV1Api(self.core.api_client)
        self.poll = poll
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="job-controller")
        self.created: dict[str, list[str]] = {}  # job name -> pod names, in creation order
        self.errors: list[BaseException] = []

    def __enter__(self) -> JobController:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        assert not self.errors, self.errors

    def _run(self) -> None:
        while not self._stop.wait(self.poll):
            try:
                self.tick()
            except Exception as err:  # surfaced when the test leaves the context
                self.errors.append(err)
                return

    def tick(self) -> None:
        api = self.core.api_client
        jobs = [api.sanitize_for_serialization(j) for j in self.batch.list_job_for_all_namespaces().items]
        pods = [api.sanitize_for_serialization(p) for p in self.core.list_pod_for_all_namespaces().items]
        live = {j["metadata"]["uid"] for j in jobs}
        for pod in pods:
            owners = [
                o["uid"] for o in pod["metadata"].get("ownerReferences") or [] if o.get("kind") == "Job"
            ]
            if owners and not set(owners) & live:
                self.core.delete_namespaced_pod(pod["metadata"]["name"], pod["metadata"]["namespace"])
        for job in jobs:
            self._reconcile(job, [p for p in pods if _owned_by(p, job)])

    def _reconcile(self, job: dict[str, Any], pods: list[dict[str, Any]]) -> None:
        meta, spec = job["metadata"], job["spec"]
        conditions = (job.get("status") or {}).get("conditions") or []
        if spec.get("suspend") or any(c["type"] in ("Complete", "Failed") for c in conditions):
            return
        if meta["name"] not in self.created:
            self.created[meta["name"]] = []
            for index in range(int(spec["completions"])):
                self._create_pod(job, index)
            return
        phases = [(p.get("status") or {}).get("phase") for p in pods]
        if "Failed" in phases:
            self._set_condition(
                job, "Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit"
            )
        elif phases and len(phases) == int(spec["completions"]) and all(p == "Succeeded" for p in phases):
            self._set_condition(job, "Complete", None, None)

    def _create_pod(self, job: dict[str, Any], index: int) -> None:
        meta, template = job["metadata"], job["spec"]["template"]
        name = f"{meta['name']}-{index}"
        labels = {**(template["metadata"].get("labels") or {}), "job-name": meta["name"], INDEX: str(index)}
        annotations = {**(template["metadata"].get("annotations") or {}), INDEX: str(index)}
        body = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": meta["namespace"],
                "labels": labels,
                "annotations": annotations,
                "ownerReferences": [
                    {"apiVersion": "batch/v1", "kind": "Job", "name": meta["name"], "uid": meta["uid"]}
                ],
            },
            "spec": {**template["spec"], "hostname": name},
        }
        self.core.create_namespaced_pod(meta["namespace"], body)
        self.created[meta["name"]].append(name)

    def _set_condition(self, job: dict[str, Any], kind: str, reason: str | None, message: str | None) -> None:
        condition = {"type": kind, "status": "True"}
        if reason:
            condition.update(reason=reason, message=message or "")
        self.batch.patch_namespaced_job_status(
            job["metadata"]["name"], job["metadata"]["namespace"], {"status": {"conditions": [condition]}}
        )


def _owned_by(pod: dict[str, Any], job: dict[str, Any]) -> bool:
    return any(o.get("uid") == job["metadata"]["uid"] for o in pod["metadata"].get("ownerReferences") or [])
