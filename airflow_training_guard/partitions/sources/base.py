"""What every partition source shares: the interface, the worker pool, serialization by ``kind``.

A source is a frozen dataclass registered under its kind::

    @register_kind("sql")
    @dataclass(frozen=True)
    class SqlSource(PartitionSource):
        conn_id: str
        sql: str
        _: KW_ONLY
        min_rows: int = 1

Its fields (those ``__init__`` takes) are its configuration, listed once: :meth:`serialize` writes
them as the trigger's kwargs, :meth:`deserialize` passes them back to ``__init__``, and the
dataclass compares, hashes and prints them. ``__post_init__`` validates; caches are fields with
``init=False, compare=False, repr=False``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import re
import threading
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from airflow_training_guard.exceptions import GuardConfigError
from airflow_training_guard.partitions.completeness import CompletenessResult, PartitionObservation
from airflow_training_guard.partitions.registry import class_of

if TYPE_CHECKING:
    from airflow_training_guard.partitions.expected import ExpectedPartitions, Renderer


class GuardSecurityWarning(UserWarning):
    """A configuration that works but opens a security hole (SQL built from run conf or params)."""


#: A Jinja expression, statement or comment.
JINJA = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.DOTALL)


@dataclass(frozen=True)
class PartitionSource(ABC):
    """Looks at storage once and says, per expected partition, what it found.

    Subclasses are frozen dataclasses registered with
    :func:`~airflow_training_guard.partitions.registry.register_kind`; they implement
    :meth:`observe` and :meth:`describe`, the rest is derived. Sources are values: equal when
    their configuration is.
    """

    #: The name :meth:`serialize` writes and :meth:`deserialize` reads, set by ``register_kind``.
    kind: ClassVar[str]

    @abstractmethod
    def observe(self, expected: ExpectedPartitions) -> Mapping[str, PartitionObservation]:
        """What is there for each expected key (keys left out are missing). Blocking."""

    @abstractmethod
    def describe(self) -> str:
        """One line for logs: what is looked at, and what counts as present."""

    async def observe_async(self, expected: ExpectedPartitions) -> Mapping[str, PartitionObservation]:
        """:meth:`observe` for an event loop, in the package's bounded worker pool.

        Not the loop's default pool: that one is shared by every trigger of the triggerer, and
        thousands of completeness checks in it stretched every trigger's interval (issue 17). At
        most :data:`CHECKS_PER_STORE` checks of one store run at once, so a slow store holds at
        most that many of the :data:`CHECK_THREADS` threads and cannot starve the others.
        """
        async with _store_slot(self.store_key()):
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(_check_executor(), self.observe, expected)

    def store_key(self) -> str:
        """Which store a check talks to; checks of one store share :data:`CHECKS_PER_STORE` slots."""
        return self.kind

    def check(self, expected: ExpectedPartitions) -> CompletenessResult:
        """One complete look at the expected set (the sensor's poke)."""
        return CompletenessResult.evaluate(expected.keys(), _aligned(expected, self.observe(expected)))

    async def check_async(self, expected: ExpectedPartitions) -> CompletenessResult:
        """The same look from an event loop (the trigger's run)."""
        observed = await self.observe_async(expected)
        return CompletenessResult.evaluate(expected.keys(), _aligned(expected, observed))

    def validate(self, expected: ExpectedPartitions) -> None:  # noqa: B027 - optional hook, no-op by default
        """Check the source against the expected set when the DAG is parsed; raise GuardConfigError."""

    def render(self, renderer: Renderer) -> PartitionSource:
        """Return this source with its Jinja templates rendered."""
        return self

    def parse_time_warnings(self) -> list[str]:
        """Configurations that work but are dangerous; the sensor logs and warns them at parse time."""
        return []

    def serialize(self) -> dict[str, Any]:
        """A JSON-compatible dict :meth:`deserialize` rebuilds the source from (trigger kwargs).

        ``{"kind": ..., <every __init__ field>: value}``; dicts and lists are copied, so the
        trigger's kwargs never share a container with the source.
        """
        return {
            "kind": self.kind,
            **{
                field.name: _plain(getattr(self, field.name))
                for field in dataclasses.fields(self)
                if field.init
            },
        }

    @staticmethod
    def deserialize(data: dict[str, Any]) -> PartitionSource:
        """Rebuild a source from :meth:`serialize` output.

        :raises GuardConfigError: naming the value and the known kinds when the kind is unknown.
        """
        cls = class_of(data, PartitionSource, "a partition source")
        return cls(**{k: v for k, v in data.items() if k != "kind"})  # type: ignore[no-any-return]


def _plain(value: Any) -> Any:
    """A shallow copy of a dict or list (a tuple becomes a list, as JSON has no tuples)."""
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, list | tuple):
        return list(value)
    return value


#: Threads of the pool every asynchronous check runs its blocking storage calls in.
CHECK_THREADS = 4
#: Checks of one store (one bucket, database connection or function) running at the same time.
CHECKS_PER_STORE = 2

_executor_lock = threading.Lock()
_executor: concurrent.futures.ThreadPoolExecutor | None = None
_store_slots: dict[tuple[int, str], asyncio.Semaphore] = {}


def _check_executor() -> concurrent.futures.ThreadPoolExecutor:
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=CHECK_THREADS, thread_name_prefix="training-guard-check"
            )
        return _executor


def _store_slot(store: str) -> asyncio.Semaphore:
    loop_id = id(asyncio.get_running_loop())
    key = (loop_id, store)
    slot = _store_slots.get(key)
    if slot is None:
        if len(_store_slots) > 10_000:  # loops of finished test runs: never let the table grow
            _store_slots.clear()
        slot = _store_slots[key] = asyncio.Semaphore(CHECKS_PER_STORE)
    return slot


def _aligned(
    expected: ExpectedPartitions, observed: Mapping[Any, PartitionObservation]
) -> Mapping[str, PartitionObservation]:
    """``observed`` keyed by the expected keys they name (see :meth:`ExpectedPartitions.match_key`)."""
    if all(isinstance(key, str) and key in expected for key in observed):
        return observed  # the common case: the source already wrote the expected keys
    aligned: dict[str, PartitionObservation] = {}
    for key, seen in observed.items():
        aligned.setdefault(expected.match_key(key) or str(key), seen)
    return aligned


def non_negative_int(value: object, *, name: str) -> int:
    """``value`` when it is a whole number >= 0 (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise GuardConfigError(f"{name} {value!r} must be a whole number >= 0")
    return value
