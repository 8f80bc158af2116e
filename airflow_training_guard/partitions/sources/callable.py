"""Anything else: :class:`CallableSource`, a function that says which expected keys are there."""

from __future__ import annotations

import asyncio
import importlib
import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import KW_ONLY, InitVar, dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_training_guard.exceptions import GuardConfigError
from airflow_training_guard.partitions.completeness import PartitionObservation, PartitionStatus
from airflow_training_guard.partitions.registry import register_kind
from airflow_training_guard.partitions.sources.base import PartitionSource, non_negative_int

if TYPE_CHECKING:
    from airflow_training_guard.partitions.expected import ExpectedPartitions

CheckCallable = Callable[[tuple[str, ...]], Any]


@register_kind("callable")
@dataclass(frozen=True)
class CallableSource(PartitionSource):
    """Anything else: a function that receives the expected keys and says which are there.

    The function gets the tuple of expected keys and returns either an iterable of the keys that
    are present, or a mapping ``{partition_key: value}`` where the value is ``True``/``False``, a
    count (present when ``>= min_count``), or a
    :class:`~airflow_training_guard.partitions.completeness.PartitionObservation`. ``async``
    functions are awaited.

    :param check: the function, or its import path (``"my_pkg.checks.hours_in_kafka"``). A
        deferrable sensor needs a function the triggerer can import: defined at module level in a
        package, not in the DAG file.
    :param min_count: the least count for a partition to be present, when counts are returned.
    """

    # An InitVar, not a field: an attribute ``check`` would hide the method check().
    check: InitVar[CheckCallable | str]
    _: KW_ONLY
    min_count: int = 1
    #: The function ``check`` names; sources are equal when they call the same function.
    function: CheckCallable = field(init=False, repr=False)
    #: Where the triggerer imports ``function`` from, or None when it cannot (a lambda).
    import_path: str | None = field(init=False, repr=False, compare=False)

    def __post_init__(self, check: CheckCallable | str) -> None:
        import_path: str | None
        if isinstance(check, str):
            function, import_path = _import_callable(check), check
        elif callable(check):
            function, import_path = check, _import_path(check)
        else:
            raise GuardConfigError(
                f"check {check!r} must be a function (keys) -> present keys, or its import path "
                "'package.module.function'"
            )
        non_negative_int(self.min_count, name="min_count")
        object.__setattr__(self, "function", function)
        object.__setattr__(self, "import_path", import_path)

    @property
    def name(self) -> str:
        return self.import_path or str(getattr(self.function, "__qualname__", repr(self.function)))

    def require_importable(self) -> None:
        """Raise unless the triggerer can import the function (deferrable mode)."""
        if self.import_path is None:
            raise GuardConfigError(
                f"check {self.name!r} cannot be imported by the triggerer (lambdas, nested functions and "
                "functions defined in DAG files cannot); define it at module level in a package on the "
                "triggerer's PYTHONPATH and pass it (or its import path), or use deferrable=False"
            )

    def serialize(self) -> dict[str, Any]:
        """``check`` as the function's import path: the triggerer imports it from there."""
        data = super().serialize()  # kind, min_count
        return {"kind": data.pop("kind"), "check": self.name, **data}

    def __repr__(self) -> str:
        return f"CallableSource(check={self.name!r}, min_count={self.min_count!r})"

    def describe(self) -> str:
        return f"callable {self.name}: present = reported present (count >= {self.min_count})"

    def store_key(self) -> str:
        return f"{self.kind}:{self.name}"

    def observe(self, expected: ExpectedPartitions) -> Mapping[str, PartitionObservation]:
        answer = self.function(expected.keys())
        if inspect.isawaitable(answer):
            answer = asyncio.run(_await(answer))
        return self._interpret(answer, expected)

    async def observe_async(self, expected: ExpectedPartitions) -> Mapping[str, PartitionObservation]:
        if inspect.iscoroutinefunction(self.function):
            return self._interpret(await self.function(expected.keys()), expected)
        return await super().observe_async(expected)

    def _interpret(self, answer: Any, expected: ExpectedPartitions) -> dict[str, PartitionObservation]:
        def key_of(value: Any) -> str:
            return expected.match_key(value) or str(value)

        if isinstance(answer, Mapping):
            found: dict[str, PartitionObservation] = {}
            for key, value in answer.items():
                found.setdefault(key_of(key), self._verdict(value, key))
            return found
        if isinstance(answer, Iterable) and not isinstance(answer, str | bytes):
            return {key_of(key): PartitionObservation(PartitionStatus.PRESENT) for key in answer}
        raise GuardConfigError(
            f"check {self.name!r} returned {type(answer).__name__} {answer!r:.80}; return the present keys "
            "(a list or set) or a mapping {partition_key: True/False/count}"
        )

    def _verdict(self, value: Any, key: Any) -> PartitionObservation:
        if isinstance(value, PartitionObservation):
            return value
        if value is None or value is True:
            return PartitionObservation(PartitionStatus.PRESENT)
        if value is False:
            return PartitionObservation(PartitionStatus.MISSING, reason=f"reported absent by {self.name}")
        if isinstance(value, int):
            if value < self.min_count:
                return PartitionObservation(
                    PartitionStatus.TOO_SMALL, reason=f"count below min_count={self.min_count}", rows=value
                )
            return PartitionObservation(PartitionStatus.PRESENT, rows=value)
        raise GuardConfigError(
            f"check {self.name!r} returned {value!r} for partition {key!r}; use True/False, a count or a "
            "PartitionObservation"
        )


async def _await(awaitable: Any) -> Any:
    return await awaitable


def _import_path(function: Callable[..., Any]) -> str | None:
    module = getattr(function, "__module__", None)
    qualname = getattr(function, "__qualname__", None)
    if not module or not qualname or "<" in qualname or module == "__main__":
        return None
    if module.startswith("unusual_prefix_"):  # how Airflow names modules loaded from DAG files
        return None
    path = f"{module}.{qualname}"
    try:
        return path if _import_callable(path) is function else None
    except GuardConfigError:
        return None


def _import_callable(path: str) -> CheckCallable:
    text = path.replace(":", ".")
    parts = text.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            target: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for attribute in parts[cut:]:
                target = getattr(target, attribute)
        except AttributeError:
            break
        if callable(target):
            return target  # type: ignore[no-any-return]
        break
    raise GuardConfigError(
        f"check {path!r} is not an importable function; use 'package.module.function' (or "
        "'package.module:function') of a module on the PYTHONPATH"
    )
