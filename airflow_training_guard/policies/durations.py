"""Parse and format the durations users write in DAGs: ``"90s"``, ``"1h30m"``, ``"PT2H"``, seconds.

Every time limit of the package (expected runtime, deadline, startup timeout, stall detection) goes
through :func:`parse_duration`, so one set of formats works everywhere and a typo fails when the DAG
is parsed, with a message naming the parameter, instead of becoming a surprise limit at 3 a.m.
:func:`format_duration` writes the compact form back (``"2h36m"``) for logs and error messages;
``parse_duration(format_duration(d)) == d`` for every positive duration.

Standard library only: this module is imported by DAG files and by training containers.
"""

from __future__ import annotations

import math
import re
from datetime import timedelta
from decimal import Decimal, InvalidOperation

from airflow_training_guard.exceptions import GuardConfigError

#: What every duration parameter accepts.
DurationLike = timedelta | int | float | str

_EXAMPLES = (
    "valid forms: a timedelta, a number of seconds (90), or a string like '90s', '15m', '2h', "
    "'1h30m', '1.5h', '1d', '500ms' or ISO-8601 'PT2H30M' / 'P1D'"
)

_MICROS_PER_UNIT: dict[str, int] = {
    "us": 1,
    "ms": 1_000,
    "s": 1_000_000,
    "m": 60_000_000,
    "h": 3_600_000_000,
    "d": 86_400_000_000,
    "w": 604_800_000_000,
}

#: Spellings accepted in compact strings (compared lower-case), mapped to a canonical unit.
_UNIT_ALIASES: dict[str, str] = {
    "us": "us",
    "ms": "ms",
    "millisecond": "ms",
    "milliseconds": "ms",
    "s": "s",
    "sec": "s",
    "secs": "s",
    "second": "s",
    "seconds": "s",
    "m": "m",
    "min": "m",
    "mins": "m",
    "minute": "m",
    "minutes": "m",
    "h": "h",
    "hr": "h",
    "hrs": "h",
    "hour": "h",
    "hours": "h",
    "d": "d",
    "day": "d",
    "days": "d",
    "w": "w",
    "week": "w",
    "weeks": "w",
}

_NUMBER = r"\d+(?:\.\d*)?|\.\d+"
_COMPACT_PART = re.compile(rf"\s*({_NUMBER})\s*([a-z]+)\s*")
_BARE_NUMBER = re.compile(rf"^[+-]?(?:{_NUMBER})$")
_ISO_NUMBER = r"\d+(?:[.,]\d+)?"
_ISO = re.compile(
    rf"^P(?:(?P<w>{_ISO_NUMBER})W)?(?:(?P<d>{_ISO_NUMBER})D)?"
    rf"(?:T(?:(?P<h>{_ISO_NUMBER})H)?(?:(?P<m>{_ISO_NUMBER})M)?(?:(?P<s>{_ISO_NUMBER})S)?)?$"
)


def parse_duration(value: DurationLike, *, name: str) -> timedelta:
    """Turn a user-supplied duration into a positive :class:`~datetime.timedelta`.

    Why strict: a limit that silently parses to something else (``"2hr"`` read as 2 seconds,
    ``"-1h"`` or ``0`` meaning "no limit") only shows up when a job is killed or hangs in
    production. Everything that is not clearly a positive duration is rejected here.

    :param value: a ``timedelta``; an ``int`` or ``float`` number of seconds; a compact string made
        of ``<number><unit>`` parts (units ``ms``, ``s``, ``m``, ``h``, ``d``, ``w`` and their long
        spellings, e.g. ``"90s"``, ``"1h30m"``, ``"1.5h"``, ``"500ms"``); or an ISO-8601 duration
        with weeks, days, hours, minutes and seconds (``"PT2H30M"``, ``"P1D"``).
    :param name: the parameter's name, used in error messages (``"expected_runtime"``).
    :returns: the duration, rounded to whole microseconds.
    :raises GuardConfigError: for booleans, empty strings, unknown units, bare number strings,
        years or months (no fixed length), zero, negative, NaN, infinite or out-of-range values.
    """
    if isinstance(value, bool):
        raise GuardConfigError(f"{name} {value!r} is a boolean, not a duration; {_EXAMPLES}")
    if isinstance(value, timedelta):
        result = value
    elif isinstance(value, int | float):
        result = _from_seconds(value, name=name)
    elif isinstance(value, str):
        result = _from_string(value, name=name)
    else:
        raise GuardConfigError(f"{name} {value!r} ({type(value).__name__}) is not a duration; {_EXAMPLES}")
    return _positive(result, value, name=name)


def format_duration(value: timedelta) -> str:
    """Write ``value`` in the compact form :func:`parse_duration` reads back, for logs and messages.

    Zero components are left out and larger units come first: ``2h36m``, ``45s``, ``1d2h``,
    ``1h5s``. Fractions of a second show as decimal seconds (``1.5s``) or, below one second, as
    milliseconds when exact (``500ms``). ``0s`` for zero; a negative value gets a leading ``-``.

    :param value: the duration to format.
    """
    micros = (value.days * 86_400 + value.seconds) * 1_000_000 + value.microseconds
    if micros == 0:
        return "0s"
    if micros < 0:
        return "-" + format_duration(-value)
    if micros < 1_000_000 and micros % 1_000 == 0:
        return f"{micros // 1_000}ms"
    days, rest = divmod(micros, 86_400_000_000)
    hours, rest = divmod(rest, 3_600_000_000)
    minutes, rest = divmod(rest, 60_000_000)
    seconds, fraction = divmod(rest, 1_000_000)
    parts = [f"{days}d" if days else "", f"{hours}h" if hours else "", f"{minutes}m" if minutes else ""]
    if fraction:
        parts.append(f"{seconds}.{fraction:06d}".rstrip("0") + "s")
    elif seconds:
        parts.append(f"{seconds}s")
    return "".join(parts)


def _from_seconds(value: float, *, name: str) -> timedelta:
    if isinstance(value, float) and not math.isfinite(value):
        raise GuardConfigError(
            f"{name} {value!r} is not a finite number of seconds; {_EXAMPLES}. To disable a limit, "
            "use the parameter's documented way (e.g. None), not infinity"
        )
    try:
        return timedelta(seconds=value)
    except OverflowError:
        raise GuardConfigError(
            f"{name} {value!r} seconds is too large for a duration (the maximum is about 2.7 million "
            f"years); {_EXAMPLES}"
        ) from None


def _from_string(raw: str, *, name: str) -> timedelta:
    text = raw.strip()
    if not text:
        raise GuardConfigError(f"{name} {raw!r} is empty; {_EXAMPLES}")
    if text.startswith("-"):
        raise GuardConfigError(f"{name} {raw!r} is negative; durations must be positive; {_EXAMPLES}")
    if _BARE_NUMBER.match(text):
        raise GuardConfigError(
            f"{name} {raw!r} has no unit, so it is ambiguous; write {text + 's'!r} for seconds or "
            f"{text + 'm'!r} for minutes, or pass the number itself (seconds); {_EXAMPLES}"
        )
    if text[0] in "Pp":
        return _from_iso(text.upper(), raw, name=name)
    return _from_compact(text.lower(), raw, name=name)


def _from_compact(text: str, raw: str, *, name: str) -> timedelta:
    total = Decimal(0)
    seen: set[str] = set()
    position = 0
    while position < len(text):
        match = _COMPACT_PART.match(text, position)
        if match is None:
            raise GuardConfigError(f"{name} {raw!r} is not a duration; {_EXAMPLES}")
        number, unit_text = match.groups()
        unit = _UNIT_ALIASES.get(unit_text)
        if unit is None:
            raise GuardConfigError(
                f"{name} {raw!r} has an unknown unit {unit_text!r}; use ms, s, m, h, d or w "
                f"(months and years have no fixed length); {_EXAMPLES}"
            )
        if unit in seen:
            raise GuardConfigError(
                f"{name} {raw!r} gives the unit {unit_text!r} twice, which is likely a typo; write each "
                f"unit once, e.g. '1h30m'; {_EXAMPLES}"
            )
        seen.add(unit)
        total += Decimal(number) * _MICROS_PER_UNIT[unit]
        position = match.end()
    return _from_micros(total, raw, name=name)


def _from_iso(text: str, raw: str, *, name: str) -> timedelta:
    match = _ISO.match(text)
    if match is None or text == "P" or text.endswith("T"):
        if re.search(r"\d[YM]", text.split("T")[0]):
            raise GuardConfigError(
                f"{name} {raw!r} uses years or months, which have no fixed length; use days, e.g. "
                f"'P30D'; {_EXAMPLES}"
            )
        raise GuardConfigError(f"{name} {raw!r} is not a valid ISO-8601 duration; {_EXAMPLES}")
    total = Decimal(0)
    for unit, number in match.groupdict().items():
        if number is not None:
            total += Decimal(number.replace(",", ".")) * _MICROS_PER_UNIT[unit]
    return _from_micros(total, raw, name=name)


def _from_micros(total: Decimal, raw: str, *, name: str) -> timedelta:
    try:
        micros = int(total.to_integral_value())
        return timedelta(microseconds=micros)
    except (OverflowError, InvalidOperation):
        raise GuardConfigError(
            f"{name} {raw!r} is too large for a duration (the maximum is about 2.7 million years); "
            f"{_EXAMPLES}"
        ) from None


def _positive(result: timedelta, original: object, *, name: str) -> timedelta:
    if result < timedelta(0):
        raise GuardConfigError(f"{name} {original!r} is negative; durations must be positive; {_EXAMPLES}")
    if result == timedelta(0):
        raise GuardConfigError(
            f"{name} {original!r} is zero (or shorter than one microsecond); give a positive duration; "
            f"{_EXAMPLES}"
        )
    return result
