"""One value, one safe path segment: how every room turns a key or an id into a directory name.

Checkpoint directories (:mod:`~airflow_training_guard.policies.checkpoints`), the partition
ledger's version and staging directories (:mod:`~airflow_training_guard.partitions.ledger`) and the
local launcher's default checkpoint directory all encode values the same way, so a partition key
such as ``../../etc`` or ``berlin/2026-11-01`` never escapes its root or splits into nested
directories, and two different values never share a directory.

Pure Python, no Airflow import.
"""

from __future__ import annotations

import string

from airflow_training_guard.exceptions import GuardConfigError

#: Longest path segment (bytes) common file systems accept (ext4, xfs, APFS: 255).
MAX_SEGMENT_LENGTH = 255
#: Characters kept as they are in a path segment; everything else is percent-encoded.
_SAFE = frozenset(string.ascii_letters + string.digits + "._-")
#: Encodings of values that would otherwise be special path segments. '%2E' can never be produced
#: by the regular encoding (``.`` is a safe character), and '%EMPTY' is no valid ``%XX`` escape.
_SPECIAL = {"": "%EMPTY", ".": "%2E", "..": "%2E%2E"}


def path_segment(value: str) -> str:
    """Make ``value`` safe to use as exactly one path segment, injectively.

    Every character outside ``[A-Za-z0-9._-]`` is percent-encoded as its UTF-8 bytes (``%`` itself
    too), so ``berlin|2026-11-01`` becomes ``berlin%7C2026-11-01`` and ``a/b`` becomes ``a%2Fb``.
    ``"."``, ``".."`` and ``""`` are encoded as ``%2E``, ``%2E%2E`` and ``%EMPTY`` so they can
    never refer to the current or parent directory. Because the encoding is reversible, two
    different values never give the same segment.

    :param value: the text to encode, e.g. a partition key.
    :raises GuardConfigError: when ``value`` is not a string, or its encoding is longer than
        :data:`MAX_SEGMENT_LENGTH` characters (the file system would refuse it).
    """
    if not isinstance(value, str):
        raise GuardConfigError(
            f"path segment value {value!r} is a {type(value).__name__}, not a str; convert it with str()"
        )
    encoded = _SPECIAL.get(value)
    if encoded is None:
        encoded = "".join(
            char
            if char in _SAFE
            else "".join(f"%{byte:02X}" for byte in char.encode("utf-8", "surrogatepass"))
            for char in value
        )
    if len(encoded) > MAX_SEGMENT_LENGTH:
        shown = value if len(value) <= 60 else value[:60] + "..."
        raise GuardConfigError(
            f"value {shown!r} ({len(value)} characters) encodes to a {len(encoded)}-character path "
            f"segment; file systems accept at most {MAX_SEGMENT_LENGTH}. Use a shorter value (ASCII "
            "letters, digits, '.', '_' and '-' take one character each, others up to 12)"
        )
    return encoded
