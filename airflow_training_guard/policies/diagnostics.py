"""Classify why a training pod failed, and say it in one message a person can act on.

The production failure this prevents: a task log that ends in ``Pod returned a failure`` while the
cause (``OOMKilled``, ``Unschedulable``, ``ImagePullBackOff``, a missing Secret, a preemption) sits
in the pod status and events that nobody looked at. :func:`diagnose` reads both, decides what
happened (:class:`FailureKind`), whether a retry can help, and what to do; :func:`failure_message`
puts the reason, the hint, the last log lines and the pod events into one message.

Input is plain data, as the Kubernetes API server returns it: the pod and its events as JSON
objects with camelCase keys (``status.containerStatuses[].state.terminated.exitCode``), which is
what ``ApiClient().sanitize_for_serialization(v1_pod)`` produces and what ``kubectl get -o json``
shows. The snake_case keys of the client's ``V1Pod.to_dict()`` are accepted too, and timestamps
may be RFC 3339 strings or ``datetime`` objects. Events may be ``core/v1`` (``message``,
``lastTimestamp``, ``involvedObject``) or ``events.k8s.io/v1`` (``note``, ``eventTime``,
``regarding``).

Exit codes follow the launcher contract (:mod:`airflow_training_guard.runtime.contract`): 75 means
"preempted, checkpoint saved" (retry resumes), 78 means "bad configuration or input" (no retry).

Pure Python, standard library only, no Airflow or kubernetes import.
"""

from __future__ import annotations

import enum
import re
import signal
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from airflow_training_guard.runtime.contract import EXIT_CONFIG_ERROR, EXIT_PREEMPTED

#: Events kept in a :class:`Diagnosis` (the newest ones).
MAX_EVENTS = 10
#: Log lines kept in a :func:`failure_message` (the last ones).
MAX_LOG_LINES = 20
#: Longest log line or event text kept in a message; the rest is cut with "...".
MAX_LINE_LENGTH = 500
#: Exit codes a retry cannot fix by default: the contract's 78, and 2 (command-line usage error).
#: The same default as ``LocalTrainingOperator(non_retryable_exit_codes=...)``.
DEFAULT_NON_RETRYABLE_EXIT_CODES = frozenset({EXIT_CONFIG_ERROR, 2})

_IMAGE_PULL_REASONS = frozenset(
    {
        "ImagePullBackOff",
        "ErrImagePull",
        "InvalidImageName",
        "ErrImageNeverPull",
        "ImageInspectError",
        "RegistryUnavailable",
        "SignatureValidationFailed",
    }
)
_CONFIG_WAITING_REASONS = frozenset(
    {"CreateContainerConfigError", "CreateContainerError", "RunContainerError"}
)
_CONFIG_TERMINATED_REASONS = frozenset({"StartError", "ContainerCannotRun"})
_PREEMPTION_REASONS = frozenset({"PreemptionByScheduler", "PreemptionByKubeScheduler"})
# Pull errors a retry can fix: registry throttling and outages (the same list the cncf.kubernetes
# provider uses to keep waiting instead of failing fast).
_TRANSIENT_PULL = re.compile(
    r"pull qps exceeded|rate limit|too many requests|\b429\b|quota exceeded|temporarily unavailable|"
    r"timeout|timed out|bad gateway|service unavailable|gateway timeout|\b50[234]\b",
    re.IGNORECASE,
)
_PULL_DENIED = re.compile(r"unauthorized|denied|forbidden|authentication required|\b40[13]\b", re.IGNORECASE)
_PULL_NOT_FOUND = re.compile(r"not found|manifest unknown|does not exist|no such", re.IGNORECASE)
_MISSING_OBJECT = re.compile(r'\b(secret|configmap)s? "([^"]+)" not found', re.IGNORECASE)
_MISSING_KEY = re.compile(r"couldn't find key (\S+) in (Secret|ConfigMap) ([^/\s]+)/(\S+)", re.IGNORECASE)
_LOW_ON = re.compile(r"low on resource: ([\w./-]*\w)")
_INSUFFICIENT = re.compile(r"Insufficient ([\w./-]*\w)")
_WHITESPACE = re.compile(r"\s+")
_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")


class FailureKind(enum.Enum):
    """What made a training pod fail (the value appears in logs and XCom)."""

    OOM_KILLED = "oom_killed"
    UNSCHEDULABLE = "unschedulable"
    IMAGE_PULL = "image_pull"
    EVICTED = "evicted"
    PREEMPTED = "preempted"
    NONZERO_EXIT = "nonzero_exit"
    DEADLINE_EXCEEDED = "deadline_exceeded"
    #: ``CreateContainerConfigError`` and friends: a missing Secret/ConfigMap or key, a bad command.
    CONFIG_ERROR = "config_error"
    STALLED = "stalled"
    #: a rank stayed far slower than its peers and the straggler policy stopped the job.
    STRAGGLER = "straggler"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Diagnosis:
    """Why a pod failed, whether a retry can help, and what to do.

    :param kind: the failure class.
    :param reason: one line with the evidence, e.g.
        ``container 'base' was OOMKilled (exit 137), limit memory=16Gi``.
    :param hint: what to do about it, including why it is or is not retried.
    :param retryable: whether a retry can succeed. Retries resume from the newest checkpoint, so
        preemption, eviction, stalls, deadlines and ordinary crashes are retryable; image pull
        errors, configuration errors, OOM kills (the same input runs out of memory again),
        exit 78 and scheduling that no node can satisfy are not.
    :param exit_code: the failed container's exit code, when it has one.
    :param events: the pod's events as ``"Warning FailedScheduling: 0/3 nodes are available: ..."``,
        newest last, at most :data:`MAX_EVENTS`.
    """

    kind: FailureKind
    reason: str
    hint: str
    retryable: bool
    exit_code: int | None = None
    events: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Finding:
    kind: FailureKind
    reason: str
    hint: str
    retryable: bool
    exit_code: int | None = None

    def diagnosis(self, events: tuple[str, ...] = ()) -> Diagnosis:
        """This finding as the public :class:`Diagnosis`, with the pod's events when there are any."""
        return Diagnosis(
            kind=self.kind,
            reason=self.reason,
            hint=self.hint,
            retryable=self.retryable,
            exit_code=self.exit_code,
            events=events,
        )


# -- reading API objects -------------------------------------------------------------------------------


def _get(obj: object, key: str) -> Any:
    """``obj[key]`` for camelCase keys, falling back to the snake_case key of ``to_dict()``."""
    if not isinstance(obj, Mapping):
        return None
    value = obj.get(key)
    if value is None:
        snake = _CAMEL.sub("_", key).lower()
        if snake != key:
            value = obj.get(snake)
    return value


def _path(obj: object, *keys: str) -> Any:
    for key in keys:
        obj = _get(obj, key)
    return obj


def _text(value: object) -> str:
    """A single line: whitespace collapsed, cut at :data:`MAX_LINE_LENGTH`."""
    if value is None:
        return ""
    text = _WHITESPACE.sub(" ", str(value)).strip()
    return text if len(text) <= MAX_LINE_LENGTH else text[: MAX_LINE_LENGTH - 3] + "..."


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _mappings(value: object) -> list[Mapping[str, Any]]:
    if not isinstance(value, Sequence) or isinstance(value, str | bytes):
        return []
    return [item for item in value if isinstance(item, Mapping)]


@dataclass(frozen=True)
class _Container:
    """One container status, flattened: its current waiting state and its latest termination."""

    name: str
    init: bool
    image: str
    waiting_reason: str
    waiting_message: str
    terminated: Mapping[str, Any] | None

    @property
    def exit_code(self) -> int | None:
        return _int(_get(self.terminated, "exitCode"))

    @property
    def terminated_reason(self) -> str:
        return _text(_get(self.terminated, "reason"))

    @property
    def label(self) -> str:
        return f"init container '{self.name}'" if self.init else f"container '{self.name}'"


def _containers(pod: Mapping[str, Any], main: str) -> list[_Container]:
    """Container statuses, the main container first, then init containers, then the others."""
    status = _get(pod, "status")
    found: list[_Container] = []
    for key, init in (("initContainerStatuses", True), ("containerStatuses", False)):
        for item in _mappings(_get(status, key)):
            waiting = _path(item, "state", "waiting")
            terminated = _path(item, "state", "terminated")
            if not isinstance(terminated, Mapping):
                # Restarting (CrashLoopBackOff) or running again: the last termination tells why.
                terminated = _path(item, "lastState", "terminated")
            found.append(
                _Container(
                    name=_text(_get(item, "name")),
                    init=init,
                    image=_text(_get(item, "image")),
                    waiting_reason=_text(_get(waiting, "reason")),
                    waiting_message=_text(_get(waiting, "message")),
                    terminated=terminated if isinstance(terminated, Mapping) else None,
                )
            )
    return sorted(found, key=lambda c: (not (c.name == main and not c.init), not c.init))


def _spec_container(pod: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    spec = _get(pod, "spec")
    for key in ("containers", "initContainers"):
        for item in _mappings(_get(spec, key)):
            if _get(item, "name") == name:
                return item
    return {}


def _condition(pod: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    for item in _mappings(_path(pod, "status", "conditions")):
        if _get(item, "type") == kind:
            return item
    return None


@dataclass(frozen=True)
class _Event:
    type: str
    reason: str
    message: str
    count: int

    def __str__(self) -> str:
        text = f"{self.type} {self.reason}: {self.message}" if self.message else f"{self.type} {self.reason}"
        return text + (f" (x{self.count})" if self.count > 1 else "")


def _timestamp(value: object) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    if isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None
        return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
    return None


def _events(events: Sequence[Mapping[str, Any]], pod_name: str) -> list[_Event]:
    """The pod's events, oldest first (events without a timestamp first, in the order given)."""
    keyed: list[tuple[int, datetime, int, _Event]] = []
    floor = datetime.min.replace(tzinfo=UTC)
    for index, item in enumerate(_mappings(events)):
        regarding = _get(item, "involvedObject") or _get(item, "regarding")
        name = _get(regarding, "name")
        if pod_name and name and name != pod_name:
            continue
        when = None
        for key in ("lastTimestamp", "eventTime", "firstTimestamp"):
            when = when or _timestamp(_get(item, key))
        when = when or _timestamp(_path(item, "series", "lastObservedTime"))
        when = when or _timestamp(_path(item, "metadata", "creationTimestamp"))
        count = _int(_get(item, "count")) or _int(_path(item, "series", "count")) or 1
        count = max(count, _int(_get(item, "deprecatedCount")) or 1)
        event = _Event(
            type=_text(_get(item, "type")) or "Normal",
            reason=_text(_get(item, "reason")) or "Unknown",
            message=_text(_get(item, "message") or _get(item, "note")),
            count=count,
        )
        keyed.append((0 if when is None else 1, when or floor, index, event))
    return [event for *_, event in sorted(keyed, key=lambda k: k[:3])]


# -- rules, in order of precedence ---------------------------------------------------------------------


def _signal_name(code: int) -> str:
    if 128 < code < 128 + 65:
        try:
            return f" ({signal.Signals(code - 128).name})"
        except ValueError:
            return ""
    return ""


_RESUMES = "the retry resumes from the newest checkpoint"
_DEADLINE_HINT = (
    f"the job ran longer than its hard deadline; {_RESUMES}. If the job legitimately got slower, "
    "raise expected_runtime (the deadline is expected_runtime plus the buffer)"
)


def _kubelet_status(pod: Mapping[str, Any]) -> _Finding | None:
    """``status.reason`` set by the kubelet when it evicts, preempts, loses or rejects the pod."""
    why = _text(_path(pod, "status", "reason"))
    message = _text(_path(pod, "status", "message")) or "no message"
    if why == "Evicted":
        low = _LOW_ON.search(message)
        resource = low.group(1) if low else "a resource"
        return _Finding(
            FailureKind.EVICTED,
            f"pod was evicted by the kubelet: {message}",
            f"the node ran low on {resource} and evicted the pod; {_RESUMES}. To be evicted last, set "
            "requests equal to limits for cpu, memory and ephemeral-storage (Guaranteed QoS), and keep "
            "large data and checkpoints off the node's local disk",
            retryable=True,
        )
    if why == "Preempting":
        return _Finding(
            FailureKind.PREEMPTED,
            f"pod was preempted by the kubelet to admit a critical pod: {message}",
            f"{_RESUMES}",
            retryable=True,
        )
    if why in ("Shutdown", "Terminated", "NodeLost"):
        return _Finding(
            FailureKind.EVICTED,
            f"pod was stopped because its node shut down or was lost ({why}): {message}",
            f"{_RESUMES} on another node",
            retryable=True,
        )
    if why.startswith("OutOf") or why == "UnexpectedAdmissionError":
        return _Finding(
            FailureKind.UNSCHEDULABLE,
            f"the node's kubelet rejected the pod ({why}): {message}",
            "the node had fewer devices than the scheduler counted (a restarting device plugin or a "
            "faulty GPU); a retry can land on a healthy node. If it repeats, check the node with "
            "kubectl describe node",
            retryable=True,
        )
    return None


def _disrupted(pod: Mapping[str, Any]) -> _Finding | None:
    condition = _condition(pod, "DisruptionTarget")
    if condition is None or _get(condition, "status") != "True":
        return None
    why = _text(_get(condition, "reason"))
    message = _text(_get(condition, "message"))
    detail = f" ({message})" if message else ""
    if why in _PREEMPTION_REASONS:
        return _Finding(
            FailureKind.PREEMPTED,
            f"pod was preempted by the scheduler to make room for a higher-priority pod{detail}",
            f"{_RESUMES}. If this run has a deadline, give it a higher priority_class_name so "
            "lower-priority work is preempted instead",
            retryable=True,
        )
    described = {
        "EvictionByEvictionAPI": (
            "pod was evicted through the Eviction API (node drain or autoscaler scale-down)",
            "to keep nodes from being drained under a running job, protect it with a "
            "PodDisruptionBudget or the annotation cluster-autoscaler.kubernetes.io/safe-to-evict: 'false'",
        ),
        "TerminationByKubelet": (
            "pod was terminated by the kubelet (node pressure, graceful node shutdown, or room for a "
            "critical pod)",
            "to be evicted last under node pressure, set requests equal to limits (Guaranteed QoS)",
        ),
        "DeletionByTaintManager": (
            "pod was deleted because its node got a NoExecute taint (e.g. the node became unreachable)",
            "if nodes are often unreachable, look at the node's health",
        ),
        "DeletionByPodGC": (
            "pod was deleted by the pod garbage collector (its node is gone)",
            "the node was removed while the pod ran",
        ),
    }
    text, advice = described.get(
        why, (f"pod was disrupted ({why or 'no reason'})", "look at the pod events below")
    )
    return _Finding(FailureKind.EVICTED, f"{text}{detail}", f"{_RESUMES}; {advice}", retryable=True)


def _deadline(pod: Mapping[str, Any]) -> _Finding | None:
    if _path(pod, "status", "reason") != "DeadlineExceeded":
        return None
    seconds = _int(_path(pod, "spec", "activeDeadlineSeconds"))
    limit = f" of {seconds}s" if seconds is not None else ""
    message = _text(_path(pod, "status", "message"))
    return _Finding(
        FailureKind.DEADLINE_EXCEEDED,
        f"pod exceeded its activeDeadlineSeconds{limit}: {message or 'no message'}",
        _DEADLINE_HINT,
        retryable=True,
    )


def _oom(pod: Mapping[str, Any], containers: list[_Container]) -> _Finding | None:
    for container in containers:
        if container.terminated_reason != "OOMKilled":
            continue
        code = container.exit_code
        limit = _text(_path(_spec_container(pod, container.name), "resources", "limits", "memory"))
        exit_text = f" (exit {code})" if code is not None else ""
        if limit:
            reason = f"{container.label} was OOMKilled{exit_text}, limit memory={limit}"
            hint = (
                f"it used more memory than its limit memory={limit}; the same input runs out of memory "
                f"again, so it is not retried. Raise the memory limit and request of {container.label}, "
                "or lower its memory use (batch size, data loader workers, in-memory caches)"
            )
        else:
            reason = f"{container.label} was OOMKilled{exit_text}, no memory limit set"
            hint = (
                "the node ran out of memory and the kernel killed it; the same input runs out of memory "
                f"again, so it is not retried. Set a memory request and limit for {container.label} that "
                "cover its peak use, so the scheduler reserves that memory, or lower its memory use"
            )
        return _Finding(FailureKind.OOM_KILLED, reason, hint, retryable=False, exit_code=code)
    return None


def _newest(events: list[_Event], predicate: Callable[[_Event], bool]) -> _Event | None:
    for event in reversed(events):
        if predicate(event):
            return event
    return None


def _image_pull(pod: Mapping[str, Any], container: _Container, events: list[_Event]) -> _Finding:
    image = container.image or _text(_get(_spec_container(pod, container.name), "image")) or "?"
    # 'Back-off pulling image' says nothing; the kubelet's 'Failed to pull image' event says why.
    failed = _newest(events, lambda e: e.reason == "Failed" and "to pull image" in e.message)
    detail = failed.message if failed is not None else container.waiting_message
    evidence = f"{detail} {container.waiting_message}"
    reason = f"{container.label} cannot pull image '{image}' ({container.waiting_reason})"
    reason += f": {detail}" if detail else ""
    namespace = _text(_path(pod, "metadata", "namespace")) or "the pod's namespace"
    if container.waiting_reason == "InvalidImageName":
        hint = "the image reference is malformed; write it as '<registry>/<repository>@sha256:<digest>'"
    elif _TRANSIENT_PULL.search(evidence):
        return _Finding(
            FailureKind.IMAGE_PULL,
            reason,
            "the registry throttled or did not answer; a retry can succeed. If it keeps happening, "
            "mirror the image to a registry close to the cluster",
            retryable=True,
        )
    elif _PULL_DENIED.search(evidence):
        hint = (
            "the registry refused access; check that image_pull_secrets names a docker-registry Secret "
            f"in {namespace} with credentials that can read this repository"
        )
    elif _PULL_NOT_FOUND.search(evidence):
        hint = (
            "the image or digest does not exist in the registry; check the reference and get the digest "
            f"of a pushed image with: crane digest {image.split('@', 1)[0]}"
        )
    else:
        hint = "check that the image exists (crane digest <image>) and that image_pull_secrets grant access"
    return _Finding(
        FailureKind.IMAGE_PULL, reason, f"{hint}; a retry pulls the same image, so it is not retried", False
    )


def _config_hint(message: str, namespace: str) -> str:
    missing = _MISSING_OBJECT.search(message)
    if missing:
        kind = "Secret" if missing.group(1).lower() == "secret" else "ConfigMap"
        return (
            f"the {kind} '{missing.group(2)}' does not exist in namespace '{namespace}'; create it, or fix "
            "its name in the pod spec. A retry cannot fix it"
        )
    key = _MISSING_KEY.search(message)
    if key:
        return (
            f"the key '{key.group(1)}' is missing from {key.group(2)} '{key.group(3)}/{key.group(4)}'; add "
            "it, or fix the key name in the pod spec. A retry cannot fix it"
        )
    if "executable file not found" in message or "no such file or directory" in message:
        return "the container's command does not exist in the image; fix cmds/arguments or the image. A retry cannot fix it"
    return "the pod spec references something the kubelet cannot provide (see the message); fix the pod spec. A retry cannot fix it"


def _image_or_config(
    pod: Mapping[str, Any], containers: list[_Container], events: list[_Event]
) -> _Finding | None:
    namespace = _text(_path(pod, "metadata", "namespace")) or "the pod's namespace"
    for container in containers:
        if container.waiting_reason in _IMAGE_PULL_REASONS:
            return _image_pull(pod, container, events)
        if container.waiting_reason in _CONFIG_WAITING_REASONS:
            message = container.waiting_message
            return _Finding(
                FailureKind.CONFIG_ERROR,
                f"{container.label} cannot be created ({container.waiting_reason}): {message or 'no message'}",
                _config_hint(message, namespace),
                retryable=False,
            )
        if container.terminated_reason in _CONFIG_TERMINATED_REASONS:
            message = _text(_get(container.terminated, "message"))
            return _Finding(
                FailureKind.CONFIG_ERROR,
                f"{container.label} could not start ({container.terminated_reason}): {message or 'no message'}",
                _config_hint(message, namespace),
                retryable=False,
                exit_code=container.exit_code,
            )
    return None


def _stalled(containers: list[_Container], events: list[_Event]) -> _Finding | None:
    for container in containers:
        needle = f" {container.name} "
        # "Container base failed liveness probe, will be restarted"
        if not any(
            e.reason == "Killing" and "liveness probe" in e.message and needle in f" {e.message} "
            for e in events
        ):
            continue
        probe = _newest(events, lambda e: e.reason == "Unhealthy" and e.message.startswith("Liveness"))
        code = container.exit_code
        reason = f"{container.label} failed its liveness probe and was killed"
        reason += f" (exit {code}{_signal_name(code)})" if code is not None else ""
        reason += f": {probe.message}" if probe is not None else ""
        return _Finding(
            FailureKind.STALLED,
            reason,
            f"the program stopped making progress (deadlock, hung I/O, a stuck collective); {_RESUMES}. "
            "If single steps legitimately take longer, raise the probe's periodSeconds x failureThreshold",
            retryable=True,
            exit_code=code,
        )
    return None


def _exit_finding(
    code: int, reason: str, message: str, non_retryable: Collection[int], *, oom_ruled_out: bool
) -> _Finding:
    """The rule for a non-zero exit, the same for a pod's container and a local process.

    ``code`` follows the container convention: 128 + N when killed by signal N; ``reason`` says
    what exited how. ``oom_ruled_out``: the kubelet says whether a SIGKILL was an OOM kill; a local
    launcher cannot.
    """
    reason += f": {message}" if message else ""
    if code == EXIT_PREEMPTED:
        hint = (
            f"exit {EXIT_PREEMPTED} means preempted by contract: the program saved a checkpoint "
            f"after SIGTERM and stopped on purpose; {_RESUMES}"
        )
        retryable = True
    elif code in non_retryable:
        if code == EXIT_CONFIG_ERROR:
            hint = (
                f"exit {EXIT_CONFIG_ERROR} means the program rejected its configuration or input; a "
                "retry cannot fix it. Read the last log lines, fix the parameters or the input, then "
                "clear the task"
            )
        elif code == 2:
            hint = "exit 2 is usually a command-line usage error; check the command and its arguments. A retry cannot fix it"
        else:
            hint = f"exit {code} is configured as not retryable; read the last log lines"
        retryable = False
    elif code == 128 + signal.SIGTERM:
        hint = (
            f"it got SIGTERM and did not exit {EXIT_PREEMPTED}, so it saved no checkpoint on the way "
            f"out; {_RESUMES}. Use airflow_training_guard.runtime.PreemptionGuard so the program checkpoints and exits "
            f"{EXIT_PREEMPTED} on SIGTERM"
        )
        retryable = True
    elif code == 128 + signal.SIGKILL and oom_ruled_out:
        hint = (
            "it was killed with SIGKILL without being OOMKilled: the termination grace period ended "
            f"before it exited, or something on the node killed it; {_RESUMES}"
        )
        retryable = True
    elif code == 128 + signal.SIGKILL:
        hint = (
            "it was killed with SIGKILL from outside: most often the kernel's OOM killer (check the "
            "worker's memory and dmesg), else a kill -9 or the machine shutting down; "
            f"{_RESUMES}. If it dies at the same step again, lower its memory use"
        )
        retryable = True
    else:
        hint = (
            f"the program failed; read the last log lines below. {_RESUMES[0].upper()}{_RESUMES[1:]}; "
            f"if it fails the same way again it is a bug: exit {EXIT_CONFIG_ERROR} for errors a retry "
            "cannot fix"
        )
        retryable = True
    return _Finding(FailureKind.NONZERO_EXIT, reason, hint, retryable, exit_code=code)


def _nonzero(containers: list[_Container], non_retryable: Collection[int]) -> _Finding | None:
    for container in containers:
        code = container.exit_code
        if code is None or code == 0:
            continue
        message = _text(_get(container.terminated, "message"))
        # _oom ran first: a SIGKILL that reaches this rule was not an OOM kill.
        reason = f"{container.label} exited with code {code}{_signal_name(code)}"
        return _exit_finding(code, reason, message, non_retryable, oom_ruled_out=True)
    return None


def _scheduling(message: str, *, gated: bool = False) -> _Finding:
    if gated:
        return _Finding(
            FailureKind.UNSCHEDULABLE,
            f"pod is held by scheduling gates: {message or 'no message'}",
            "a queueing system (e.g. Kueue) has not admitted the pod yet; it starts when admitted, so a "
            "retry can succeed. Check the queue's quota if it waits long",
            retryable=True,
        )
    reason = f"pod cannot be scheduled: {message or 'no message from the scheduler'}"
    short = sorted(set(_INSUFFICIENT.findall(message)))
    if short:
        return _Finding(
            FailureKind.UNSCHEDULABLE,
            reason,
            f"no node has enough free {', '.join(short)} right now; the pod can start when running work "
            "frees them, so a retry can succeed. To start sooner, request less or use a higher "
            "priority_class_name; the pre-flight GPU fit check says whether the request can ever fit",
            retryable=True,
        )
    return _Finding(
        FailureKind.UNSCHEDULABLE,
        reason,
        "no node accepts the pod: its node_selector, affinity or tolerations exclude every node (see "
        "the scheduler's message); fix them, a retry cannot help",
        retryable=False,
    )


def _unschedulable(pod: Mapping[str, Any]) -> _Finding | None:
    condition = _condition(pod, "PodScheduled")
    if condition is None or _get(condition, "status") != "False":
        return None
    why = _get(condition, "reason")
    if why not in ("Unschedulable", "SchedulingGated"):
        return None
    return _scheduling(_text(_get(condition, "message")), gated=why == "SchedulingGated")


def _from_events(pod: Mapping[str, Any], events: list[_Event]) -> _Finding | None:
    """Fallback when the status says nothing decisive (e.g. it was read after a restart)."""
    namespace = _text(_path(pod, "metadata", "namespace")) or "the pod's namespace"
    for event in reversed(events):
        message = event.message
        if event.reason == "FailedScheduling":
            return _scheduling(message)
        if event.reason in ("Preempted", "Preempting"):
            return _Finding(
                FailureKind.PREEMPTED,
                f"pod was preempted: {message}",
                f"{_RESUMES}. If this run has a deadline, give it a higher priority_class_name",
                retryable=True,
            )
        if event.reason in ("Evicted", "TaintManagerEviction"):
            return _Finding(
                FailureKind.EVICTED,
                f"pod was evicted: {message}",
                f"{_RESUMES}. To be evicted last, set requests equal to limits (Guaranteed QoS)",
                retryable=True,
            )
        if event.reason == "DeadlineExceeded":
            return _Finding(
                FailureKind.DEADLINE_EXCEEDED,
                f"pod exceeded its activeDeadlineSeconds: {message}",
                f"{_RESUMES}. If the job legitimately got slower, raise expected_runtime",
                retryable=True,
            )
        if event.reason == "FailedMount" and (
            _MISSING_OBJECT.search(message) or _MISSING_KEY.search(message)
        ):
            return _Finding(
                FailureKind.CONFIG_ERROR,
                f"a volume cannot be mounted: {message}",
                _config_hint(message, namespace),
                retryable=False,
            )
        if event.reason == "Failed" and (_MISSING_OBJECT.search(message) or _MISSING_KEY.search(message)):
            return _Finding(
                FailureKind.CONFIG_ERROR,
                f"a container cannot be created: {message}",
                _config_hint(message, namespace),
                retryable=False,
            )
        if (event.reason == "Failed" and "pull" in message.lower()) or (
            event.reason == "BackOff" and message.startswith("Back-off pulling image")
        ):
            transient = bool(_TRANSIENT_PULL.search(message))
            return _Finding(
                FailureKind.IMAGE_PULL,
                f"an image cannot be pulled: {message}",
                "the registry throttled or did not answer; a retry can succeed"
                if transient
                else "check that the image exists (crane digest <image>) and that image_pull_secrets "
                "grant access; a retry pulls the same image, so it is not retried",
                retryable=transient,
            )
    return None


def _unknown(pod: Mapping[str, Any], containers: list[_Container]) -> _Finding:
    phase = _text(_path(pod, "status", "phase")) or "unknown"
    parts = [f"pod phase {phase}"]
    for key in ("reason", "message"):
        value = _text(_path(pod, "status", key))
        if value:
            parts.append(value)
    waiting = [f"{c.label} waiting: {c.waiting_reason}" for c in containers if c.waiting_reason]
    parts.extend(waiting[:3])
    return _Finding(
        FailureKind.UNKNOWN,
        "; ".join(parts),
        "no known failure pattern matched; read the last log lines and the pod events below "
        "(kubectl describe pod shows the same). A retry may help",
        retryable=True,
    )


def diagnose(
    pod: Mapping[str, Any],
    events: Sequence[Mapping[str, Any]] = (),
    *,
    container: str = "base",
    non_retryable_exit_codes: Collection[int] = DEFAULT_NON_RETRYABLE_EXIT_CODES,
) -> Diagnosis:
    """Classify why ``pod`` failed (or does not start) from its status and events.

    Precedence, first match wins: the kubelet's ``status.reason`` (``Evicted``, ``Preempting``,
    node shutdown or loss, ``OutOf<resource>`` admission rejection); a
    ``DisruptionTarget`` condition (preemption, API eviction, kubelet termination, taint manager);
    ``status.reason: DeadlineExceeded``; an ``OOMKilled`` container; image pull and
    container-creation errors; a liveness-probe kill (stalled); a non-zero exit; ``PodScheduled``
    false (``Unschedulable``); then the events alone (``FailedScheduling``, ``Failed``, ``BackOff``,
    ``Preempted``/``Preempting``, ``Evicted``, ``FailedMount``). Containers are examined with
    ``container`` first, then init containers, then the other containers. Never raises on odd
    input: what cannot be read is treated as absent, and the result is :attr:`FailureKind.UNKNOWN`.

    :param pod: the pod as a JSON object (``ApiClient().sanitize_for_serialization(pod)``).
    :param events: the pod's events as JSON objects, in any order.
    :param container: name of the training container (the KubernetesPodOperator names it ``base``).
    :param non_retryable_exit_codes: exit codes a retry cannot fix (default 78 and 2, as
        ``LocalTrainingOperator``). Exit 75 is always retryable.
    """
    pod = pod if isinstance(pod, Mapping) else {}
    pod_name = _text(_path(pod, "metadata", "name"))
    ordered = _events(events, pod_name)
    containers = _containers(pod, container)
    codes = frozenset(non_retryable_exit_codes)

    def findings() -> Iterator[_Finding | None]:
        yield _kubelet_status(pod)
        yield _disrupted(pod)
        yield _deadline(pod)
        yield _oom(pod, containers)
        yield _image_or_config(pod, containers, ordered)
        yield _stalled(containers, ordered)
        yield _nonzero(containers, codes)
        yield _unschedulable(pod)
        yield _from_events(pod, ordered)

    finding = next((found for found in findings() if found is not None), None) or _unknown(pod, containers)
    return finding.diagnosis(events=tuple(str(event) for event in ordered[-MAX_EVENTS:]))


# -- what a launcher saw itself (its watchdog, its deadline, a local process's exit) ------------------------
# Every launcher states these through the functions below, so the pod operator, the Job operator,
# the triggerer and the local launcher agree on the kind, the hint and whether a retry can help.


def stalled(
    detail: str, *, observed: Diagnosis | None = None, subject: str = "pod", heartbeat_seen: bool = True
) -> Diagnosis:
    """The diagnosis for a job a watchdog found without heartbeat progress (and killed): retryable.

    One definition for every launcher (the pod watchdog, the triggerer, the local process
    supervisor), so a local run and a pod run agree that a stall is retried and resumes. The rule
    that decides it is :class:`~airflow_training_guard.policies.stall.StallWatch`.

    :param detail: what the watchdog saw, e.g. ``no heartbeat progress for 600s ...``.
    :param observed: what :func:`diagnose` read from the pod afterwards (its exit code and events
        are kept).
    :param subject: what stalled, for the reason line (``pod train-x``, ``process 4242``).
    :param heartbeat_seen: False when the program never wrote a first heartbeat (the hint then
        says how to make it beat, instead of how to tune ``stall_after``).
    """
    if heartbeat_seen:
        hint = (
            "the program stopped making progress (deadlock, hung I/O, stuck collective); the retry "
            "resumes from the newest valid checkpoint. Raise stall_after only if single steps "
            "really take that long"
        )
    else:
        hint = (
            "the program never wrote a heartbeat: make it call Heartbeat.beat() "
            "(airflow_training_guard.runtime), raise startup_timeout if loading really takes that long, "
            "or set watch_heartbeat=False; the retry resumes from the newest valid checkpoint"
        )
    return Diagnosis(
        kind=FailureKind.STALLED,
        reason=f"{subject} stalled: {detail}",
        hint=hint,
        retryable=True,
        exit_code=observed.exit_code if observed else None,
        events=observed.events if observed else (),
    )


def deadline_exceeded(detail: str, *, subject: str) -> Diagnosis:
    """The diagnosis for a job its launcher stopped at the hard deadline: retryable, it resumes.

    The pod's own ``activeDeadlineSeconds`` is read by :func:`diagnose`; this is the same verdict
    for a launcher that enforces the deadline itself (the local process supervisor).

    :param detail: what the launcher saw, e.g. ``still running at the hard deadline (9360s)``.
    :param subject: what ran too long (``process 4242``).
    """
    return Diagnosis(
        kind=FailureKind.DEADLINE_EXCEEDED,
        reason=f"{subject} exceeded its hard deadline: {detail}",
        hint=_DEADLINE_HINT,
        retryable=True,
    )


def straggler(detail: str, *, subject: str) -> Diagnosis:
    """The diagnosis for a job stopped by the straggler policy ``action='restart'``: retryable.

    :param detail: the straggler report(s), e.g. ``rank 1 on node-1 is a straggler: ...``.
    :param subject: what was stopped (``process 4242``).
    """
    return Diagnosis(
        kind=FailureKind.STRAGGLER,
        reason=f"{subject} was stopped because a rank stayed far slower than its peers: {detail}",
        hint=(
            "a slow rank holds every other rank back (a throttled GPU, a slow disk or network on its "
            f"node); {_RESUMES}. Use straggler_policy action='warn' to only report it"
        ),
        retryable=True,
    )


def diagnose_exit(
    returncode: int,
    *,
    subject: str,
    message: str = "",
    non_retryable_exit_codes: Collection[int] = DEFAULT_NON_RETRYABLE_EXIT_CODES,
) -> Diagnosis:
    """Classify a local process's non-zero exit by the rules :func:`diagnose` applies to a container.

    Exit 75 is preempted by contract (retryable), the ``non_retryable_exit_codes`` (default 78 and
    2) are not retried, every other code is. A negative ``returncode`` (``subprocess``: killed by
    signal N) is read as 128 + N, the code a container reports, and is kept so in ``exit_code``.

    :param returncode: the process's return code, as ``subprocess.Popen.returncode``; not 0.
    :param subject: what exited, for the reason line (``process 4242``, ``rank 1``).
    :param message: what else is known, appended to the reason (torchrun's per-rank codes).
    :param non_retryable_exit_codes: exit codes a retry cannot fix.
    """
    code = 128 - returncode if returncode < 0 else returncode
    if returncode < 0:
        name = _signal_name(code).strip(" ()") or f"signal {-returncode}"
        reason = f"{subject} was killed by signal {name}"
    else:
        reason = f"{subject} exited with code {code}{_signal_name(code)}"
    finding = _exit_finding(
        code, reason, _text(message), frozenset(non_retryable_exit_codes), oom_ruled_out=False
    )
    return finding.diagnosis()


def failure_message(
    diagnosis: Diagnosis,
    *,
    last_log_lines: Sequence[str],
    pod_name: str = "",
    namespace: str = "",
    upstream: str | None = None,
    subject: str | None = None,
    facts: Sequence[str] = (),
) -> str:
    """One message for the task log and the exception: reason, hint, last log lines, pod events.

    :param diagnosis: what :func:`diagnose` (or a launcher, through :func:`stalled` and friends)
        found.
    :param last_log_lines: the training program's last log lines; the last :data:`MAX_LOG_LINES`
        are shown, each cut at :data:`MAX_LINE_LENGTH` characters. Mask secrets before logging.
    :param pod_name: the pod's name.
    :param namespace: the pod's namespace.
    :param upstream: the message of the KubernetesPodOperator exception this one replaces (its
        termination message, and the pod spec when ``log_pod_spec_on_failure``); kept whole at the
        end, so the guard's message never carries less than the provider's.
    :param subject: what failed, when it is not a pod (``training for partition_key='2026-11-20'``);
        then the message has no pod events section and the log section is the program's output.
    :param facts: more lines after the hint (``last heartbeat step: 212``).
    """
    verdict = "retryable" if diagnosis.retryable else "not retryable"
    lines = [
        f"{subject or f'pod {namespace}/{pod_name}'} failed: {diagnosis.kind.value} ({verdict})",
        f"reason: {diagnosis.reason}",
        f"hint: {diagnosis.hint}",
        *facts,
    ]
    logs = [str(line).rstrip("\r\n") for line in last_log_lines][-MAX_LOG_LINES:]
    if subject is not None:
        heading, nothing = "Last output lines", "Last output lines: none (the program printed nothing)"
    else:
        heading, nothing = "log lines", "last log lines: none (the container may never have started)"
    if logs:
        lines.append(f"last {len(logs)} {heading}:" if subject is None else f"{heading} (last {len(logs)}):")
        lines.extend(
            f"  | {line if len(line) <= MAX_LINE_LENGTH else line[: MAX_LINE_LENGTH - 3] + '...'}"
            for line in logs
        )
    else:
        lines.append(nothing)
    if diagnosis.events:
        lines.append("pod events (newest last):")
        lines.extend(f"  {event}" for event in diagnosis.events)
    elif subject is None:
        lines.append("pod events: none")
    if upstream:
        lines.append("KubernetesPodOperator reported:")
        lines.append(upstream)
    return "\n".join(lines)
