"""One registry of kinds: the name a serialized expected set or partition source carries.

Expected sets and partition sources travel as plain dicts (trigger kwargs, XCom, the rendered
fields in the UI) with a ``"kind"`` naming their class: ``{"kind": "hours_of_day", ...}``,
``{"kind": "object_storage", ...}``. Both families register here, so a kind names one class in the
whole package and adding a set or a source is one line above its class::

    @register_kind("object_storage")
    @dataclass(frozen=True)
    class ObjectStorageSource(PartitionSource): ...

Standard library only: importing it imports neither Airflow nor the rest of the package.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from airflow_training_guard.exceptions import GuardConfigError

_Class = TypeVar("_Class", bound=type)

_KIND = re.compile(r"^[a-z][a-z0-9_]*$")
_KINDS: dict[str, type] = {}


def register_kind(kind: str) -> Callable[[_Class], _Class]:
    """Register a class under ``kind`` and set its ``kind`` attribute (a class decorator).

    :raises GuardConfigError: when ``kind`` is not a lower-case name, or another class holds it.
    """
    if not isinstance(kind, str) or not _KIND.match(kind):
        raise GuardConfigError(f"kind {kind!r} must be a lower-case name such as 'object_storage'")

    def register(cls: _Class) -> _Class:
        holder = _KINDS.get(kind)
        # The same class registering again is a module reloaded (importlib.reload, test runners).
        if holder is not None and _qualified(holder) != _qualified(cls):
            raise GuardConfigError(
                f"kind {kind!r} of {_qualified(cls)} is already the kind of {_qualified(holder)}; "
                "every expected set and partition source needs its own kind"
            )
        target: Any = cls
        target.kind = kind
        _KINDS[kind] = cls
        return cls

    return register


def known_kinds(family: type) -> tuple[str, ...]:
    """The registered kinds of ``family`` (``ExpectedPartitions`` or ``PartitionSource``), sorted."""
    return tuple(sorted(kind for kind, cls in _KINDS.items() if issubclass(cls, family)))


def class_of(data: Mapping[str, Any], family: type[Any], what: str) -> type[Any]:
    """The class of ``family`` that ``data["kind"]`` names.

    :param what: the family in words for the error, e.g. ``"an expected set"``.
    :raises GuardConfigError: naming the value and the known kinds of ``family`` when the kind is
        missing, unknown, or the kind of another family.
    """
    kind = data.get("kind") if isinstance(data, Mapping) else None
    cls = _KINDS.get(kind) if isinstance(kind, str) else None
    if cls is not None and issubclass(cls, family):
        return cls
    other = f" (the kind of {cls.__name__}, not of {what})" if cls is not None else ""
    # Field names only: a value (a SQL source's hook_params, say) may hold a credential.
    fields = sorted(str(name) for name in data) if isinstance(data, Mapping) else type(data).__name__
    raise GuardConfigError(
        f"cannot rebuild {what} from fields {fields}: unknown kind {kind!r}{other}; known kinds: "
        f"{', '.join(known_kinds(family))}"
    )


def _qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"
