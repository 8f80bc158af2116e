"""Parse and format the durations users write in DAGs: ``"90s"``, ``"1h30m"``, ``"PT2H"``, seconds.

Every time limit of the package (expected runtime, deadline, startup timeout, stall detection,
grace periods) goes through :func:`parse_duration`, so one set of formats works everywhere and a
typo fails when the DAG is parsed, with a message naming the parameter, instead of becoming a
surprise limit at 3 a.m. :func:`format_duration` writes the compact form back (``"2h36m"``) for
logs and error messages; ``parse_duration(format_duration(d)) == d`` for every accepted duration.

The contract, pinned by a property-based test: every value a user can type gives either a
``timedelta`` in ``(0, MAX_DURATION]`` or a :class:`DurationError` naming the parameter, and every
fix the error suggests (its :attr:`DurationError.hints`) is itself accepted by :func:`parse_duration`.

Standard library only, except ISO-8601 strings, which are read by ``pendulum`` (an Airflow
dependency) imported when such a string is parsed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from datetime import timedelta
from decimal import Decimal

from airflow_training_guard.exceptions import GuardConfigError

#: What every duration parameter accepts.
DurationLike = timedelta | int | float | str

#: Longest duration accepted: 100 years. No time limit is longer; above it, sums such as
#: ``deadline + termination_grace`` or ``data end + grace_period`` overflow ``timedelta`` and
#: ``datetime`` (``"999999999d"`` once crashed with a raw ``OverflowError``). To disable a limit,
#: use the parameter's documented way (``None``), not a huge value.
MAX_DURATION = timedelta(days=36_500)

#: Valid examples every error message shows (each is accepted by :func:`parse_duration`).
EXAMPLE_HINTS: tuple[str, ...] = ("90s", "15m", "2h", "1h30m", "1.5h", "1d", "500ms", "PT2H30M", "P1D")

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
_MAX_MICROS = MAX_DURATION // timedelta(microseconds=1)

#: Spellings accepted in compact strings (compared case-insensitively, except that an upper-case
#: ``M`` is refused: it means months in ISO-8601 and pandas), mapped to a canonical unit.
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
#: Units with no fixed length, refused with a pointer to days.
_CALENDAR_UNITS = frozenset(
    {"mo", "mon", "mos", "mth", "mths", "month", "months", "y", "yr", "yrs", "year", "years", "q", "quarter"}
)

_NUMBER = r"[0-9]+(?:\.[0-9]*)?|\.[0-9]+"
_COMPACT_PART = re.compile(rf"\s*({_NUMBER})\s*([A-Za-z]+)\s*")
_BARE_NUMBER = re.compile(rf"^\+?(?:{_NUMBER})$")


class DurationError(GuardConfigError):
    """A duration parameter is invalid; the message names the parameter, the value and valid forms.

    :param message: the text shown to the user.
    :param hints: the fixes the message suggests, each accepted by :func:`parse_duration`.
    """

    def __init__(self, message: str, *, hints: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.hints: tuple[str, ...] = (*dict.fromkeys(hints), *EXAMPLE_HINTS)


def parse_duration(value: DurationLike, *, name: str) -> timedelta:
    """Turn a user-supplied duration into a positive :class:`~datetime.timedelta`.

    Why strict: a limit that silently parses to something else (``"2hr"`` read as 2 seconds,
    ``"1M"`` read as one minute when a month was meant, ``"-1h"`` or ``0`` meaning "no limit")
    only shows up when a job is killed or hangs in production. Everything that is not clearly a
    positive duration is rejected here.

    :param value: a ``timedelta``; an ``int`` or ``float`` number of seconds; a compact string made
        of ``<number><unit>`` parts (units ``ms``, ``s``, ``m``, ``h``, ``d``, ``w`` and their long
        spellings, e.g. ``"90s"``, ``"1h30m"``, ``"1.5h"``, ``"500ms"``); or an ISO-8601 duration
        with weeks, days, hours, minutes and seconds (``"PT2H30M"``, ``"P1D"``), read by pendulum.
    :param name: the parameter's name, used in error messages (``"expected_runtime"``).
    :returns: the duration, rounded to whole microseconds, at most :data:`MAX_DURATION`.
    :raises DurationError: (a :class:`GuardConfigError`) for booleans, empty strings, unknown
        units, bare number strings, an upper-case ``M`` unit, years or months (no fixed length),
        zero, negative, NaN, infinite or too large values.
    """
    if isinstance(value, bool):
        raise DurationError(f"{name} {value!r} is a boolean, not a duration; {_EXAMPLES}")
    if isinstance(value, timedelta):
        result = value
    elif isinstance(value, int | float):
        result = _from_seconds(value, name=name)
    elif isinstance(value, str):
        result = _from_string(value, name=name)
    else:
        raise DurationError(f"{name} {value!r} ({type(value).__name__}) is not a duration; {_EXAMPLES}")
    return _in_range(result, value, name=name)


def is_valid_duration(value: object) -> bool:
    """Whether :func:`parse_duration` accepts ``value``; never raises."""
    try:
        parse_duration(value, name="value")  # type: ignore[arg-type]
    except GuardConfigError:
        return False
    return True


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


def _quote_all(hints: Iterable[str]) -> str:
    return " or ".join(repr(hint) for hint in hints)


def _too_large(name: str, shown: str) -> DurationError:
    return DurationError(
        f"{name} {shown} is too large for a duration: the longest accepted is "
        f"{format_duration(MAX_DURATION)} (100 years); give a realistic limit, e.g. '30d', or leave "
        f"the parameter unset (None) where it is optional to disable it; {_EXAMPLES}",
        hints=("30d",),
    )


def _from_seconds(value: float, *, name: str) -> timedelta:
    if isinstance(value, float) and not math.isfinite(value):
        raise DurationError(
            f"{name} {value!r} is not a finite number of seconds; {_EXAMPLES}. To disable a limit, "
            "use the parameter's documented way (e.g. None), not infinity"
        )
    if value > _MAX_MICROS // 1_000_000 + 1:
        raise _too_large(name, f"{value!r} seconds")
    if value < 0:
        raise DurationError(f"{name} {value!r} is negative; durations must be positive; {_EXAMPLES}")
    return timedelta(seconds=value)


def _from_string(raw: str, *, name: str) -> timedelta:
    text = raw.strip()
    if not text:
        raise DurationError(f"{name} {raw!r} is empty; {_EXAMPLES}")
    if text.startswith("-"):
        raise DurationError(f"{name} {raw!r} is negative; durations must be positive; {_EXAMPLES}")
    if _BARE_NUMBER.match(text):
        raise _bare_number(text, raw, name=name)
    if text[0] in "Pp":
        return _from_iso(text.upper(), raw, name=name)
    return _from_compact(text, raw, name=name)


def _bare_number(text: str, raw: str, *, name: str) -> DurationError:
    """'90' is ambiguous; suggest '90s' / '90m', but only the suggestions that are valid."""
    number = text.lstrip("+")
    seconds, minutes = number + "s", number + "m"
    hints = [hint for hint in (seconds, minutes) if is_valid_duration(hint)]
    if hints:
        what = {seconds: f"{seconds!r} for seconds", minutes: f"{minutes!r} for minutes"}
        as_number = ", or pass the number itself (seconds)" if seconds in hints else ""
        return DurationError(
            f"{name} {raw!r} has no unit, so it is ambiguous; write "
            f"{' or '.join(what[hint] for hint in hints)}{as_number}; {_EXAMPLES}",
            hints=hints,
        )
    if Decimal(number) * _MICROS_PER_UNIT["m"] < Decimal("0.5"):
        return DurationError(
            f"{name} {raw!r} is zero (or shorter than one microsecond) and has no unit; give a positive "
            f"duration with a unit; {_EXAMPLES}"
        )
    return _too_large(name, repr(raw))


def _from_compact(text: str, raw: str, *, name: str) -> timedelta:
    total = Decimal(0)
    seen: set[str] = set()
    position = 0
    while position < len(text):
        match = _COMPACT_PART.match(text, position)
        if match is None:
            raise DurationError(f"{name} {raw!r} is not a duration; {_EXAMPLES}")
        number, unit_text = match.groups()
        lowered = unit_text.lower()
        if lowered in {"m", "ms"} and "M" in unit_text:
            raise _capital_m(text, match, raw, name=name)
        unit = _UNIT_ALIASES.get(lowered)
        if unit is None:
            if lowered in _CALENDAR_UNITS:
                raise DurationError(
                    f"{name} {raw!r} uses the unit {unit_text!r}: months and years have no fixed length; "
                    f"use days, e.g. '30d' or '365d'; {_EXAMPLES}",
                    hints=("30d", "365d"),
                )
            raise DurationError(
                f'{name} {raw!r} has an unknown unit "{unit_text}"; use ms, s, m, h, d or w '
                f"(months and years have no fixed length); {_EXAMPLES}"
            )
        if unit in seen:
            raise DurationError(
                f"{name} {raw!r} gives the unit {unit_text!r} twice, which is likely a typo; write each "
                f"unit once, e.g. '1h30m'; {_EXAMPLES}",
                hints=("1h30m",),
            )
        seen.add(unit)
        total += Decimal(number) * _MICROS_PER_UNIT[unit]
        position = match.end()
    return _from_micros(total, raw, name=name)


def _capital_m(text: str, match: re.Match[str], raw: str, *, name: str) -> DurationError:
    """'1M' is minutes to some, months to others (ISO-8601, pandas): never guess which."""
    start, end = match.span(2)
    as_minutes = text[:start] + "m" + text[end:] if match.group(2) == "M" else None
    as_millis = text[:start] + "ms" + text[end:] if match.group(2) != "M" else None
    fixes = [hint for hint in (as_minutes, as_millis) if hint is not None and is_valid_duration(hint)]
    meant = "minutes" if as_minutes is not None else "milliseconds"
    fix_text = f"for {meant} write {_quote_all(fixes)}; " if fixes else ""
    return DurationError(
        f"{name} {raw!r} uses the unit {match.group(2)!r}: an upper-case 'M' means months in ISO-8601 "
        f"and pandas, and months have no fixed length; {fix_text}for about a month write '30d'; "
        f"{_EXAMPLES}",
        hints=(*fixes, "30d"),
    )


def _from_iso(text: str, raw: str, *, name: str) -> timedelta:
    import pendulum  # ISO-8601 only; keeps the common import path standard-library only

    def invalid() -> DurationError:
        if re.search(r"[0-9][YM]", text.split("T")[0]):
            return DurationError(
                f"{name} {raw!r} uses years or months, which have no fixed length; use days, e.g. "
                f"'P30D'; {_EXAMPLES}",
                hints=("P30D",),
            )
        return DurationError(f"{name} {raw!r} is not a valid ISO-8601 duration; {_EXAMPLES}")

    # pendulum reads 'PT' and 'P1DT' as durations; ISO-8601 requires a value after 'T'.
    if text == "P" or text.endswith("T") or not text.isascii() or "/" in text:
        raise invalid()
    try:
        parsed = pendulum.parse(text, exact=True)
    except OverflowError:
        raise _too_large(name, repr(raw)) from None
    except (ValueError, ArithmeticError, TypeError):
        raise invalid() from None
    if not isinstance(parsed, pendulum.Duration):
        raise invalid()
    if parsed.years or parsed.months:
        raise invalid()
    # pendulum's Duration overrides some timedelta fields; read the exact stored value.
    return timedelta(
        days=timedelta.days.__get__(parsed),
        seconds=timedelta.seconds.__get__(parsed),
        microseconds=timedelta.microseconds.__get__(parsed),
    )


def _from_micros(total: Decimal, raw: str, *, name: str) -> timedelta:
    if total > _MAX_MICROS:
        raise _too_large(name, repr(raw))
    return timedelta(microseconds=int(total.to_integral_value()))


def _in_range(result: timedelta, original: object, *, name: str) -> timedelta:
    if result < timedelta(0):
        raise DurationError(f"{name} {original!r} is negative; durations must be positive; {_EXAMPLES}")
    if result == timedelta(0):
        raise DurationError(
            f"{name} {original!r} is zero (or shorter than one microsecond); give a positive duration; "
            f"{_EXAMPLES}"
        )
    if result > MAX_DURATION:
        raise _too_large(name, repr(original))
    return result
