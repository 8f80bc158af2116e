"""What users type as durations, for property-based tests, and the check every answer must pass.

Shared by the parser's tests (``tests/unit/policies``) and the operators' (``tests/unit/operators``):
each duration parameter, given any value, returns a duration or raises ``GuardConfigError`` naming
the parameter, and every fix the error suggests is itself accepted by ``parse_duration``.
"""

from __future__ import annotations

import re
from datetime import timedelta

from hypothesis import strategies as st

from airflow_training_guard.exceptions import GuardConfigError
from airflow_training_guard.policies.durations import DurationError, is_valid_duration

_NUMBERS = st.one_of(
    st.integers(min_value=0, max_value=10**14).map(str),
    st.tuples(st.integers(min_value=0, max_value=10**9), st.text("0123456789", max_size=8)).map(
        lambda whole_fraction: f"{whole_fraction[0]}.{whole_fraction[1]}"
    ),
    st.sampled_from(["0", "0.0", ".5", "1.", "999999999", "36500", "36501", "1e5", "00", "٣"]),
)
_UNITS = st.sampled_from(
    [
        "us",
        "ms",
        "Ms",
        "MS",
        "mS",
        "s",
        "S",
        "sec",
        "m",
        "M",
        "min",
        "MIN",
        "Minutes",
        "h",
        "H",
        "hr",
        "hours",
        "d",
        "D",
        "days",
        "w",
        "W",
        "mo",
        "months",
        "y",
        "Y",
        "years",
        "q",
        "fortnight",
        "",
    ]
)
_COMPACT = st.lists(st.tuples(_NUMBERS, st.sampled_from(["", " "]), _UNITS), min_size=1, max_size=4).map(
    lambda parts: " ".join(f"{n}{sep}{u}" for n, sep, u in parts)
)
_ISO_PART = st.tuples(_NUMBERS, st.sampled_from(list("YMWDHS")))
_ISO = st.builds(
    lambda p, date, t, time: p + "".join(n + u for n, u in date) + t + "".join(n + u for n, u in time),
    st.sampled_from(["P", "p", "PT", "P-"]),
    st.lists(_ISO_PART, max_size=3),
    st.sampled_from(["", "T", "t"]),
    st.lists(_ISO_PART, max_size=3),
)

#: Any text, ints, floats and timedeltas, weighted towards what people actually type.
USER_DURATIONS = st.one_of(
    st.text(max_size=30),
    st.text(alphabet="0123456789.,+- PTtYMWDHSmshdwyuoin", max_size=16),
    _COMPACT,
    _COMPACT.map(lambda text: f"  {text}  "),
    _ISO,
    _NUMBERS,
    st.integers(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(),
    st.timedeltas(),
    st.booleans(),
    st.none(),
    st.lists(st.integers(), max_size=2),
)

_QUOTED = re.compile(r"'([^']*)'")
_DURATION_LOOKING = re.compile(r"[0-9.].*|P[0-9T.].*")


def check_rejection(err: GuardConfigError, value: object, *, name: str, first: bool = False) -> None:
    """The error names the parameter (first, when ``first``); every hint it gives (listed or quoted) parses."""
    message = str(err)
    assert name in message, f"{message!r} does not name {name!r}"
    if first:
        assert message.startswith(f"{name} "), f"{message!r} does not start with {name!r}"
    if isinstance(err, DurationError):
        for hint in err.hints:
            assert repr(hint) in message, f"hint {hint!r} is not in the message {message!r}"
            assert is_valid_duration(hint), f"hint {hint!r} of {message!r} is refused by parse_duration"
    # Quoted duration-like text is a suggestion too, whoever raised the error: it must parse.
    rest = message.replace(repr(value), "", 1) if isinstance(value, str) else message
    for token in _QUOTED.findall(rest):
        if _DURATION_LOOKING.fullmatch(token):
            assert is_valid_duration(token), (
                f"{token!r} suggested by {message!r} is refused by parse_duration"
            )


def check_duration(result: object, maximum: timedelta) -> None:
    assert isinstance(result, timedelta)
    assert timedelta(0) < result <= maximum
