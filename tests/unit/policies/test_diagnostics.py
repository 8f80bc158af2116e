"""Failure diagnosis: one realistic pod (as the API server returns it) per failure kind."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from airflow_training_guard.policies.diagnostics import (
    MAX_EVENTS,
    MAX_LOG_LINES,
    Diagnosis,
    FailureKind,
    deadline_exceeded,
    diagnose,
    diagnose_exit,
    failure_message,
    stalled,
    straggler,
)

pytestmark = pytest.mark.unit

NAMESPACE = "ml"
POD_NAME = "train-ranker-2026-11-01-x7k2p"
IMAGE = "ghcr.io/acme/train@sha256:" + "0123456789abcdef" * 4


def make_pod(status: dict[str, Any], *, limits: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    """A pod as ``GET /api/v1/namespaces/ml/pods/<name>`` returns it, with the given status."""
    container: dict[str, Any] = {
        "name": "base",
        "image": IMAGE,
        "command": ["python", "-m", "ranker.train"],
        "env": [{"name": "TRAINING_GUARD_PARTITION_KEY", "value": "2026-11-01"}],
        "resources": {
            "limits": limits if limits is not None else {"memory": "16Gi", "nvidia.com/gpu": "4"},
            "requests": {"cpu": "8", "memory": "16Gi", "nvidia.com/gpu": "4"},
        },
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
        "imagePullPolicy": "IfNotPresent",
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": POD_NAME,
            "namespace": NAMESPACE,
            "uid": "5f0c1c0e-3c4b-4f57-9a51-0d7c3f1f2a10",
            "resourceVersion": "48213377",
            "creationTimestamp": "2026-11-02T02:00:11Z",
            "labels": {"dag_id": "daily_retraining", "task_id": "train", "airflow_kpo_in_cluster": "True"},
        },
        "spec": {
            "containers": [container],
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 120,
            "nodeSelector": {"pool": "a100"},
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
            "serviceAccountName": "default",
            "schedulerName": "default-scheduler",
            "priority": 0,
            **spec,
        },
        "status": status,
    }


def terminated(exit_code: int, reason: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": "base",
        "state": {
            "terminated": {
                "exitCode": exit_code,
                "reason": reason,
                "startedAt": "2026-11-02T02:01:02Z",
                "finishedAt": "2026-11-02T03:12:09Z",
                "containerID": "containerd://8e3f0b1d2c4a",
                **extra,
            }
        },
        "lastState": {},
        "ready": False,
        "restartCount": 0,
        "image": IMAGE,
        "imageID": IMAGE,
        "containerID": "containerd://8e3f0b1d2c4a",
        "started": False,
    }


def waiting(reason: str, message: str, *, name: str = "base", image: str = IMAGE) -> dict[str, Any]:
    return {
        "name": name,
        "state": {"waiting": {"reason": reason, "message": message}},
        "lastState": {},
        "ready": False,
        "restartCount": 0,
        "image": image,
        "imageID": "",
        "started": False,
    }


def failed_status(*containers: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "phase": "Failed",
        "conditions": [
            {"type": "Initialized", "status": "True", "lastTransitionTime": "2026-11-02T02:00:12Z"},
            {
                "type": "Ready",
                "status": "False",
                "reason": "PodFailed",
                "lastTransitionTime": "2026-11-02T03:12:10Z",
            },
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-11-02T02:00:11Z"},
        ],
        "hostIP": "10.0.4.17",
        "podIP": "10.244.3.41",
        "startTime": "2026-11-02T02:00:12Z",
        "qosClass": "Burstable",
        "containerStatuses": list(containers),
        **extra,
    }


def pending_status(*containers: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "phase": "Pending",
        "conditions": [
            {"type": "Initialized", "status": "True", "lastTransitionTime": "2026-11-02T02:00:12Z"},
            {
                "type": "Ready",
                "status": "False",
                "reason": "ContainersNotReady",
                "message": "containers with unready status: [base]",
                "lastTransitionTime": "2026-11-02T02:00:12Z",
            },
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-11-02T02:00:11Z"},
        ],
        "hostIP": "10.0.4.17",
        "startTime": "2026-11-02T02:00:12Z",
        "qosClass": "Burstable",
        "containerStatuses": list(containers),
        **extra,
    }


def event(
    reason: str, message: str, *, type_: str = "Warning", at: str = "2026-11-02T02:00:30Z", count: int = 1
) -> dict[str, Any]:
    """A core/v1 Event as ``GET /api/v1/namespaces/ml/events`` returns it."""
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{POD_NAME}.1873a2b4c5d6e7f8", "namespace": NAMESPACE, "creationTimestamp": at},
        "involvedObject": {
            "kind": "Pod",
            "namespace": NAMESPACE,
            "name": POD_NAME,
            "uid": "5f0c1c0e-3c4b-4f57-9a51-0d7c3f1f2a10",
            "apiVersion": "v1",
            "fieldPath": "spec.containers{base}",
        },
        "reason": reason,
        "message": message,
        "source": {"component": "kubelet", "host": "gpu-node-3"},
        "firstTimestamp": at,
        "lastTimestamp": at,
        "count": count,
        "type": type_,
        "reportingComponent": "kubelet",
        "reportingInstance": "gpu-node-3",
    }


SCHEDULER_MESSAGE = (
    "0/3 nodes are available: 3 Insufficient nvidia.com/gpu. preemption: 0/3 nodes are available: "
    "3 No preemption victims found for incoming pod."
)


# -- one pod per failure kind ----------------------------------------------------------------------


def test_oom_killed() -> None:
    pod = make_pod(failed_status(terminated(137, "OOMKilled")))
    diagnosis = diagnose(pod, [event("Killing", "Stopping container base", type_="Normal")])
    assert diagnosis.kind is FailureKind.OOM_KILLED
    assert not diagnosis.retryable
    assert diagnosis.exit_code == 137
    assert diagnosis.reason == "container 'base' was OOMKilled (exit 137), limit memory=16Gi"
    assert diagnosis.hint == (
        "it used more memory than its limit memory=16Gi; the same input runs out of memory again, so it "
        "is not retried. Raise the memory limit and request of container 'base', or lower its memory use "
        "(batch size, data loader workers, in-memory caches)"
    )


def test_oom_killed_without_a_limit() -> None:
    pod = make_pod(failed_status(terminated(137, "OOMKilled")), limits={"nvidia.com/gpu": "4"})
    diagnosis = diagnose(pod)
    assert diagnosis.reason == "container 'base' was OOMKilled (exit 137), no memory limit set"
    assert "set a memory request and limit for container 'base'" in diagnosis.hint.lower()


def test_oom_killed_in_a_restarting_container_is_found_in_last_state() -> None:
    status = waiting("CrashLoopBackOff", "back-off 5m0s restarting failed container=base pod=" + POD_NAME)
    status["lastState"] = {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}
    status["restartCount"] = 4
    pod = make_pod({**pending_status(status), "phase": "Running"}, restartPolicy="OnFailure")
    diagnosis = diagnose(pod)
    assert diagnosis.kind is FailureKind.OOM_KILLED
    assert diagnosis.exit_code == 137


def test_unschedulable_includes_the_schedulers_message() -> None:
    pod = make_pod(
        {
            "phase": "Pending",
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "lastProbeTime": None,
                    "lastTransitionTime": "2026-11-02T02:00:11Z",
                    "reason": "Unschedulable",
                    "message": SCHEDULER_MESSAGE,
                }
            ],
            "qosClass": "Burstable",
        }
    )
    events = [
        {
            **event("FailedScheduling", SCHEDULER_MESSAGE, count=14),
            "source": {"component": "default-scheduler"},
            "reportingComponent": "default-scheduler",
        }
    ]
    diagnosis = diagnose(pod, events)
    assert diagnosis.kind is FailureKind.UNSCHEDULABLE
    assert diagnosis.retryable  # capacity: it can start once GPUs free up
    assert diagnosis.reason == f"pod cannot be scheduled: {SCHEDULER_MESSAGE}"
    assert diagnosis.hint.startswith("no node has enough free nvidia.com/gpu right now;")
    assert diagnosis.events == (f"Warning FailedScheduling: {SCHEDULER_MESSAGE} (x14)",)


def test_unschedulable_by_selector_is_not_retryable() -> None:
    message = (
        "0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: infer}, 2 node(s) didn't "
        "match Pod's node affinity/selector. preemption: 0/3 nodes are available: 3 Preemption is not "
        "helpful for scheduling."
    )
    pod = make_pod(
        {
            "phase": "Pending",
            "conditions": [
                {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message}
            ],
        }
    )
    diagnosis = diagnose(pod)
    assert diagnosis.kind is FailureKind.UNSCHEDULABLE
    assert not diagnosis.retryable
    assert diagnosis.reason == f"pod cannot be scheduled: {message}"
    assert diagnosis.hint == (
        "no node accepts the pod: its node_selector, affinity or tolerations exclude every node (see the "
        "scheduler's message); fix them, a retry cannot help"
    )


def test_image_pull_back_off_uses_the_kubelets_pull_error() -> None:
    pull_error = (
        'Failed to pull image "ghcr.io/acme/train:v2": rpc error: code = NotFound desc = failed to pull '
        'and unpack image "ghcr.io/acme/train:v2": failed to resolve reference "ghcr.io/acme/train:v2": '
        "ghcr.io/acme/train:v2: not found"
    )
    pod = make_pod(
        pending_status(
            waiting(
                "ImagePullBackOff",
                'Back-off pulling image "ghcr.io/acme/train:v2"',
                image="ghcr.io/acme/train:v2",
            )
        )
    )
    events = [
        event(
            "Scheduled", "Successfully assigned ml/x to gpu-node-3", type_="Normal", at="2026-11-02T02:00:11Z"
        ),
        event("Pulling", 'Pulling image "ghcr.io/acme/train:v2"', type_="Normal", at="2026-11-02T02:00:12Z"),
        event("Failed", pull_error, at="2026-11-02T02:00:13Z"),
        event("Failed", "Error: ErrImagePull", at="2026-11-02T02:00:13Z"),
        event(
            "BackOff",
            'Back-off pulling image "ghcr.io/acme/train:v2"',
            type_="Normal",
            at="2026-11-02T02:00:25Z",
        ),
        event("Failed", "Error: ImagePullBackOff", at="2026-11-02T02:00:25Z"),
    ]
    diagnosis = diagnose(pod, events)
    assert diagnosis.kind is FailureKind.IMAGE_PULL
    assert not diagnosis.retryable
    assert (
        diagnosis.reason
        == f"container 'base' cannot pull image 'ghcr.io/acme/train:v2' (ImagePullBackOff): {pull_error}"
    )
    assert diagnosis.hint == (
        "the image or digest does not exist in the registry; check the reference and get the digest of a "
        "pushed image with: crane digest ghcr.io/acme/train:v2; a retry pulls the same image, so it is not "
        "retried"
    )
    assert diagnosis.events[-1] == "Warning Failed: Error: ImagePullBackOff"


def test_image_pull_denied_points_at_pull_secrets() -> None:
    pod = make_pod(
        pending_status(
            waiting(
                "ErrImagePull",
                'failed to pull and unpack image "ghcr.io/acme/train:v2": failed to authorize: failed to fetch '
                "anonymous token: unexpected status from GET request to https://ghcr.io/token: 401 Unauthorized",
            )
        )
    )
    diagnosis = diagnose(pod)
    assert diagnosis.kind is FailureKind.IMAGE_PULL
    assert not diagnosis.retryable
    assert "image_pull_secrets names a docker-registry Secret in ml" in diagnosis.hint


def test_image_pull_rate_limit_is_retryable() -> None:
    pod = make_pod(
        pending_status(
            waiting(
                "ErrImagePull",
                "failed to pull and unpack image: 429 Too Many Requests - Server message: toomanyrequests: "
                "You have reached your pull rate limit.",
            )
        )
    )
    diagnosis = diagnose(pod)
    assert diagnosis.kind is FailureKind.IMAGE_PULL
    assert diagnosis.retryable


def test_invalid_image_name() -> None:
    pod = make_pod(
        pending_status(
            waiting(
                "InvalidImageName", 'Failed to apply default image tag "Acme/Train": invalid reference format'
            )
        )
    )
    diagnosis = diagnose(pod)
    assert diagnosis.kind is FailureKind.IMAGE_PULL
    assert not diagnosis.retryable
    assert diagnosis.hint.startswith("the image reference is malformed")


def test_missing_secret_is_a_config_error() -> None:
    pod = make_pod(pending_status(waiting("CreateContainerConfigError", 'secret "hf-token" not found')))
    events = [event("Failed", 'Error: secret "hf-token" not found', count=7)]
    diagnosis = diagnose(pod, events)
    assert diagnosis.kind is FailureKind.CONFIG_ERROR
    assert not diagnosis.retryable
    assert (
        diagnosis.reason
        == "container 'base' cannot be created (CreateContainerConfigError): secret \"hf-token\" not found"
    )
    assert diagnosis.hint == (
        "the Secret 'hf-token' does not exist in namespace 'ml'; create it, or fix its name in the pod "
        "spec. A retry cannot fix it"
    )


def test_missing_configmap_key_is_a_config_error() -> None:
    pod = make_pod(
        pending_status(
            waiting("CreateContainerConfigError", "couldn't find key lr in ConfigMap ml/train-params")
        )
    )
    diagnosis = diagnose(pod)
    assert diagnosis.kind is FailureKind.CONFIG_ERROR
    assert diagnosis.hint.startswith("the key 'lr' is missing from ConfigMap 'ml/train-params'")


def test_missing_command_is_a_config_error() -> None:
    pod = make_pod(
        failed_status(
            terminated(
                128,
                "StartError",
                message='failed to create containerd task: exec: "pythn": executable file not found in $PATH: unknown',
            )
        )
    )
    diagnosis = diagnose(pod)
    assert diagnosis.kind is FailureKind.CONFIG_ERROR
    assert not diagnosis.retryable
    assert diagnosis.hint.startswith("the container's command does not exist in the image")


def test_kubelet_eviction() -> None:
    message = (
        "The node was low on resource: memory. Threshold quantity: 100Mi, available: 90460Ki. Container "
        "base was using 30Gi, request is 16Gi, has larger consumption of memory. "
    )
    status = failed_status(terminated(137, "Error"), reason="Evicted", message=message)
    status["conditions"].append(
        {
            "type": "DisruptionTarget",
            "status": "True",
            "reason": "TerminationByKubelet",
            "message": message.strip(),
        }
    )
    diagnosis = diagnose(make_pod(status), [event("Evicted", message)])
    assert diagnosis.kind is FailureKind.EVICTED
    assert diagnosis.retryable
    assert diagnosis.reason == f"pod was evicted by the kubelet: {message.strip()}"
    assert diagnosis.hint.startswith(
        "the node ran low on memory and evicted the pod; the retry resumes from the newest checkpoint."
    )


def test_eviction_api_drain() -> None:
    status = failed_status(terminated(143, "Error"))
    status["conditions"].append(
        {
            "type": "DisruptionTarget",
            "status": "True",
            "reason": "EvictionByEvictionAPI",
            "message": "Eviction API: evicting",
        }
    )
    diagnosis = diagnose(make_pod(status))
    assert diagnosis.kind is FailureKind.EVICTED
    assert diagnosis.retryable
    assert diagnosis.reason == (
        "pod was evicted through the Eviction API (node drain or autoscaler scale-down) (Eviction API: evicting)"
    )
    assert "PodDisruptionBudget" in diagnosis.hint


def test_preempted_by_the_scheduler() -> None:
    status = failed_status(terminated(75, "Error"))
    status["conditions"].append(
        {
            "type": "DisruptionTarget",
            "status": "True",
            "reason": "PreemptionByScheduler",
            "message": "default-scheduler: preempting to accommodate a higher priority pod",
            "lastTransitionTime": "2026-11-02T03:12:01Z",
        }
    )
    events = [
        event(
            "Preempted",
            "Preempted by pod 9f1c2d3e-aaaa-bbbb-cccc-0123456789ab on node gpu-node-3",
            type_="Normal",
            at="2026-11-02T03:12:01Z",
        ),
        event("Killing", "Stopping container base", type_="Normal", at="2026-11-02T03:12:01Z"),
    ]
    diagnosis = diagnose(make_pod(status), events)
    assert diagnosis.kind is FailureKind.PREEMPTED
    assert diagnosis.retryable
    assert diagnosis.reason == (
        "pod was preempted by the scheduler to make room for a higher-priority pod (default-scheduler: "
        "preempting to accommodate a higher priority pod)"
    )
    assert diagnosis.hint == (
        "the retry resumes from the newest checkpoint. If this run has a deadline, give it a higher "
        "priority_class_name so lower-priority work is preempted instead"
    )


def test_preempted_found_from_events_alone() -> None:
    pod = make_pod(failed_status(terminated(0, "Completed")))
    events = [event("Preempted", "Preempted by pod 9f1c on node gpu-node-3", type_="Normal")]
    diagnosis = diagnose(pod, events)
    assert diagnosis.kind is FailureKind.PREEMPTED
    assert diagnosis.retryable


def test_exit_75_is_preempted_by_contract_and_retryable() -> None:
    diagnosis = diagnose(make_pod(failed_status(terminated(75, "Error"))))
    assert diagnosis.kind is FailureKind.NONZERO_EXIT
    assert diagnosis.retryable
    assert diagnosis.exit_code == 75
    assert diagnosis.reason == "container 'base' exited with code 75"
    assert diagnosis.hint.startswith("exit 75 means preempted by contract")


def test_exit_78_is_a_config_error_by_contract_and_not_retryable() -> None:
    pod = make_pod(
        failed_status(terminated(78, "Error", message="dataset 'clicks-v3' has no column 'dwell_ms'\n"))
    )
    diagnosis = diagnose(pod)
    assert diagnosis.kind is FailureKind.NONZERO_EXIT
    assert not diagnosis.retryable
    assert (
        diagnosis.reason
        == "container 'base' exited with code 78: dataset 'clicks-v3' has no column 'dwell_ms'"
    )
    assert diagnosis.hint == (
        "exit 78 means the program rejected its configuration or input; a retry cannot fix it. Read the "
        "last log lines, fix the parameters or the input, then clear the task"
    )


def test_ordinary_crash_is_retryable() -> None:
    diagnosis = diagnose(make_pod(failed_status(terminated(1, "Error"))))
    assert diagnosis.kind is FailureKind.NONZERO_EXIT
    assert diagnosis.retryable
    assert diagnosis.reason == "container 'base' exited with code 1"
    assert "if it fails the same way again it is a bug: exit 78" in diagnosis.hint


def test_non_retryable_exit_codes_are_configurable() -> None:
    pod = make_pod(failed_status(terminated(2, "Error")))
    assert not diagnose(pod).retryable  # default: 78 and 2, like LocalTrainingOperator
    assert diagnose(pod, non_retryable_exit_codes={78}).retryable


def test_sigterm_without_checkpoint_names_the_signal() -> None:
    diagnosis = diagnose(make_pod(failed_status(terminated(143, "Error"))))
    assert diagnosis.reason == "container 'base' exited with code 143 (SIGTERM)"
    assert diagnosis.retryable
    assert "did not exit 75" in diagnosis.hint


def test_deadline_exceeded() -> None:
    status = failed_status(
        terminated(137, "Error"),
        reason="DeadlineExceeded",
        message="Pod was active on the node longer than the specified deadline",
    )
    pod = make_pod(status, activeDeadlineSeconds=9360)
    diagnosis = diagnose(
        pod,
        [
            event(
                "DeadlineExceeded",
                "Pod was active on the node longer than the specified deadline",
                type_="Normal",
            )
        ],
    )
    assert diagnosis.kind is FailureKind.DEADLINE_EXCEEDED
    assert diagnosis.retryable
    assert diagnosis.reason == (
        "pod exceeded its activeDeadlineSeconds of 9360s: Pod was active on the node longer than the "
        "specified deadline"
    )
    assert "raise expected_runtime" in diagnosis.hint


def test_liveness_probe_kill_is_stalled() -> None:
    pod = make_pod(failed_status(terminated(137, "Error")))
    events = [
        event(
            "Unhealthy",
            "Liveness probe failed: heartbeat is 912s old (limit 600s)",
            at="2026-11-02T03:11:40Z",
            count=3,
        ),
        event(
            "Killing",
            "Container base failed liveness probe, will be restarted",
            type_="Normal",
            at="2026-11-02T03:11:41Z",
        ),
    ]
    diagnosis = diagnose(pod, events)
    assert diagnosis.kind is FailureKind.STALLED
    assert diagnosis.retryable
    assert diagnosis.exit_code == 137
    assert diagnosis.reason == (
        "container 'base' failed its liveness probe and was killed (exit 137 (SIGKILL)): Liveness probe "
        "failed: heartbeat is 912s old (limit 600s)"
    )


def test_unknown_failure_says_what_it_saw() -> None:
    pod = make_pod({"phase": "Failed", "reason": "Mystery", "message": "something odd"})
    diagnosis = diagnose(pod)
    assert diagnosis.kind is FailureKind.UNKNOWN
    assert diagnosis.retryable
    assert diagnosis.reason == "pod phase Failed; Mystery; something odd"
    assert diagnosis.exit_code is None


def test_scheduling_gates() -> None:
    pod = make_pod(
        {
            "phase": "Pending",
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "SchedulingGated",
                    "message": "Scheduling is blocked due to non-empty scheduling gates",
                }
            ],
        }
    )
    diagnosis = diagnose(pod)
    assert diagnosis.kind is FailureKind.UNSCHEDULABLE
    assert diagnosis.retryable


def test_device_plugin_admission_failure() -> None:
    pod = make_pod(
        {
            "phase": "Failed",
            "reason": "UnexpectedAdmissionError",
            "message": "Pod was rejected: Allocate failed due to requested number of devices unavailable for "
            "nvidia.com/gpu. Requested: 4, Available: 0, which is unexpected",
        }
    )
    diagnosis = diagnose(pod)
    assert diagnosis.kind is FailureKind.UNSCHEDULABLE
    assert diagnosis.retryable


# -- precedence and robustness ---------------------------------------------------------------------


def test_main_container_is_examined_first() -> None:
    sidecar = {**terminated(1, "Error"), "name": "log-shipper"}
    pod = make_pod(failed_status(sidecar, terminated(137, "OOMKilled")))
    assert diagnose(pod).reason.startswith("container 'base' was OOMKilled")
    only_sidecar = make_pod(failed_status(sidecar, terminated(0, "Completed")))
    assert diagnose(only_sidecar).reason == "container 'log-shipper' exited with code 1"


def test_failed_init_container_is_reported() -> None:
    init = {**terminated(78, "Error"), "name": "fetch-data"}
    status = failed_status(waiting("PodInitializing", ""), initContainerStatuses=[init])
    diagnosis = diagnose(make_pod(status))
    assert diagnosis.kind is FailureKind.NONZERO_EXIT
    assert diagnosis.reason == "init container 'fetch-data' exited with code 78"
    assert not diagnosis.retryable


def test_events_alone_classify_a_pod_whose_status_says_nothing() -> None:
    pod = make_pod({"phase": "Pending"})
    mount = event(
        "FailedMount",
        'MountVolume.SetUp failed for volume "hf-token" : secret "hf-token" not found',
    )
    diagnosis = diagnose(pod, [mount])
    assert diagnosis.kind is FailureKind.CONFIG_ERROR
    assert diagnosis.hint.startswith("the Secret 'hf-token' does not exist in namespace 'ml'")
    scheduling = diagnose(pod, [event("FailedScheduling", SCHEDULER_MESSAGE)])
    assert scheduling.kind is FailureKind.UNSCHEDULABLE
    assert SCHEDULER_MESSAGE in scheduling.reason


@pytest.mark.parametrize("pod", [{}, {"status": None}, {"status": {"containerStatuses": [None, 3]}}, None])
def test_odd_input_never_raises(pod: Any) -> None:
    assert diagnose(pod, [{"reason": None}, "junk"]).kind is FailureKind.UNKNOWN  # type: ignore[list-item]


_KEYS = st.sampled_from(
    [
        "status", "containerStatuses", "state", "lastState", "terminated", "waiting", "reason", "exitCode",
        "conditions", "type", "message", "metadata", "name", "spec", "containers", "phase",
        "involvedObject", "lastTimestamp", "count", "resources", "limits", "memory",
    ]
)  # fmt: skip
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_KEYS, inner, max_size=5),
    max_leaves=30,
)


@given(_JSON, st.lists(_JSON, max_size=3))
def test_arbitrary_json_never_raises(pod: Any, events: list[Any]) -> None:
    """Diagnosis runs while a task is already failing; it must never hide the failure with its own."""
    diagnosis = diagnose(pod, events)
    assert isinstance(diagnosis.kind, FailureKind)
    assert len(diagnosis.events) <= MAX_EVENTS


def test_events_are_newest_last_at_most_ten_and_only_this_pods() -> None:
    events = [
        event("BackOff", f"Back-off restarting failed container base {i}", at=f"2026-11-02T02:{i:02d}:00Z")
        for i in range(15)
    ]
    events.reverse()  # the API does not promise an order
    other = event("Failed", "not ours")
    other["involvedObject"] = {**other["involvedObject"], "name": "another-pod"}
    diagnosis = diagnose(make_pod({"phase": "Running"}), [*events, other])
    assert len(diagnosis.events) == MAX_EVENTS
    assert diagnosis.events[0] == "Warning BackOff: Back-off restarting failed container base 5"
    assert diagnosis.events[-1] == "Warning BackOff: Back-off restarting failed container base 14"
    assert not any("not ours" in line for line in diagnosis.events)


def test_events_k8s_io_v1_form_is_read() -> None:
    new_style = {
        "apiVersion": "events.k8s.io/v1",
        "kind": "Event",
        "metadata": {"name": "x", "namespace": NAMESPACE},
        "eventTime": "2026-11-02T02:00:31.123456Z",
        "reportingController": "default-scheduler",
        "reason": "FailedScheduling",
        "note": SCHEDULER_MESSAGE,
        "type": "Warning",
        "regarding": {"kind": "Pod", "namespace": NAMESPACE, "name": POD_NAME},
        "deprecatedCount": 3,
    }
    diagnosis = diagnose(make_pod({"phase": "Pending"}), [new_style])
    assert diagnosis.kind is FailureKind.UNSCHEDULABLE
    assert diagnosis.events == (f"Warning FailedScheduling: {SCHEDULER_MESSAGE} (x3)",)


def test_snake_case_to_dict_form_is_read() -> None:
    """``V1Pod.to_dict()`` uses attribute names and datetime objects."""
    pod = {
        "metadata": {"name": POD_NAME, "namespace": NAMESPACE},
        "spec": {"containers": [{"name": "base", "resources": {"limits": {"memory": "16Gi"}}}]},
        "status": {
            "phase": "Failed",
            "container_statuses": [
                {
                    "name": "base",
                    "state": {"terminated": {"exit_code": 137, "reason": "OOMKilled"}},
                    "last_state": {},
                }
            ],
        },
    }
    events = [
        {
            "involved_object": {"name": POD_NAME},
            "reason": "Killing",
            "message": "Stopping container base",
            "type": "Normal",
            "last_timestamp": datetime(2026, 11, 2, 3, 12, 9, tzinfo=UTC),
            "count": 1,
        }
    ]
    diagnosis = diagnose(pod, events)
    assert diagnosis.reason == "container 'base' was OOMKilled (exit 137), limit memory=16Gi"
    assert diagnosis.events == ("Normal Killing: Stopping container base",)


def test_real_client_objects_serialised_both_ways() -> None:
    """What the operator will pass: the kubernetes client's own serialisations of a V1Pod."""
    k8s = pytest.importorskip("kubernetes.client")
    pod = k8s.V1Pod(
        metadata=k8s.V1ObjectMeta(name=POD_NAME, namespace=NAMESPACE),
        spec=k8s.V1PodSpec(
            containers=[
                k8s.V1Container(
                    name="base", image=IMAGE, resources=k8s.V1ResourceRequirements(limits={"memory": "16Gi"})
                )
            ]
        ),
        status=k8s.V1PodStatus(
            phase="Failed",
            container_statuses=[
                k8s.V1ContainerStatus(
                    name="base",
                    image=IMAGE,
                    image_id="",
                    ready=False,
                    restart_count=0,
                    state=k8s.V1ContainerState(
                        terminated=k8s.V1ContainerStateTerminated(exit_code=137, reason="OOMKilled")
                    ),
                )
            ],
        ),
    )
    sanitized = k8s.ApiClient().sanitize_for_serialization(pod)
    assert "containerStatuses" in sanitized["status"]
    for form in (sanitized, pod.to_dict()):
        diagnosis = diagnose(form)
        assert diagnosis.kind is FailureKind.OOM_KILLED
        assert diagnosis.reason == "container 'base' was OOMKilled (exit 137), limit memory=16Gi"


def test_diagnose_does_not_modify_its_input() -> None:
    pod = make_pod(failed_status(terminated(137, "OOMKilled")))
    before = copy.deepcopy(pod)
    diagnose(pod, [event("Killing", "Stopping container base")])
    assert pod == before


# -- failure_message -------------------------------------------------------------------------------


def test_failure_message_has_reason_hint_last_lines_and_events() -> None:
    diagnosis = Diagnosis(
        kind=FailureKind.OOM_KILLED,
        reason="container 'base' was OOMKilled (exit 137), limit memory=16Gi",
        hint="raise the memory limit",
        retryable=False,
        exit_code=137,
        events=("Normal Killing: Stopping container base",),
    )
    lines = [f"step {i} loss 0.{i:03d}\n" for i in range(30)]
    message = failure_message(diagnosis, pod_name=POD_NAME, namespace=NAMESPACE, last_log_lines=lines)
    assert message.splitlines()[:4] == [
        f"pod ml/{POD_NAME} failed: oom_killed (not retryable)",
        "reason: container 'base' was OOMKilled (exit 137), limit memory=16Gi",
        "hint: raise the memory limit",
        f"last {MAX_LOG_LINES} log lines:",
    ]
    assert "  | step 29 loss 0.029" in message
    assert "  | step 10 loss 0.010" in message
    assert "step 9 loss" not in message  # only the last 20
    assert message.endswith("pod events (newest last):\n  Normal Killing: Stopping container base")


def test_failure_message_without_logs_or_events() -> None:
    diagnosis = diagnose(make_pod(pending_status(waiting("ErrImagePull", "not found"))))
    message = failure_message(diagnosis, pod_name=POD_NAME, namespace=NAMESPACE, last_log_lines=[])
    assert "last log lines: none (the container may never have started)" in message
    assert message.endswith("pod events: none")
    assert message.startswith(f"pod ml/{POD_NAME} failed: image_pull (not retryable)")


def test_failure_message_cuts_very_long_log_lines() -> None:
    diagnosis = diagnose(make_pod(failed_status(terminated(1, "Error"))))
    message = failure_message(diagnosis, pod_name="p", namespace="n", last_log_lines=["x" * 5000])
    longest = max(message.splitlines(), key=len)
    assert len(longest) < 520 and longest.endswith("...")


# -- what a launcher saw itself: one vocabulary for pods and local processes --------------------------


@pytest.mark.parametrize("code", [1, 2, 3, 75, 78, 137, 143])
def test_a_local_exit_and_a_pod_exit_with_the_same_code_agree(code: int) -> None:
    """Issue 15: the local launcher had its own retryable set; one rule now decides both."""
    pod = diagnose(make_pod(failed_status(terminated(code, "Error"))))
    local = diagnose_exit(code, subject="process 4242")
    assert (local.kind, local.retryable, local.exit_code) == (pod.kind, pod.retryable, pod.exit_code)
    assert local.reason == f"process 4242 exited with code {code}" + pod.reason.split(str(code), 1)[1]
    if code != 137:  # the kubelet rules out an OOM kill for a pod; locally nobody can
        assert local.hint == pod.hint


def test_a_local_process_killed_by_a_signal_is_read_as_128_plus_the_signal() -> None:
    diagnosis = diagnose_exit(-9, subject="process 4242", message="torchrun reported rank 0: killed")
    assert diagnosis.kind is FailureKind.NONZERO_EXIT and diagnosis.retryable
    assert diagnosis.exit_code == 137
    assert diagnosis.reason == "process 4242 was killed by signal SIGKILL: torchrun reported rank 0: killed"
    assert diagnosis.hint.startswith(
        "it was killed with SIGKILL from outside: most often the kernel's OOM killer"
    )
    assert (
        diagnose_exit(-15, subject="p").hint
        == diagnose(make_pod(failed_status(terminated(143, "Error")))).hint
    )


def test_a_local_exit_honours_the_configured_non_retryable_codes() -> None:
    assert not diagnose_exit(3, subject="p", non_retryable_exit_codes={3}).retryable
    assert diagnose_exit(2, subject="p", non_retryable_exit_codes={78}).retryable
    assert diagnose_exit(75, subject="p", non_retryable_exit_codes={75}).retryable  # always resumes


def test_stalled_before_the_first_heartbeat_says_how_to_make_the_program_beat() -> None:
    diagnosis = stalled("no heartbeat progress for 20s", subject="process 4242", heartbeat_seen=False)
    assert diagnosis.kind is FailureKind.STALLED and diagnosis.retryable
    assert diagnosis.reason == "process 4242 stalled: no heartbeat progress for 20s"
    assert "make it call Heartbeat.beat()" in diagnosis.hint and "startup_timeout" in diagnosis.hint
    assert "Raise stall_after" in stalled("x").hint


def test_a_deadline_the_launcher_enforced_reads_like_the_pods_active_deadline() -> None:
    local = deadline_exceeded("still running at the hard deadline (2h36m)", subject="process 4242")
    status = failed_status(terminated(137, "Error"), reason="DeadlineExceeded")
    pod = diagnose(make_pod(status, activeDeadlineSeconds=9360))
    assert (local.kind, local.retryable, local.hint) == (pod.kind, pod.retryable, pod.hint)
    assert (
        local.reason == "process 4242 exceeded its hard deadline: still running at the hard deadline (2h36m)"
    )


def test_a_straggler_restart_is_its_own_retryable_kind() -> None:
    diagnosis = straggler("rank 1 on node-1 is a straggler", subject="process 4242")
    assert diagnosis.kind is FailureKind.STRAGGLER and diagnosis.retryable
    assert "straggler_policy action='warn'" in diagnosis.hint


def test_failure_message_for_a_local_run_names_the_subject_and_has_no_pod_events() -> None:
    diagnosis = diagnose_exit(1, subject="process 4242")
    message = failure_message(
        diagnosis,
        subject="training for partition_key='2026-11-20'",
        facts=("last heartbeat step: 7",),
        last_log_lines=["step 7", "Traceback"],
    )
    assert message.splitlines() == [
        "training for partition_key='2026-11-20' failed: nonzero_exit (retryable)",
        "reason: process 4242 exited with code 1",
        f"hint: {diagnosis.hint}",
        "last heartbeat step: 7",
        "Last output lines (last 2):",
        "  | step 7",
        "  | Traceback",
    ]
    empty = failure_message(diagnosis, subject="training", last_log_lines=[])
    assert empty.endswith("Last output lines: none (the program printed nothing)")
    assert "pod events" not in empty
