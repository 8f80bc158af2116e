"""Time limits of a training run: hard deadline, startup timeout and stall detection.

The production failure this prevents: a job that normally takes 2h gets a 2h timeout, and one
night of slower data or a busier GPU kills it at 99%, every night. The deadline is therefore
derived from the *expected* runtime plus a buffer (30% by default), and an explicit deadline
below that is rejected when the DAG is parsed. The opposite failure, a job that hangs for hours
holding a GPU, is covered by the startup timeout (no first heartbeat) and stall detection (no
heartbeat progress).

Pure Python, no Airflow import: launchers translate a :class:`TimeoutPolicy` into their own limits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import timedelta

from airflow_training_guard.exceptions import GuardConfigError
from airflow_training_guard.policies.durations import DurationLike, format_duration, parse_duration

#: Fraction added to ``expected_runtime`` for the hard deadline when nothing else is said.
DEFAULT_BUFFER = 0.30
#: Largest accepted buffer (+1000%); larger values are almost always a percentage typed as a number.
MAX_BUFFER = 10.0


def format_buffer(buffer: float) -> str:
    """Write a buffer fraction as a percentage for messages: ``0.3`` -> ``"30%"``.

    :param buffer: the fraction, e.g. ``0.30``.
    """
    return f"{buffer * 100:.10g}%"


def validate_buffer(buffer: object, *, name: str = "buffer") -> float:
    """Check that ``buffer`` is a fraction in ``0 <= buffer <= MAX_BUFFER`` and return it as float.

    Shared by :class:`TimeoutPolicy` and the profiles so both reject the same values the same way.

    :param buffer: the value to check.
    :param name: the parameter's name for the error message.
    :raises GuardConfigError: for booleans, non-numbers, NaN, negative or too large values.
    """
    if isinstance(buffer, bool) or not isinstance(buffer, int | float):
        raise GuardConfigError(
            f"{name} {buffer!r} is not a number; give a fraction of expected_runtime, e.g. 0.30 for +30%"
        )
    value = float(buffer)
    if math.isnan(value) or value < 0:
        raise GuardConfigError(
            f"{name} {buffer!r} is negative or not a number; a deadline below expected_runtime kills "
            f"healthy runs. Use a fraction >= 0, e.g. {DEFAULT_BUFFER} for +30%"
        )
    if value > MAX_BUFFER:
        raise GuardConfigError(
            f"{name} {buffer!r} is larger than {MAX_BUFFER:g} (+{MAX_BUFFER * 100:g}%); it is a fraction, "
            f"not a percentage: did you mean {value / 100:g}? To allow much longer runs, raise "
            "expected_runtime instead"
        )
    return value


def _require_timedelta(value: object, name: str) -> timedelta:
    if not isinstance(value, timedelta):
        raise GuardConfigError(
            f"{name} {value!r} is a {type(value).__name__}, not a timedelta; use "
            f"TimeoutPolicy.build({name}={value!r}) to parse durations like '2h' or seconds"
        )
    if value <= timedelta(0):
        raise GuardConfigError(f"{name} {format_duration(value)} must be positive; give a duration > 0")
    return value


@dataclass(frozen=True)
class TimeoutPolicy:
    """When a training run is considered late, never started, or hung, and is stopped.

    - **Hard deadline**: the run is stopped (process group terminated, then killed) once this much
      time has passed since it started. Retryable: the next attempt resumes from a checkpoint.
    - **Startup timeout**: the run is stopped when it has not written its first heartbeat by then
      (stuck pulling data, waiting on a lock, never calling ``Heartbeat.beat()``).
    - **Stall detection**: the run is stopped when its heartbeat has not advanced for
      ``stall_after`` (deadlock, hung I/O, stuck collective).

    Build it with :meth:`build` to accept strings such as ``"2h"``; the constructor takes
    ``timedelta`` values.

    :param expected_runtime: how long a full, healthy run normally takes.
    :param buffer: fraction added to ``expected_runtime`` for the hard deadline
        (``0 <= buffer <= 10``; default ``0.30``, i.e. +30%).
    :param deadline: explicit hard deadline; ``None`` means ``expected_runtime * (1 + buffer)``.
        An explicit deadline shorter than that is rejected.
    :param startup_timeout: time allowed until the first heartbeat; at most the hard deadline.
    :param stall_after: no heartbeat progress for this long means the run hangs; ``None`` disables
        stall detection. Must be longer than ``poll_interval``.
    :param poll_interval: how often the launcher checks the process and the heartbeat.
    :param poll_interval_name: what the user calls ``poll_interval``, for messages (the pod
        operator's is ``heartbeat_log_interval``); not part of the policy's value.
    """

    expected_runtime: timedelta
    buffer: float = DEFAULT_BUFFER
    deadline: timedelta | None = None
    startup_timeout: timedelta = timedelta(minutes=10)
    stall_after: timedelta | None = timedelta(minutes=15)
    poll_interval: timedelta = timedelta(seconds=5)
    poll_interval_name: str = field(default="poll_interval", repr=False, compare=False)

    def __post_init__(self) -> None:
        _require_timedelta(self.expected_runtime, "expected_runtime")
        object.__setattr__(self, "buffer", validate_buffer(self.buffer))
        _require_timedelta(self.poll_interval, self.poll_interval_name)
        _require_timedelta(self.startup_timeout, "startup_timeout")
        try:
            minimum = self.minimum_deadline
        except OverflowError:
            raise GuardConfigError(
                f"expected_runtime {format_duration(self.expected_runtime)} plus the "
                f"{format_buffer(self.buffer)} buffer is too large for a duration; give a realistic "
                "expected_runtime"
            ) from None
        if self.deadline is not None:
            _require_timedelta(self.deadline, "deadline")
            if self.deadline < minimum:
                raise GuardConfigError(
                    f"deadline {format_duration(self.deadline)} is shorter than expected_runtime "
                    f"{format_duration(self.expected_runtime)} plus the {format_buffer(self.buffer)} buffer "
                    f"({format_duration(minimum)}); set deadline >= {format_duration(minimum)} or lower "
                    "expected_runtime"
                )
        if self.stall_after is not None:
            _require_timedelta(self.stall_after, "stall_after")
            if self.stall_after <= self.poll_interval:
                raise GuardConfigError(
                    f"stall_after {format_duration(self.stall_after)} is not longer than "
                    f"{self.poll_interval_name} {format_duration(self.poll_interval)}, so a healthy run would "
                    f"look hung between two polls; set stall_after > {format_duration(self.poll_interval)} "
                    f"(several heartbeat intervals), lower {self.poll_interval_name}, or set stall_after=None "
                    "to disable"
                )
        hard = self.hard_deadline
        if self.startup_timeout > hard:
            raise GuardConfigError(
                f"startup_timeout {format_duration(self.startup_timeout)} is longer than the hard deadline "
                f"{format_duration(hard)}, so it could never fire; set startup_timeout <= "
                f"{format_duration(hard)} or raise expected_runtime"
            )

    @property
    def minimum_deadline(self) -> timedelta:
        """``expected_runtime * (1 + buffer)``: the shortest hard deadline this policy accepts."""
        return self.expected_runtime * (1 + self.buffer)

    @property
    def hard_deadline(self) -> timedelta:
        """The deadline the launcher enforces: the explicit ``deadline``, else the minimum deadline."""
        return self.deadline if self.deadline is not None else self.minimum_deadline

    @classmethod
    def build(
        cls,
        *,
        expected_runtime: DurationLike,
        buffer: float = DEFAULT_BUFFER,
        deadline: DurationLike | None = None,
        startup_timeout: DurationLike = "10m",
        stall_after: DurationLike | None = "15m",
        poll_interval: DurationLike = "5s",
        poll_interval_name: str = "poll_interval",
    ) -> TimeoutPolicy:
        """Build a policy from user-facing values (``"2h"``, ``"PT30M"``, seconds, ``timedelta``).

        Each duration is parsed with :func:`parse_duration` under its parameter name, so an error
        says which argument is wrong.

        :param expected_runtime: how long a full, healthy run normally takes.
        :param buffer: fraction added to ``expected_runtime`` for the hard deadline.
        :param deadline: explicit hard deadline, or ``None`` for ``expected_runtime * (1 + buffer)``.
        :param startup_timeout: time allowed until the first heartbeat.
        :param stall_after: no heartbeat progress for this long means hung; ``None`` disables.
        :param poll_interval: how often the process and the heartbeat are checked.
        :param poll_interval_name: the name the user gave ``poll_interval``, for messages.
        """
        return cls(
            expected_runtime=parse_duration(expected_runtime, name="expected_runtime"),
            buffer=buffer,
            deadline=None if deadline is None else parse_duration(deadline, name="deadline"),
            startup_timeout=parse_duration(startup_timeout, name="startup_timeout"),
            stall_after=None if stall_after is None else parse_duration(stall_after, name="stall_after"),
            poll_interval=parse_duration(poll_interval, name=poll_interval_name),
            poll_interval_name=poll_interval_name,
        )

    def describe(self) -> dict[str, str]:
        """The effective configuration as text, for the task log (durations in compact form)."""
        source = (
            "explicit" if self.deadline is not None else f"expected_runtime + {format_buffer(self.buffer)}"
        )
        return {
            "expected_runtime": format_duration(self.expected_runtime),
            "buffer": format_buffer(self.buffer),
            "minimum_deadline": format_duration(self.minimum_deadline),
            "hard_deadline": format_duration(self.hard_deadline),
            "hard_deadline_source": source,
            "startup_timeout": format_duration(self.startup_timeout),
            "stall_after": "disabled" if self.stall_after is None else format_duration(self.stall_after),
            "poll_interval": format_duration(self.poll_interval),
        }
