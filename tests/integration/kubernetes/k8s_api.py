"""A realistic Kubernetes API server on loopback for synchronous Airflow code, built on kmock.

kmock 0.8's ``KubernetesEmulator`` is an in-memory object store over HTTP: create, read, list,
merge-patch, delete and watch work with the real ``kubernetes`` client. It fills in nothing else
(see /work/shared/TESTING-NOTES.md). This module adds what the API server, the scheduler and the
kubelet would do, so that ``KubernetesPodOperator`` and our own operators run unmodified:

- server-set metadata on create (uid, resourceVersion, creationTimestamp, namespace) and a pod
  status (``Pending``, ``PodScheduled``, ``qosClass``), pod spec defaults and the validation
  errors (422) a real server answers for bad names and labels;
- a resourceVersion counter bumped on every create, patch and delete;
- label and field selectors on list and watch (kmock ignores both);
- ``watch=True`` normalised to ``true``, watch ``resourceVersion`` and ``timeoutSeconds``;
- pod logs (``text/plain``, with ``timestamps``, ``tailLines``, ``sinceSeconds``, ``sinceTime``,
  ``limitBytes``), events, nodes and resource quotas;
- drivers that move pods through their life cycle over HTTP (so open watches see every change),
  and ``auto_complete`` rules that do it on their own while a synchronous ``execute()`` blocks;
- namespaces (kmock cannot even parse ``/api/v1/namespaces``).

Not emulated, on purpose (say so here before relying on it):

- ``limit``/``continue``: a list is always one complete page;
- graceful deletion: a deleted pod is gone at once (no ``Terminating``, no grace period);
- strategic merge patch is applied as a JSON merge patch (lists are replaced, not merged by key);
  the drivers always send complete status lists, so both give the same result;
- scheduling: ``spec.nodeName`` stays what the client sent; pods are ``PodScheduled`` at once
  unless an ``unschedulable`` rule or ``make_unschedulable`` says otherwise;
- ``follow=true`` logs return what was written so far and close (KPO then polls again);
- a watch resumed from a ``resourceVersion`` gets one event per object changed since then (its
  current state), not every intermediate change;
- field selectors match any dotted path, a superset of the fields the real server indexes;
- answered 405 rather than faked: PUT, deletecollection, ``dryRun``, exec/attach/portforward/
  proxy, eviction and binding subresources, writing namespaces.

The kmock server runs on its own asyncio loop in a background thread; every public method of
:class:`K8sApi` is synchronous and thread-safe (it schedules the work onto that loop).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import datetime
import functools
import gzip
import hashlib
import importlib.resources
import json
import re
import threading
import time
import traceback
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args

import aiohttp.test_utils
import aiohttp.web
import aiohttp.web_runner
import aiohttp.web_server
import attrs
import kmock

__all__ = [
    "DRIVER_HEADER",
    "K8sApi",
    "LabelRequirement",
    "Outcome",
    "RecordedRequest",
    "SelectorError",
    "field_selector_matches",
    "label_selector_matches",
    "parse_field_selector",
    "parse_label_selector",
]

_T = TypeVar("_T")

#: Requests carrying this header come from the drivers of :class:`K8sApi`, not from the code
#: under test; they are served normally but kept out of :attr:`K8sApi.requests`.
DRIVER_HEADER = "X-K8s-Api-Driver"

#: What an ``auto_complete`` rule does to a pod after it is created.
Outcome = Literal["succeeded", "failed", "oom", "unschedulable", "image_pull", "evicted", "never"]
_OUTCOMES = frozenset(get_args(Outcome))

_ORIGINAL_QUERY_KEY = aiohttp.web.RequestKey("k8s_api.original_query", dict)
_NAMESPACES_PATH = re.compile(r"^/api/v1/namespaces(?:/(?P<name>[^/]+))?/?$")
_BUILTIN_NAMESPACES = ("default", "kube-node-lease", "kube-public", "kube-system")
_DEFAULT_UNSCHEDULABLE = "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."
_TRUE_WORDS = frozenset({"1", "t", "T", "true", "TRUE", "True"})  # Go's strconv.ParseBool
_FALSE_WORDS = frozenset({"0", "f", "F", "false", "FALSE", "False"})


# --- selectors -----------------------------------------------------------------------------------


class SelectorError(ValueError):
    """A label or field selector the real API server would reject with 400 BadRequest."""


_LABEL_NAME = r"[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_DNS_SUBDOMAIN = r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*"
_LABEL_KEY_RE = re.compile(rf"^(?:{_DNS_SUBDOMAIN}/)?{_LABEL_NAME}$")
_LABEL_VALUE_RE = re.compile(rf"^(?:{_LABEL_NAME})?$")
_DNS_SUBDOMAIN_RE = re.compile(rf"^{_DNS_SUBDOMAIN}$")
_SET_REQUIREMENT_RE = re.compile(r"^(?P<key>[^\s!=()]+)\s+(?P<op>in|notin)\s*\((?P<values>[^()]*)\)$")
_EQUALITY_REQUIREMENT_RE = re.compile(r"^(?P<key>[^\s!=()]+)\s*(?P<op>==|=|!=)\s*(?P<value>[^\s!=(),]*)$")
_EXISTS_REQUIREMENT_RE = re.compile(r"^(?P<neg>!?)\s*(?P<key>[^\s!=(),]+)$")


@dataclasses.dataclass(frozen=True)
class LabelRequirement:
    """One requirement of a label selector, e.g. ``already_checked!=True`` or ``!airflow-worker``."""

    key: str
    op: Literal["=", "!=", "in", "notin", "exists", "!"]
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        # Kubernetes semantics: "!=" and "notin" also match objects that lack the label.
        present = self.key in labels
        value = labels.get(self.key)
        match self.op:
            case "=" | "in":
                return present and value in self.values
            case "!=" | "notin":
                return not present or value not in self.values
            case "exists":
                return present
            case "!":
                return not present
        raise AssertionError(self.op)  # pragma: no cover


def _split_top_level(selector: str) -> list[str]:
    """Split on commas that are not inside ``in (a,b)`` value lists."""
    parts: list[str] = []
    depth = 0
    current: list[str] = []
    for char in selector:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [part.strip() for part in parts]


def _check_label_key(key: str, selector: str) -> str:
    if not _LABEL_KEY_RE.match(key):
        raise SelectorError(f"unable to parse requirement: invalid label key {key!r} in {selector!r}")
    return key


def _check_label_value(value: str, selector: str) -> str:
    if not _LABEL_VALUE_RE.match(value):
        raise SelectorError(f"unable to parse requirement: invalid label value {value!r} in {selector!r}")
    return value


def parse_label_selector(selector: str | None) -> tuple[LabelRequirement, ...]:
    """Parse a label selector: ``a=b``, ``a==b``, ``a!=b``, ``a``, ``!a``, ``a in (x,y)``, ``a notin (x)``.

    An empty selector selects everything. Anything else raises :class:`SelectorError`.
    """
    if selector is None or not selector.strip():
        return ()
    requirements: list[LabelRequirement] = []
    for part in _split_top_level(selector):
        if m := _SET_REQUIREMENT_RE.match(part):
            values = frozenset(
                _check_label_value(v.strip(), selector) for v in m["values"].split(",") if v.strip()
            )
            if not values:
                raise SelectorError(f"unable to parse requirement: empty value set in {selector!r}")
            op: Literal["in", "notin"] = "in" if m["op"] == "in" else "notin"
            requirements.append(LabelRequirement(_check_label_key(m["key"], selector), op, values))
        elif m := _EQUALITY_REQUIREMENT_RE.match(part):
            key = _check_label_key(m["key"], selector)
            value = _check_label_value(m["value"], selector)
            eq_op: Literal["=", "!="] = "!=" if m["op"] == "!=" else "="
            requirements.append(LabelRequirement(key, eq_op, frozenset({value})))
        elif m := _EXISTS_REQUIREMENT_RE.match(part):
            key = _check_label_key(m["key"], selector)
            requirements.append(LabelRequirement(key, "!" if m["neg"] else "exists"))
        else:
            raise SelectorError(f"unable to parse requirement: {part!r} in label selector {selector!r}")
    return tuple(requirements)


def label_selector_matches(requirements: tuple[LabelRequirement, ...], obj: Mapping[str, Any]) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return all(requirement.matches(labels) for requirement in requirements)


def parse_field_selector(selector: str | None) -> tuple[tuple[str, bool, str], ...]:
    """Parse ``path=value``, ``path==value`` and ``path!=value`` terms into (path, equal, value)."""
    if selector is None or not selector.strip():
        return ()
    terms: list[tuple[str, bool, str]] = []
    for part in selector.split(","):
        m = re.match(r"^\s*(?P<path>[A-Za-z][A-Za-z0-9_.]*)\s*(?P<op>==|=|!=)\s*(?P<value>[^,]*?)\s*$", part)
        if not m:
            raise SelectorError(f"invalid field selector term {part!r} in {selector!r}")
        terms.append((m["path"], m["op"] != "!=", m["value"]))
    return tuple(terms)


def _field_value(obj: Mapping[str, Any], path: str) -> str:
    value: Any = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    # The API server compares field values as strings; absent fields are "" (e.g. spec.nodeName
    # of an unscheduled pod).
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def field_selector_matches(terms: tuple[tuple[str, bool, str], ...], obj: Mapping[str, Any]) -> bool:
    """Match any dotted field path of the object (a superset of what the real server indexes)."""
    return all((_field_value(obj, path) == value) == equal for path, equal, value in terms)


# --- pure builders: timestamps, pod defaults, statuses -------------------------------------------


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(tz=datetime.UTC)


def _rfc3339(moment: datetime.datetime | None = None) -> str:
    # metav1.Time is serialised with second precision.
    return (moment or _utcnow()).strftime("%Y-%m-%dT%H:%M:%SZ")


def _rfc3339_nano(moment: datetime.datetime) -> str:
    # The kubelet prefixes log lines with RFC3339Nano timestamps when ?timestamps=true.
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"


def _parse_rfc3339(value: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))


def _qos_class(spec: Mapping[str, Any]) -> str:
    """QoS class as the API server derives it (quantities are compared textually)."""
    containers = list(spec.get("containers") or []) + list(spec.get("initContainers") or [])
    any_set = False
    guaranteed = bool(containers)
    for container in containers:
        resources = container.get("resources") or {}
        requests = {k: v for k, v in (resources.get("requests") or {}).items() if k in ("cpu", "memory")}
        limits = {k: v for k, v in (resources.get("limits") or {}).items() if k in ("cpu", "memory")}
        any_set = any_set or bool(requests) or bool(limits)
        if set(limits) != {"cpu", "memory"} or any(requests.get(k, limits[k]) != limits[k] for k in limits):
            guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


def _image_pull_policy(image: str) -> str:
    last = image.rsplit("/", 1)[-1]
    if "@" in last:
        return "IfNotPresent"
    tag = last.split(":", 1)[1] if ":" in last else "latest"
    return "Always" if tag == "latest" else "IfNotPresent"


def _apply_pod_defaults(pod: dict[str, Any]) -> None:
    """The defaulting the API server applies to a pod on create (the fields KPO and kubectl show)."""
    spec = pod.setdefault("spec", {})
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("serviceAccountName", "default")
    spec.setdefault("serviceAccount", spec["serviceAccountName"])
    spec.setdefault("securityContext", {})
    spec.setdefault("enableServiceLinks", True)
    spec.setdefault("priority", 0)
    for container in list(spec.get("containers") or []) + list(spec.get("initContainers") or []):
        container.setdefault("imagePullPolicy", _image_pull_policy(str(container.get("image", ""))))
        container.setdefault("terminationMessagePath", "/dev/termination-log")
        container.setdefault("terminationMessagePolicy", "File")
        container.setdefault("resources", {})


def _validate_pod(pod: Mapping[str, Any]) -> None:
    """Reject what the real API server rejects with 422 Invalid (the checks that catch our bugs)."""
    meta = pod.get("metadata") or {}
    name = meta.get("name") or ""
    problems: list[str] = []
    if not name:
        problems.append("metadata.name: Required value: name or generateName is required")
    elif len(name) > 253 or not _DNS_SUBDOMAIN_RE.match(name):
        problems.append(
            f"metadata.name: Invalid value: {name!r}: a lowercase RFC 1123 subdomain must consist of "
            "lower case alphanumeric characters, '-' or '.', and must start and end with an "
            "alphanumeric character"
        )
    for key, value in (meta.get("labels") or {}).items():
        if not _LABEL_KEY_RE.match(str(key)):
            problems.append(f"metadata.labels: Invalid value: {key!r}: name part must be valid")
        if not isinstance(value, str) or not _LABEL_VALUE_RE.match(value):
            problems.append(
                f"metadata.labels: Invalid value: {value!r}: a valid label must be an empty string or "
                "consist of alphanumeric characters, '-', '_' or '.', must start and end with an "
                "alphanumeric character, and be at most 63 characters"
            )
    containers = (pod.get("spec") or {}).get("containers") or []
    if not containers:
        problems.append("spec.containers: Required value")
    seen: set[str] = set()
    for index, container in enumerate(containers):
        cname = container.get("name") or ""
        if not cname:
            problems.append(f"spec.containers[{index}].name: Required value")
        elif cname in seen:
            problems.append(f"spec.containers[{index}].name: Duplicate value: {cname!r}")
        seen.add(cname)
        if not container.get("image"):
            problems.append(f"spec.containers[{index}].image: Required value")
    if problems:
        raise kmock.KubernetesError(
            status=422,
            reason="Invalid",
            message=f'Pod "{name}" is invalid: ' + ", ".join(problems),
            details={"name": name, "kind": "Pod", "causes": [{"message": p} for p in problems]},
        )


def _condition(
    old: list[dict[str, Any]], type_: str, status: str, reason: str | None = None, message: str | None = None
) -> dict[str, Any]:
    previous = next((c for c in old if c.get("type") == type_), None)
    # Like the kubelet: the transition time only moves when the status flips.
    since = previous["lastTransitionTime"] if previous and previous.get("status") == status else _rfc3339()
    condition: dict[str, Any] = {
        "type": type_,
        "status": status,
        "lastProbeTime": None,
        "lastTransitionTime": since,
    }
    if reason:
        condition["reason"] = reason
    if message:
        condition["message"] = message
    return condition


def _initial_pod_status(pod: Mapping[str, Any]) -> dict[str, Any]:
    """A freshly created pod, as seen right after the scheduler bound it."""
    return {
        "phase": "Pending",
        "conditions": [_condition([], "PodScheduled", "True")],
        "qosClass": _qos_class(pod.get("spec") or {}),
    }


def _unschedulable_status(pod: Mapping[str, Any], message: str) -> dict[str, Any]:
    old = (pod.get("status") or {}).get("conditions") or []
    return {
        "phase": "Pending",
        "conditions": [_condition(old, "PodScheduled", "False", "Unschedulable", message)],
        "qosClass": (pod.get("status") or {}).get("qosClass") or _qos_class(pod.get("spec") or {}),
    }


def _default_container_state(phase: str, started_at: str) -> dict[str, Any]:
    now = _rfc3339()
    match phase:
        case "Pending":
            return {"waiting": {"reason": "ContainerCreating"}}
        case "Running":
            return {"running": {"startedAt": started_at}}
        case "Succeeded":
            return {
                "terminated": {
                    "exitCode": 0,
                    "reason": "Completed",
                    "startedAt": started_at,
                    "finishedAt": now,
                }
            }
        case "Failed":
            return {
                "terminated": {"exitCode": 1, "reason": "Error", "startedAt": started_at, "finishedAt": now}
            }
    return {}


def _complete_state(state: Mapping[str, Any], started_at: str) -> dict[str, Any]:
    """Fill the timestamps a kubelet always reports (KPO reads terminated.finishedAt for logs)."""
    state = copy.deepcopy(dict(state))
    if "running" in state:
        state["running"] = {"startedAt": started_at, **(state["running"] or {})}
    if "terminated" in state:
        state["terminated"] = {
            "exitCode": 0,
            "startedAt": started_at,
            "finishedAt": _rfc3339(),
            **(state["terminated"] or {}),
        }
    return state


def _pod_status(
    pod: Mapping[str, Any],
    phase: str,
    *,
    container: str,
    container_state: Mapping[str, Any] | None = None,
    reason: str | None = None,
    message: str | None = None,
    disruption: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """The full status the kubelet would report for a scheduled pod in ``phase``."""
    spec = pod.get("spec") or {}
    meta = pod.get("metadata") or {}
    old = dict(pod.get("status") or {})
    old_conditions = list(old.get("conditions") or [])
    containers = list(spec.get("containers") or [])
    names = [c.get("name") for c in containers]
    if container not in names:
        raise ValueError(f"pod {meta.get('name')!r} has no container {container!r}; it has {names}")
    now = _rfc3339()
    start_time = old.get("startTime") or now
    old_states = {cs.get("name"): cs.get("state") or {} for cs in old.get("containerStatuses") or []}

    statuses = []
    for spec_container in containers:
        cname = spec_container["name"]
        started_at = ((old_states.get(cname) or {}).get("running") or {}).get("startedAt") or start_time
        if cname == container and container_state is not None:
            state = _complete_state(container_state, started_at)
        else:
            state = _default_container_state(phase, started_at)
        image = str(spec_container.get("image", ""))
        status: dict[str, Any] = {
            "name": cname,
            "image": image,
            "imageID": "",
            "ready": "running" in state,
            "started": "running" in state,
            "restartCount": 0,
            "state": state,
            "lastState": {},
        }
        if "waiting" not in state:
            digest = hashlib.sha256(image.encode()).hexdigest()
            status["imageID"] = f"{image.split('@')[0].rsplit(':', 1)[0]}@sha256:{digest}"
            status["containerID"] = (
                "containerd://" + hashlib.sha256(f"{meta.get('uid')}/{cname}".encode()).hexdigest()
            )
        statuses.append(status)

    all_running = phase == "Running" and all("running" in s["state"] for s in statuses)
    not_ready = [s["name"] for s in statuses if not s["ready"]]
    if all_running:
        ready_reason, ready_message = None, None
    elif phase == "Succeeded":
        ready_reason, ready_message = "PodCompleted", None
    elif phase == "Failed":
        ready_reason, ready_message = "PodFailed", None
    else:
        ready_reason, ready_message = "ContainersNotReady", f"containers with unready status: {not_ready}"
    ready = "True" if all_running else "False"
    conditions = [
        _condition(old_conditions, "PodReadyToStartContainers", "False" if phase == "Pending" else "True"),
        _condition(old_conditions, "Initialized", "True"),
        _condition(old_conditions, "Ready", ready, ready_reason, ready_message),
        _condition(old_conditions, "ContainersReady", ready, ready_reason, ready_message),
        _condition(old_conditions, "PodScheduled", "True"),
    ]
    if disruption is not None:
        conditions.insert(0, _condition(old_conditions, "DisruptionTarget", "True", *disruption))
    result: dict[str, Any] = {
        "phase": phase,
        "conditions": conditions,
        "hostIP": "10.0.0.10",
        "hostIPs": [{"ip": "10.0.0.10"}],
        "podIP": "10.244.0.17",
        "podIPs": [{"ip": "10.244.0.17"}],
        "startTime": start_time,
        "containerStatuses": statuses,
        "qosClass": old.get("qosClass") or _qos_class(spec),
    }
    if reason:
        result["reason"] = reason
    if message:
        result["message"] = message
    return result


# --- the emulator (runs on the server loop) ------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RecordedRequest:
    """One request as the client sent it (query before the ``watch=True`` normalisation)."""

    method: str
    path: str
    query: Mapping[str, str]
    body: Any


@dataclasses.dataclass(frozen=True)
class _AutoRule:
    name_prefix: str
    namespace: str | None
    outcome: Outcome
    after: float
    logs: str | None
    exit_code: int | None
    start: Literal["now", "first_read"]

    def applies_to(self, namespace: str, name: str) -> bool:
        return name.startswith(self.name_prefix) and self.namespace in (None, namespace)


class _PodGone(Exception):
    """The pod a driver works on is not on the server (deleted, or never created)."""


class _QuickShutdownServer(aiohttp.test_utils.RawTestServer):
    """aiohttp's test server waits 60 s for open handlers (watch streams) on close; we do not."""

    async def _make_runner(self, debug: bool = True, **kwargs: Any) -> aiohttp.web_runner.ServerRunner:
        server = aiohttp.web_server.Server(self._handler, loop=self._loop, debug=debug, **kwargs)
        return aiohttp.web_runner.ServerRunner(server, debug=debug, shutdown_timeout=1.0, **kwargs)


@attrs.define(kw_only=True)
class _Emulator(kmock.KubernetesEmulator):
    journal: list[RecordedRequest] = attrs.field(factory=list, init=False)
    rules: list[_AutoRule] = attrs.field(factory=list, init=False)
    logs: dict[tuple[str, str, str], list[tuple[datetime.datetime, str]]] = attrs.field(
        factory=dict, init=False
    )
    tasks: set[asyncio.Task[None]] = attrs.field(factory=set, init=False)
    # Progressions waiting for the code under test to read their pod: (namespace, name) -> start.
    on_first_read: dict[tuple[str, str], Callable[[], None]] = attrs.field(factory=dict, init=False)
    closing: asyncio.Event = attrs.field(factory=asyncio.Event, init=False)
    # Held from assigning a resourceVersion until the change is stored and published, and while
    # lists and watches take their snapshot: a list's resourceVersion then covers exactly the
    # changes it shows, as etcd's revision does, and a watch from it misses nothing.
    write_lock: asyncio.Lock = attrs.field(factory=asyncio.Lock, init=False)
    # resourceVersion at which each object was (last) created, to tell ADDED from MODIFIED.
    created_rv: dict[tuple[Any, str | None, str], int] = attrs.field(factory=dict, init=False)
    driver: Any = attrs.field(default=None, init=False)  # the K8sApi that owns this emulator
    _rv: int = attrs.field(default=0, init=False)

    def next_resource_version(self) -> str:
        self._rv += 1
        return str(self._rv)

    # -- entry point: normalise the query before kmock parses it --------------------------------

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        original_query = dict(raw_request.query)
        watch = raw_request.query.get("watch")
        # kubernetes<37 and kubernetes_asyncio send `watch=True` (Python's str(True)); the real
        # API server parses it with Go's strconv.ParseBool, but kmock 0.8 recognises only the
        # literal `true` and otherwise serves a plain list, which the client's Watch then fails to
        # parse ("Malformed JSON response"). Rewrite it as the real server would understand it.
        # This must happen before kmock reads the request: clone() shares the unread body.
        if watch is not None and watch != "true" and watch in _TRUE_WORDS | _FALSE_WORDS:
            query = dict(raw_request.rel_url.query)
            if watch in _TRUE_WORDS:
                query["watch"] = "true"
            else:
                query.pop("watch")
            raw_request = raw_request.clone(rel_url=raw_request.rel_url.with_query(query))
        raw_request[_ORIGINAL_QUERY_KEY] = original_query
        # kmock 0.8 cannot parse /api/v1/namespaces (a 500 from its path parser) and knows no
        # namespace objects: serve them here (every namespace exists, as in a fresh cluster).
        if m := _NAMESPACES_PATH.match(raw_request.path):
            return await self._serve_namespaces(raw_request, m["name"], original_query)
        return await super().__call__(raw_request)

    async def _serve_namespaces(
        self, raw_request: aiohttp.web.BaseRequest, name: str | None, query: dict[str, str]
    ) -> aiohttp.web.StreamResponse:
        body = await raw_request.read()
        if raw_request.headers.get(DRIVER_HEADER) != "1":
            self.journal.append(RecordedRequest(raw_request.method, raw_request.path, query, body or None))

        def namespace(ns: str) -> dict[str, Any]:
            return {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {
                    "name": ns,
                    "uid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"namespace/{ns}")),
                    "resourceVersion": "1",
                    "labels": {"kubernetes.io/metadata.name": ns},
                },
                "spec": {"finalizers": ["kubernetes"]},
                "status": {"phase": "Active"},
            }

        if raw_request.method != "GET" or "watch" in query:
            error = {
                "apiVersion": "v1",
                "kind": "Status",
                "status": "Failure",
                "code": 405,
                "reason": "MethodNotAllowed",
                "message": "only reading namespaces is served by the kmock-based emulator",
            }
            return aiohttp.web.json_response(error, status=405)
        if name is not None:
            return aiohttp.web.json_response(namespace(name))
        used = {ns for (_, ns, _), obj in self._objects.items() if ns and not obj.deleted}
        items = [namespace(ns) for ns in sorted(used | set(_BUILTIN_NAMESPACES))]
        return aiohttp.web.json_response(
            {
                "apiVersion": "v1",
                "kind": "NamespaceList",
                "metadata": {"resourceVersion": str(self._rv)},
                "items": items,
            }
        )

    # -- request dispatch ------------------------------------------------------------------------

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        raw = request._raw_request
        if raw is None or raw.headers.get(DRIVER_HEADER) != "1":
            self.journal.append(
                RecordedRequest(
                    method=str(request.method.value if request.method else ""),
                    path=request.url.path,
                    query=(raw.get(_ORIGINAL_QUERY_KEY) if raw is not None else None) or dict(request.params),
                    body=copy.deepcopy(request.data) if request.data is not None else (request.text or None),
                )
            )
        resource = request.resource
        if resource is None or not resource.plural:
            return await super()._handle(request)  # discovery endpoints

        method = request.method.value if request.method else ""
        if (
            method == "GET"
            and resource.plural == "pods"
            and request.name is not None
            and request.subresource is None
            and raw is not None
            and raw.headers.get(DRIVER_HEADER) != "1"
        ):
            start = self.on_first_read.pop((str(request.namespace), request.name), None)
            if start is not None:
                start()
        if method in {"POST", "PATCH", "DELETE", "PUT"}:
            async with self.write_lock:
                return await self._mutate(request, resource, method)
        return await self._dispatch(request, resource, method)

    async def _mutate(
        self, request: kmock.Request, resource: kmock.resource, method: str
    ) -> aiohttp.web.StreamResponse:
        response = await self._dispatch(request, resource, method)
        if request.action == kmock.action.CREATE and response.status == 200:
            response.set_status(201)  # kmock answers 200; the API server says 201 Created
            meta = request.data["metadata"]
            key = (resource, meta.get("namespace"), meta["name"])
            self.created_rv[key] = int(meta["resourceVersion"])
            if resource.plural == "pods" and resource.group == "":
                self._on_pod_created(request.data)
        return response

    async def _dispatch(
        self, request: kmock.Request, resource: kmock.resource, method: str
    ) -> aiohttp.web.StreamResponse:
        try:
            if request.subresource == "log" and resource.plural == "pods" and method == "GET":
                return await self._serve_logs(request)
            if request.subresource in {"exec", "attach", "portforward", "proxy", "eviction", "binding"}:
                raise kmock.KubernetesError(
                    status=405,
                    reason="MethodNotAllowed",
                    message=f"pods/{request.subresource} is not served by the kmock-based emulator",
                )
            if method == "PUT":
                raise kmock.KubernetesError(
                    status=405,
                    reason="MethodNotAllowed",
                    message="PUT (replace) is not served by the kmock-based emulator; use PATCH",
                )
            if "dryRun" in request.params:
                raise kmock.KubernetesError(
                    status=405,
                    reason="MethodNotAllowed",
                    message="dryRun is not served by the kmock-based emulator (it would persist the change)",
                )
            if method == "DELETE" and request.name is None:
                raise kmock.KubernetesError(
                    status=405,
                    reason="MethodNotAllowed",
                    message="deletecollection is not served by the kmock-based emulator",
                )
            if request.action == kmock.action.CREATE:
                self._prepare_create(request)
            elif request.action == kmock.action.UPDATE:
                self._prepare_patch(request)
            elif request.action == kmock.action.DELETE:
                self._prepare_delete(request)
        except SelectorError as err:
            raise kmock.KubernetesError(status=400, reason="BadRequest", message=str(err)) from err
        return await super()._handle(request)

    def _info(self, resource: kmock.resource) -> kmock.ResourceInfo | None:
        # Not .get(): kmock's ResourcesArray.__getitem__ creates missing entries, like a defaultdict.
        return self.resources[resource] if resource in self.resources else None  # noqa: SIM401

    def _stored(self, resource: kmock.resource, namespace: str | None, name: str) -> dict[str, Any] | None:
        key = (resource, namespace, name)
        if key not in self._objects or self._objects[key].deleted:
            return None
        return self._objects[key].raw

    def _prepare_create(self, request: kmock.Request) -> None:
        obj = request.data
        if not isinstance(obj, dict):
            raise kmock.KubernetesError(status=400, reason="BadRequest", message="the body must be an object")
        assert request.resource is not None
        info = self._info(request.resource)
        namespaced = info.namespaced if info is not None and info.namespaced is not None else True
        meta = obj.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        if namespaced and request.namespace:
            if meta.get("namespace") not in (None, request.namespace):
                raise kmock.KubernetesError(
                    status=400,
                    reason="BadRequest",
                    message="the namespace of the provided object does not match the namespace sent on the request",
                )
            meta["namespace"] = request.namespace
        elif not namespaced:
            meta.pop("namespace", None)
        if info is not None and info.kind:
            obj.setdefault("kind", info.kind)
            group, version = request.resource.group, request.resource.version
            obj.setdefault("apiVersion", f"{group}/{version}" if group else version)
        if request.resource.plural == "pods" and request.resource.group == "":
            _validate_pod(obj)
            _apply_pod_defaults(obj)
            rule = self._rule_for(str(meta.get("namespace")), str(meta["name"]))
            # The API server ignores a client-sent status; the scheduler decides at once.
            if rule is not None and rule.outcome == "unschedulable":
                obj["status"] = _unschedulable_status(obj, _DEFAULT_UNSCHEDULABLE)
            else:
                obj["status"] = _initial_pod_status(obj)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = _rfc3339()
        meta["resourceVersion"] = self.next_resource_version()

    def _prepare_patch(self, request: kmock.Request) -> None:
        assert request.resource is not None and request.name is not None
        current = self._stored(request.resource, request.namespace, request.name)
        if current is None:
            return  # kmock answers 404
        info = self._info(request.resource)
        has_status = info is not None and "status" in (info.subresources or set())
        on_status = request.subresource == "status"
        rv = self.next_resource_version()
        patch = request.data
        if isinstance(patch, dict):
            sent_rv = (patch.get("metadata") or {}).get("resourceVersion")
            if sent_rv is not None and sent_rv != current["metadata"].get("resourceVersion"):
                raise kmock.KubernetesError(
                    status=409,
                    reason="Conflict",
                    message=f'Operation cannot be fulfilled on {request.resource.plural} "{request.name}": '
                    "the object has been modified; please apply your changes to the latest version and try again",
                )
            # Like the API server: /status changes only the status; the main resource never does.
            if has_status and on_status:
                for key in list(patch):
                    if key != "status":
                        del patch[key]
            elif has_status:
                patch.pop("status", None)
            meta = patch.setdefault("metadata", {})
            for immutable in ("uid", "name", "namespace", "creationTimestamp"):
                meta.pop(immutable, None)
            meta["resourceVersion"] = rv
        elif isinstance(patch, list):  # RFC 6902 JSON patch
            if has_status:
                patch[:] = [op for op in patch if str(op.get("path", "")).startswith("/status") == on_status]
            patch.append({"op": "add", "path": "/metadata/resourceVersion", "value": rv})
        else:
            raise kmock.KubernetesError(status=400, reason="BadRequest", message="unsupported patch body")

    def _prepare_delete(self, request: kmock.Request) -> None:
        assert request.resource is not None and request.name is not None
        key = (request.resource, request.namespace, request.name)
        if self._stored(*key) is not None:
            # Bump it so the DELETED event carries a newer resourceVersion than the last change
            # (watchers resuming from a resourceVersion rely on it).
            self._objects[key].patch({"metadata": {"resourceVersion": self.next_resource_version()}})

    # -- list & watch with selectors -----------------------------------------------------------

    def _check_listable(self, request: kmock.Request) -> kmock.ResourceInfo | None:
        if request.resource not in self._get_resources():
            raise kmock.KubernetesResourceNotFoundError()
        return self._info(request.resource)

    def _snapshot(
        self, request: kmock.Request, *, with_deleted: bool = False
    ) -> list[tuple[dict[str, Any], bool]]:
        """``(object, deleted)`` pairs in etcd order (namespace, name), as the real server lists."""
        objects: list[tuple[dict[str, Any], bool]] = []
        for (resource, namespace, name), obj in self._objects.items():
            if resource != request.resource or (obj.deleted and not with_deleted):
                continue
            if request.namespace is not None and namespace != request.namespace:
                continue
            if request.name is not None and name != request.name:
                continue
            objects.append((copy.deepcopy(obj.last.raw), obj.deleted))
        objects.sort(
            key=lambda o: ((o[0].get("metadata") or {}).get("namespace") or "", o[0]["metadata"]["name"])
        )
        return objects

    @staticmethod
    def _selectors(request: kmock.Request) -> Callable[[Mapping[str, Any]], bool]:
        labels = parse_label_selector(request.params.get("labelSelector"))
        fields = parse_field_selector(request.params.get("fieldSelector"))
        return lambda obj: label_selector_matches(labels, obj) and field_selector_matches(fields, obj)

    async def _serve_list(self, request: kmock.Request) -> kmock.Payload:
        info = self._check_listable(request)
        try:
            matches = self._selectors(request)
        except SelectorError as err:
            raise kmock.KubernetesError(status=400, reason="BadRequest", message=str(err)) from err
        async with self.write_lock:
            items = [obj for obj, _ in self._snapshot(request) if matches(obj)]
            revision = str(self._rv)
        assert request.resource is not None
        group, version = request.resource.group, request.resource.version
        # `limit` is ignored: returning everything with no `continue` token is a valid answer.
        return {
            "kind": f"{info.kind}List" if info is not None and info.kind else "List",
            "apiVersion": f"{group}/{version}" if group else version,
            "metadata": {"resourceVersion": revision},
            "items": items,
        }

    async def _serve_watch(self, request: kmock.Request) -> AsyncIterator[kmock.Payload]:
        # Replaces kmock's watch, which subscribes to its event bus only after it has streamed the
        # initial objects: a change made in between was lost. Here the bus is marked first, the
        # snapshot taken second, and bus events already in the snapshot are skipped by version.
        self._check_listable(request)
        try:
            matches = self._selectors(request)
            since = int(request.params.get("resourceVersion") or 0)
            timeout = float(request.params.get("timeoutSeconds") or 0) or None
        except (SelectorError, ValueError) as err:
            raise kmock.KubernetesError(status=400, reason="BadRequest", message=str(err)) from err
        yield b""  # send the headers now: the client waits for them before anything happens

        assert request.resource is not None
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        resource = request.resource
        bus = self._buses[resource]
        async with self.write_lock:
            mark = await bus.mark()
            snapshot = self._snapshot(request, with_deleted=since > 0)
        events = aiter(bus.stream(since=mark))
        next_event: asyncio.Future[Any] | None = None
        try:
            seen: dict[tuple[str | None, str], int] = {}
            visible: dict[tuple[str | None, str], bool] = {}
            for obj, deleted in snapshot:
                key = (obj["metadata"].get("namespace"), obj["metadata"]["name"])
                rv = int(obj["metadata"].get("resourceVersion") or 0)
                existed = self.created_rv.get((resource, *key), 0) <= since
                if deleted:
                    # Resuming: what was deleted since `since`. (A resumed watch gets the current
                    # state of each changed object, not every intermediate event.)
                    if rv > since and existed and matches(obj):
                        yield {"type": "DELETED", "object": obj}
                    continue
                seen[key] = rv
                visible[key] = matches(obj)
                if visible[key] and rv > since:
                    yield {"type": "MODIFIED" if since and existed else "ADDED", "object": obj}

            while True:
                remaining = None if deadline is None else deadline - loop.time()
                if remaining is not None and remaining <= 0:
                    return  # timeoutSeconds: the real server ends the stream cleanly
                next_event = asyncio.ensure_future(anext(events))
                closing = asyncio.ensure_future(self.closing.wait())
                done, _ = await asyncio.wait(
                    {next_event, closing}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
                )
                closing.cancel()
                if next_event not in done:
                    return
                event, next_event = next_event.result(), None
                obj = copy.deepcopy(event.get("object") or {})
                meta = obj.get("metadata") or {}
                namespace, name = meta.get("namespace"), meta.get("name")
                if request.namespace is not None and namespace != request.namespace:
                    continue
                if request.name is not None and name != request.name:
                    continue
                key = (namespace, str(name))
                rv = int(meta.get("resourceVersion") or 0)
                if rv <= max(seen.get(key, 0), since) and event["type"] != "DELETED":
                    continue  # already in the snapshot
                seen[key] = rv
                # Selector semantics of the real watch cache: an object that starts or stops
                # matching is reported as ADDED or DELETED.
                was_visible, is_visible = visible.get(key, False), matches(obj)
                if event["type"] == "DELETED":
                    visible.pop(key, None)
                    if was_visible:
                        yield {"type": "DELETED", "object": obj}
                elif is_visible:
                    visible[key] = True
                    yield {"type": event["type"] if was_visible else "ADDED", "object": obj}
                elif was_visible:
                    visible[key] = False
                    yield {"type": "DELETED", "object": obj}
        finally:
            # Also on client disconnect (the handler task is cancelled while we wait).
            if next_event is not None and not next_event.done():
                next_event.cancel()
                with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                    await next_event
            with contextlib.suppress(Exception):
                await events.aclose()  # type: ignore[attr-defined]
            await bus.unmark(mark)

    # -- logs ------------------------------------------------------------------------------------

    async def _serve_logs(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        assert request.resource is not None and request.name is not None
        namespace, name = str(request.namespace), request.name
        pod = self._stored(request.resource, namespace, name)
        if pod is None:
            raise kmock.KubernetesError(status=404, reason="NotFound", message=f'pods "{name}" not found')
        spec = pod.get("spec") or {}
        all_containers = [c["name"] for c in (spec.get("initContainers") or []) + spec["containers"]]
        container = request.params.get("container")
        if container is None:
            if len(spec["containers"]) != 1:
                raise kmock.KubernetesError(
                    status=400,
                    reason="BadRequest",
                    message=f"a container name must be specified for pod {name}, choose one of: {all_containers}",
                )
            container = spec["containers"][0]["name"]
        if container not in all_containers:
            raise kmock.KubernetesError(
                status=400, reason="BadRequest", message=f"container {container} is not valid for pod {name}"
            )
        status = pod.get("status") or {}
        states = {
            cs["name"]: cs.get("state") or {}
            for cs in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or [])
        }
        state = states.get(container) or {}
        if "running" not in state and "terminated" not in state:
            reason = (state.get("waiting") or {}).get("reason") or "ContainerCreating"
            raise kmock.KubernetesError(
                status=400,
                reason="BadRequest",
                message=f'container "{container}" in pod "{name}" is waiting to start: {reason}',
            )

        lines = list(self.logs.get((namespace, name, container), []))
        params = request.params
        try:
            if params.get("sinceSeconds"):
                cutoff = _utcnow() - datetime.timedelta(seconds=int(params["sinceSeconds"]))
                lines = [(ts, line) for ts, line in lines if ts >= cutoff]
            elif params.get("sinceTime"):
                cutoff = _parse_rfc3339(params["sinceTime"])
                lines = [(ts, line) for ts, line in lines if ts >= cutoff]
            if params.get("tailLines"):
                tail = int(params["tailLines"])
                lines = lines[-tail:] if tail > 0 else []
            limit_bytes = int(params["limitBytes"]) if params.get("limitBytes") else None
        except ValueError as err:
            raise kmock.KubernetesError(status=400, reason="BadRequest", message=str(err)) from err
        timestamps = params.get("timestamps") in _TRUE_WORDS
        text = "".join(f"{_rfc3339_nano(ts)} {line}\n" if timestamps else f"{line}\n" for ts, line in lines)
        if limit_bytes is not None:
            text = text.encode()[:limit_bytes].decode(errors="ignore")
        # `follow=true` is answered like follow=false: everything written so far, then the stream
        # closes. KPO then re-reads the pod and follows again while the container still runs.
        return aiohttp.web.Response(text=text, content_type="text/plain")

    # -- auto-progression ------------------------------------------------------------------------

    def _rule_for(self, namespace: str, name: str) -> _AutoRule | None:
        for rule in reversed(self.rules):  # the latest rule wins, like kmock reactions
            if rule.applies_to(namespace, name):
                return rule
        return None

    def _on_pod_created(self, pod: Mapping[str, Any]) -> None:
        meta = pod.get("metadata") or {}
        rule = self._rule_for(str(meta.get("namespace")), str(meta.get("name")))
        if rule is not None:
            self.schedule(str(meta["namespace"]), str(meta["name"]), rule, at_creation=True)

    def schedule(self, namespace: str, name: str, rule: _AutoRule, *, at_creation: bool) -> None:
        assert self.driver is not None

        def start() -> None:
            self.spawn(self.driver._progress(namespace, name, rule, at_creation=at_creation))

        # An unschedulable pod is unschedulable from its creation on, whoever reads it.
        if rule.start == "first_read" and not (rule.outcome == "unschedulable" and at_creation):
            self.on_first_read[(namespace, name)] = start
        else:
            start()

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)


@functools.cache
def _bundled_resources() -> dict[kmock.resource, kmock.ResourceInfo]:
    """kmock's bundled catalogue of built-in resources, parsed once per process.

    Same data as ``resources.load_bundled()``, which warns (importlib.resources.read_binary is
    deprecated) on every call.
    """
    blob = importlib.resources.files("kmock._internal").joinpath("resources.json.gz").read_bytes()
    catalogue = kmock.ResourcesArray()
    catalogue.load_data(gzip.decompress(blob))
    return {resource: catalogue[resource] for resource in catalogue}


# --- the synchronous facade ----------------------------------------------------------------------


class K8sApi:
    """A kmock Kubernetes API server on 127.0.0.1, driven from synchronous tests.

    Use it through the ``k8s_api`` fixture (tests/integration/kubernetes/conftest.py), or
    ``with K8sApi.running(tmp_path) as api: ...``.

    :param workdir: where the kubeconfig file is written.
    :param conn_id: the Airflow connection id that :attr:`airflow_conn_env` describes.
    """

    def __init__(self, workdir: Path, *, conn_id: str = "k8s_api_emulator") -> None:
        self.airflow_conn_id = conn_id
        self.kubeconfig_path = Path(workdir) / "kubeconfig.json"
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="k8s-api-emulator", daemon=True)
        self._emulator: _Emulator | None = None
        self._server: kmock.Server | None = None
        self._api_clients: list[Any] = []

    # -- life cycle ------------------------------------------------------------------------------

    @classmethod
    @contextlib.contextmanager
    def running(cls, workdir: Path, *, conn_id: str = "k8s_api_emulator") -> Iterator[K8sApi]:
        api = cls(workdir, conn_id=conn_id)
        try:
            api.start()
            yield api
        finally:
            api.close()

    def start(self) -> None:
        self._thread.start()
        self._call(self._astart())
        self.kubeconfig_path.parent.mkdir(parents=True, exist_ok=True)
        self.kubeconfig_path.write_text(json.dumps(self.kubeconfig(), indent=2))

    async def _astart(self) -> None:
        emulator = _Emulator()
        emulator.driver = self
        # Without the resource catalogue, listing a kind that has no objects yet is a 404.
        for resource, info in _bundled_resources().items():
            emulator.resources[resource] = info
        await emulator.__aenter__()
        server = kmock.Server(emulator, server_cls=_QuickShutdownServer)
        await server.__aenter__()
        self._emulator, self._server = emulator, server
        self.url = str(server.url).rstrip("/")

    def close(self) -> None:
        """Stop the server and its loop; report handler crashes (bugs of the emulator)."""
        for api_client in self._api_clients:
            with contextlib.suppress(Exception):
                api_client.close()
        errors: list[BaseException] = []
        if self._thread.is_alive():
            try:
                errors = self._call(self._aclose())
            finally:
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._thread.join(timeout=10)
        if not self._loop.is_running():
            self._loop.close()
        if errors:
            raise AssertionError(
                "the Kubernetes emulator crashed while serving requests (a bug in k8s_api.py or kmock):\n"
                + "\n".join("".join(traceback.format_exception(error)) for error in errors)
            )

    async def _aclose(self) -> list[BaseException]:
        emulator, server = self._emulator, self._server
        if emulator is None or server is None:
            return []
        emulator.closing.set()
        for task in list(emulator.tasks):
            task.cancel()
        await asyncio.gather(*emulator.tasks, return_exceptions=True)
        unexpected = [e for e in emulator.errors if not isinstance(e, kmock.KubernetesError)]
        await server.__aexit__(None, None, None)
        await emulator.__aexit__(None, None, None)
        return unexpected

    def _call(self, coro: Coroutine[Any, Any, _T], timeout: float = 15.0) -> _T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    @property
    def _emu(self) -> _Emulator:
        assert self._emulator is not None, "the emulator is not running"
        return self._emulator

    # -- connection details ----------------------------------------------------------------------

    def kubeconfig(self) -> dict[str, Any]:
        """A kubeconfig with no credentials pointing at this server (JSON is valid YAML)."""
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "kmock", "cluster": {"server": self.url}}],
            "users": [{"name": "kmock", "user": {}}],
            "contexts": [
                {"name": "kmock", "context": {"cluster": "kmock", "user": "kmock", "namespace": "default"}}
            ],
            "current-context": "kmock",
        }

    @property
    def airflow_conn_env(self) -> tuple[str, str]:
        """``(name, value)`` of the ``AIRFLOW_CONN_*`` variable for :attr:`airflow_conn_id`.

        The extra field names are the ones ``KubernetesHook._get_field`` reads.
        """
        value = json.dumps(
            {
                "conn_type": "kubernetes",
                "extra": {
                    "kube_config_path": str(self.kubeconfig_path),
                    "namespace": "default",
                    "in_cluster": False,
                },
            }
        )
        return f"AIRFLOW_CONN_{self.airflow_conn_id.upper()}", value

    def core_v1(self) -> Any:
        """A ``kubernetes.client.CoreV1Api`` on this server that leaves the global default alone."""
        import kubernetes.client

        configuration = kubernetes.client.Configuration()
        configuration.host = self.url
        api_client = kubernetes.client.ApiClient(configuration)
        self._api_clients.append(api_client)
        return kubernetes.client.CoreV1Api(api_client)

    # -- what the client sent and what the server holds -----------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request the code under test sent, in order (the drivers' own are left out)."""
        return list(self._emu.journal)

    def created_pods(self) -> list[dict[str, Any]]:
        """The pod manifests POSTed by the code under test, exactly as sent."""
        return [
            r.body
            for r in self.requests
            if r.method == "POST" and re.fullmatch(r"/api/v1/namespaces/[^/]+/pods", r.path)
        ]

    def pods(self, namespace: str | None = "default") -> dict[str, dict[str, Any]]:
        """Current pods by name (``namespace=None``: all namespaces, keyed ``namespace/name``)."""
        return self._call(self._objects("pods", namespace, keyed_by_namespace=namespace is None))

    def pod(self, name: str, namespace: str = "default") -> dict[str, Any]:
        pods = self.pods(namespace)
        if name not in pods:
            raise KeyError(f"no pod {namespace}/{name}; pods: {sorted(pods)}")
        return pods[name]

    def events(self, namespace: str = "default") -> list[dict[str, Any]]:
        return list(self._call(self._objects("events", namespace, keyed_by_namespace=False)).values())

    async def _objects(
        self, plural: str, namespace: str | None, *, keyed_by_namespace: bool
    ) -> dict[str, dict[str, Any]]:
        resource = kmock.resource("", "v1", plural)
        async with self._emu._lock:
            items = [
                (ns, name, copy.deepcopy(obj.raw))
                for (res, ns, name), obj in self._emu.objects.items()
                if res == resource and not obj.deleted and namespace in (None, ns)
            ]
        return {(f"{ns}/{name}" if keyed_by_namespace else name): obj for ns, name, obj in items}

    def wait_for(
        self, predicate: Callable[[], _T], *, timeout: float = 5.0, interval: float = 0.02, what: str = ""
    ) -> _T:
        """Poll ``predicate`` until it returns something truthy, and return that."""
        deadline = time.monotonic() + timeout
        while True:
            result = predicate()
            if result:
                return result
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout}s waiting for {what or predicate}")
            time.sleep(interval)

    def wait_for_pod_phase(
        self, name: str, phase: str, *, namespace: str = "default", timeout: float = 5.0
    ) -> dict:
        def current() -> dict[str, Any] | None:
            pod = self.pods(namespace).get(name)
            return pod if pod and (pod.get("status") or {}).get("phase") == phase else None

        return self.wait_for(current, timeout=timeout, what=f"pod {namespace}/{name} to be {phase}")

    # -- drivers: every change goes over HTTP, so open watches see it ----------------------------

    async def _request(
        self, method: str, path: str, body: Any = None, *, content_type: str = "application/json"
    ) -> tuple[int, Any]:
        assert self._server is not None
        headers = {DRIVER_HEADER: "1", "Content-Type": content_type}
        data = None if body is None else json.dumps(body)
        async with self._server.client.request(method, path, data=data, headers=headers) as response:
            text = await response.text()
            try:
                return response.status, json.loads(text) if text else None
            except ValueError:
                return response.status, text

    async def _get_pod(self, namespace: str, name: str) -> dict[str, Any]:
        status, pod = await self._request("GET", f"/api/v1/namespaces/{namespace}/pods/{name}")
        if status == 404:
            raise _PodGone(f"pod {namespace}/{name} is not on the server")
        if status != 200:
            raise RuntimeError(f"GET pod {namespace}/{name}: {status} {pod}")
        return dict(pod)

    async def _patch_status(
        self, namespace: str, name: str, build: Callable[[dict[str, Any]], dict[str, Any]]
    ) -> dict[str, Any]:
        pod = await self._get_pod(namespace, name)
        old = pod.get("status") or {}
        new = build(pod)
        # A merge patch keeps keys it does not mention; null them so the status is exactly `new`.
        patch = {"status": {**{key: None for key in old if key not in new}, **new}}
        status, result = await self._request(
            "PATCH",
            f"/api/v1/namespaces/{namespace}/pods/{name}/status",
            patch,
            content_type="application/merge-patch+json",
        )
        if status == 404:
            raise _PodGone(f"pod {namespace}/{name} is not on the server")
        if status != 200:
            raise RuntimeError(f"PATCH pod status {namespace}/{name}: {status} {result}")
        return dict(result)

    async def _post_event(
        self,
        namespace: str,
        pod: Mapping[str, Any],
        type: str,
        reason: str,
        message: str,
        *,
        component: str = "kubelet",
        field_path: str | None = None,
        kind: str = "Pod",
    ) -> dict[str, Any]:
        meta = pod.get("metadata") or {}
        name = str(meta.get("name"))
        now = _rfc3339()
        involved: dict[str, Any] = {"kind": kind, "namespace": namespace, "name": name, "apiVersion": "v1"}
        if meta.get("uid"):
            involved["uid"] = meta["uid"]
            involved["resourceVersion"] = meta.get("resourceVersion")
        if field_path:
            involved["fieldPath"] = field_path
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            # Named like the real event recorder does (<object>.<unix nanos in hex>): they list in
            # the order they happened.
            "metadata": {"name": f"{name}.{time.time_ns():x}", "namespace": namespace},
            "involvedObject": involved,
            "type": type,
            "reason": reason,
            "message": message,
            "source": {"component": component},
            "reportingComponent": component,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        status, result = await self._request("POST", f"/api/v1/namespaces/{namespace}/events", event)
        if status != 201:
            raise RuntimeError(f"POST event: {status} {result}")
        return dict(result)

    async def _run(self, namespace: str, name: str, container: str) -> dict[str, Any]:
        pod = await self._patch_status(
            namespace, name, lambda p: _pod_status(p, "Running", container=container)
        )
        image = next((c.get("image") for c in pod["spec"]["containers"] if c["name"] == container), "")
        node = (pod.get("spec") or {}).get("nodeName") or "node"
        field_path = f"spec.containers{{{container}}}"
        await self._post_event(
            namespace,
            pod,
            "Normal",
            "Scheduled",
            f"Successfully assigned {namespace}/{name} to {node}",
            component="default-scheduler",
        )
        await self._post_event(
            namespace,
            pod,
            "Normal",
            "Pulled",
            f'Container image "{image}" already present on machine',
            field_path=field_path,
        )
        await self._post_event(
            namespace, pod, "Normal", "Created", f"Created container {container}", field_path=field_path
        )
        await self._post_event(
            namespace, pod, "Normal", "Started", f"Started container {container}", field_path=field_path
        )
        return pod

    async def _terminate(
        self, namespace: str, name: str, container: str, exit_code: int, reason: str, message: str | None
    ) -> dict[str, Any]:
        terminated: dict[str, Any] = {"exitCode": exit_code, "reason": reason}
        if message:
            terminated["message"] = message
        phase = "Succeeded" if exit_code == 0 and reason == "Completed" else "Failed"
        return await self._patch_status(
            namespace,
            name,
            lambda p: _pod_status(p, phase, container=container, container_state={"terminated": terminated}),
        )

    async def _unschedulable(self, namespace: str, name: str, message: str) -> dict[str, Any]:
        pod = await self._patch_status(namespace, name, lambda p: _unschedulable_status(p, message))
        await self._post_event(
            namespace, pod, "Warning", "FailedScheduling", message, component="default-scheduler"
        )
        return pod

    async def _image_pull_backoff(
        self, namespace: str, name: str, container: str, message: str | None
    ) -> dict:
        current = await self._get_pod(namespace, name)
        image = next((c.get("image") for c in current["spec"]["containers"] if c["name"] == container), "")
        text = message or f'Back-off pulling image "{image}"'
        pod = await self._patch_status(
            namespace,
            name,
            lambda p: _pod_status(
                p,
                "Pending",
                container=container,
                container_state={"waiting": {"reason": "ImagePullBackOff", "message": text}},
            ),
        )
        field_path = f"spec.containers{{{container}}}"
        await self._post_event(
            namespace,
            pod,
            "Warning",
            "Failed",
            f'Failed to pull image "{image}": rpc error: code = NotFound desc = failed to resolve reference "{image}": not found',
            field_path=field_path,
        )
        await self._post_event(namespace, pod, "Warning", "BackOff", text, field_path=field_path)
        return pod

    async def _evict(self, namespace: str, name: str, message: str) -> dict[str, Any]:
        pod = await self._patch_status(
            namespace,
            name,
            lambda p: _pod_status(
                p,
                "Failed",
                container=p["spec"]["containers"][0]["name"],
                reason="Evicted",
                message=message,
                disruption=("TerminationByKubelet", message),
                container_state={
                    "terminated": {
                        "exitCode": 137,
                        "reason": "ContainerStatusUnknown",
                        "message": "The container could not be located when the pod was terminated",
                    }
                },
            ),
        )
        await self._post_event(namespace, pod, "Warning", "Evicted", message)
        return pod

    async def _set_logs(self, namespace: str, name: str, container: str, text: str) -> None:
        now = _utcnow()
        self._emu.logs[(namespace, name, container)] = [(now, line) for line in text.splitlines()]

    def set_pod_phase(
        self,
        name: str,
        phase: str,
        *,
        container_state: Mapping[str, Any] | None = None,
        reason: str | None = None,
        message: str | None = None,
        namespace: str = "default",
        container: str = "base",
    ) -> dict[str, Any]:
        """Set the pod's phase with the status a kubelet would report; returns the pod.

        :param container_state: the ``state`` of ``container`` (e.g. ``{"terminated": {"exitCode":
            3}}``; timestamps are filled in); default: derived from the phase. Other containers
            always get the state derived from the phase.
        :param reason: ``status.reason`` of the pod (e.g. ``Evicted``).
        """
        if phase not in {"Pending", "Running", "Succeeded", "Failed", "Unknown"}:
            raise ValueError(f"unknown pod phase {phase!r}")
        return self._call(
            self._patch_status(
                namespace,
                name,
                lambda p: _pod_status(
                    p,
                    phase,
                    container=container,
                    container_state=container_state,
                    reason=reason,
                    message=message,
                ),
            )
        )

    def run_pod(self, name: str, *, namespace: str = "default", container: str = "base") -> dict[str, Any]:
        """Running, every container started and ready; emits Scheduled/Pulled/Created/Started events."""
        return self._call(self._run(namespace, name, container))

    def succeed_pod(
        self, name: str, exit_code: int = 0, *, namespace: str = "default", container: str = "base"
    ) -> dict[str, Any]:
        """Succeeded; ``container`` terminated with ``exit_code`` (non-zero makes the pod Failed)."""
        return self._call(
            self._terminate(
                namespace, name, container, exit_code, "Completed" if exit_code == 0 else "Error", None
            )
        )

    def fail_pod(
        self,
        name: str,
        *,
        exit_code: int = 1,
        reason: str = "Error",
        message: str | None = None,
        namespace: str = "default",
        container: str = "base",
    ) -> dict[str, Any]:
        """Failed; ``container`` terminated with ``exit_code`` and ``reason``."""
        return self._call(self._terminate(namespace, name, container, exit_code, reason, message))

    def oom_kill_pod(
        self, name: str, *, namespace: str = "default", container: str = "base"
    ) -> dict[str, Any]:
        """Failed; ``container`` terminated with reason ``OOMKilled`` and exit code 137."""
        return self.fail_pod(
            name, exit_code=137, reason="OOMKilled", namespace=namespace, container=container
        )

    def make_unschedulable(
        self, name: str, message: str = _DEFAULT_UNSCHEDULABLE, *, namespace: str = "default"
    ) -> dict[str, Any]:
        """Pending with ``PodScheduled=False`` (reason ``Unschedulable``) and a FailedScheduling event."""
        return self._call(self._unschedulable(namespace, name, message))

    def image_pull_backoff(
        self, name: str, *, namespace: str = "default", container: str = "base", message: str | None = None
    ) -> dict[str, Any]:
        """Pending; ``container`` waiting with reason ``ImagePullBackOff``; Failed/BackOff events."""
        return self._call(self._image_pull_backoff(namespace, name, container, message))

    def evict_pod(
        self,
        name: str,
        *,
        namespace: str = "default",
        message: str = "The node was low on resource: memory. Threshold quantity: 100Mi, available: 42Mi.",
    ) -> dict[str, Any]:
        """Failed with reason ``Evicted``, a ``DisruptionTarget`` condition and an Evicted event."""
        return self._call(self._evict(namespace, name, message))

    def set_logs(self, name: str, text: str, container: str = "base", *, namespace: str = "default") -> None:
        """What ``container`` has written so far (replaces earlier text; lines stamped now)."""
        self._call(self._set_logs(namespace, name, container, text))

    def add_event(
        self,
        name: str,
        type: str,
        reason: str,
        message: str,
        *,
        namespace: str = "default",
        kind: str = "Pod",
    ) -> dict[str, Any]:
        """Create an event about object ``name`` (over HTTP); returns the stored event."""

        async def post() -> dict[str, Any]:
            involved: Mapping[str, Any] = {"metadata": {"name": name}}
            if kind == "Pod":
                with contextlib.suppress(_PodGone):
                    involved = await self._get_pod(namespace, name)
            return await self._post_event(namespace, involved, type, reason, message, kind=kind)

        return self._call(post())

    def add_node(
        self,
        name: str,
        *,
        gpus: int = 8,
        gpu_resource: str = "nvidia.com/gpu",
        labels: Mapping[str, str] | None = None,
        taints: list[Mapping[str, Any]] | None = None,
        cpu: str = "64",
        memory: str = "512Gi",
    ) -> dict[str, Any]:
        """Create a Ready node with ``status.capacity`` and ``status.allocatable``; returns it."""
        resources = {"cpu": cpu, "memory": memory, "pods": "110", "ephemeral-storage": "1Ti"}
        if gpus:
            resources[gpu_resource] = str(gpus)
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "labels": {
                    "kubernetes.io/hostname": name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    **(labels or {}),
                },
            },
            "spec": {"taints": list(taints)} if taints else {},
            # Nodes are the one kind whose status the API server accepts on create.
            "status": {
                "capacity": dict(resources),
                "allocatable": dict(resources),
                "conditions": [
                    {
                        "type": type_,
                        "status": status,
                        "reason": reason,
                        "lastHeartbeatTime": _rfc3339(),
                        "lastTransitionTime": _rfc3339(),
                    }
                    for type_, status, reason in [
                        ("MemoryPressure", "False", "KubeletHasSufficientMemory"),
                        ("DiskPressure", "False", "KubeletHasNoDiskPressure"),
                        ("PIDPressure", "False", "KubeletHasSufficientPID"),
                        ("Ready", "True", "KubeletReady"),
                    ]
                ],
                "addresses": [
                    {"type": "InternalIP", "address": "10.0.0.10"},
                    {"type": "Hostname", "address": name},
                ],
                # Every field here is required by the client's V1NodeSystemInfo model.
                "nodeInfo": {
                    "architecture": "amd64",
                    "bootID": str(uuid.uuid4()),
                    "containerRuntimeVersion": "containerd://1.7.20",
                    "kernelVersion": "6.8.0-45-generic",
                    "kubeProxyVersion": "v1.30.4",
                    "kubeletVersion": "v1.30.4",
                    "machineID": uuid.uuid4().hex,
                    "operatingSystem": "linux",
                    "osImage": "Ubuntu 22.04.4 LTS",
                    "systemUUID": str(uuid.uuid4()),
                },
            },
        }

        async def post() -> dict[str, Any]:
            status, result = await self._request("POST", "/api/v1/nodes", node)
            if status != 201:
                raise RuntimeError(f"POST node: {status} {result}")
            return dict(result)

        return self._call(post())

    def add_resource_quota(
        self,
        name: str,
        hard: Mapping[str, str],
        used: Mapping[str, str],
        namespace: str = "default",
    ) -> dict[str, Any]:
        """Create a ResourceQuota, then set ``status.hard``/``status.used`` as the quota controller does."""

        async def post() -> dict[str, Any]:
            quota = {
                "apiVersion": "v1",
                "kind": "ResourceQuota",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {"hard": dict(hard)},
            }
            status, result = await self._request(
                "POST", f"/api/v1/namespaces/{namespace}/resourcequotas", quota
            )
            if status != 201:
                raise RuntimeError(f"POST resourcequota: {status} {result}")
            status, result = await self._request(
                "PATCH",
                f"/api/v1/namespaces/{namespace}/resourcequotas/{name}/status",
                {"status": {"hard": dict(hard), "used": dict(used)}},
                content_type="application/merge-patch+json",
            )
            if status != 200:
                raise RuntimeError(f"PATCH resourcequota status: {status} {result}")
            return dict(result)

        return self._call(post())

    # -- automatic progression -------------------------------------------------------------------

    def auto_complete(
        self,
        name_prefix: str = "",
        *,
        outcome: Outcome = "succeeded",
        after: float = 0.2,
        logs: str | None = None,
        exit_code: int | None = None,
        namespace: str | None = None,
        start: Literal["now", "first_read"] = "now",
    ) -> None:
        """Make pods whose name starts with ``name_prefix`` progress on their own.

        Applies to pods created from now on and to matching pods that exist and are not finished.
        The latest matching rule wins. Every ``after`` seconds the pod takes one step (a pod that
        is already running skips the step to Running):

        - ``succeeded`` / ``failed`` / ``oom`` / ``evicted``: Pending -> Running -> that end
          (``failed`` exits with ``exit_code``, default 1);
        - ``never``: Pending -> Running, and it stays running;
        - ``unschedulable``: created unschedulable (``PodScheduled=False``), never runs;
        - ``image_pull``: Pending, then its ``base`` container waits in ``ImagePullBackOff``.

        :param logs: what the ``base`` container writes, set when it starts running.
        :param start: ``now`` (on creation, or at once for existing pods) or ``first_read``: when
            the code under test first GETs the pod by name. Use ``first_read`` for a pod created
            before the code under test runs (reattach tests), whose start time is unknown.
        """
        if outcome not in _OUTCOMES:
            raise ValueError(f"unknown outcome {outcome!r}; choose one of {sorted(_OUTCOMES)}")
        rule = _AutoRule(name_prefix, namespace, outcome, after, logs, exit_code, start)

        async def register() -> None:
            self._emu.rules.append(rule)
            for key, pod in (await self._objects("pods", namespace, keyed_by_namespace=True)).items():
                ns, name = key.split("/", 1)
                phase = (pod.get("status") or {}).get("phase")
                if rule.applies_to(ns, name) and phase not in ("Succeeded", "Failed"):
                    self._emu.schedule(ns, name, rule, at_creation=False)

        self._call(register())

    async def _progress(self, namespace: str, name: str, rule: _AutoRule, *, at_creation: bool) -> None:
        container = "base"
        try:
            if rule.outcome == "unschedulable":
                if at_creation:  # the status was set on create; the scheduler reports why
                    pod = await self._get_pod(namespace, name)
                    await self._post_event(
                        namespace,
                        pod,
                        "Warning",
                        "FailedScheduling",
                        _DEFAULT_UNSCHEDULABLE,
                        component="default-scheduler",
                    )
                else:
                    await self._unschedulable(namespace, name, _DEFAULT_UNSCHEDULABLE)
                return
            await asyncio.sleep(rule.after)
            pod = await self._get_pod(namespace, name)
            names = [c["name"] for c in pod["spec"]["containers"]]
            container = container if container in names else names[0]
            if rule.outcome == "image_pull":
                await self._image_pull_backoff(namespace, name, container, None)
                return
            if rule.logs is not None:
                await self._set_logs(namespace, name, container, rule.logs)
            if (pod.get("status") or {}).get("phase") != "Running":
                await self._run(namespace, name, container)
            if rule.outcome == "never":
                return
            await asyncio.sleep(rule.after)
            match rule.outcome:
                case "succeeded":
                    await self._terminate(namespace, name, container, 0, "Completed", None)
                case "failed":
                    await self._terminate(namespace, name, container, rule.exit_code or 1, "Error", None)
                case "oom":
                    await self._terminate(namespace, name, container, 137, "OOMKilled", None)
                case "evicted":
                    await self._evict(
                        namespace,
                        name,
                        "The node was low on resource: memory. Threshold quantity: 100Mi, available: 42Mi.",
                    )
        except _PodGone:
            return  # deleted while progressing: nothing left to drive
