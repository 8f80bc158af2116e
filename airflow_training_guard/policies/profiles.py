"""Named presets of the guard's knobs: ``"safe"`` (the default) and ``"fast"`` (explicit opt-in).

A profile bundles the settings that trade reliability for speed: how often to checkpoint, how many
checkpoints to keep, how long a run may stall, whether a short smoke run goes first, how many
retries, and what to do when every checkpoint is corrupt. ``safe`` is the default because the
failures it prevents (hours of lost progress, a broken program found after the data loaded, a
corrupt checkpoint silently replaced by a restart from step 0) cost more than its overhead.
``fast`` must be asked for by name. Neither profile goes below the 30% deadline buffer: a deadline
too close to the expected runtime kills healthy runs, which no amount of speed makes up for.

Explicit operator arguments override the profile's values. Pure Python, no Airflow import.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from types import MappingProxyType

from airflow_training_guard.exceptions import GuardConfigError
from airflow_training_guard.policies.durations import format_duration
from airflow_training_guard.policies.timeouts import DEFAULT_BUFFER, validate_buffer

#: What to do when checkpoints exist but none verifies.
ON_CORRUPT_CHOICES = frozenset({"fail", "restart"})


@dataclass(frozen=True)
class GuardProfile:
    """A named set of defaults for checkpointing, timeouts, smoke runs and retries.

    :param name: the name users pass as ``profile=...``.
    :param description: one line saying what the profile is for.
    :param checkpoint_every_steps: save a checkpoint every this many steps (>= 1).
    :param checkpoint_keep_last: keep this many newest valid checkpoints (>= 1).
    :param timeout_buffer: fraction added to ``expected_runtime`` for the hard deadline
        (``0 <= timeout_buffer <= 10``).
    :param stall_after: no heartbeat progress for this long stops the run; ``None`` disables.
    :param smoke_run_steps: steps of the smoke run before a fresh start; 0 disables it.
    :param retries: Airflow retries of the task (>= 0); each retry resumes from a checkpoint.
    :param on_corrupt_checkpoints: ``"fail"`` (stop and let a person look) or ``"restart"``
        (start from step 0) when checkpoints exist but none verifies.
    """

    name: str
    description: str
    checkpoint_every_steps: int
    checkpoint_keep_last: int
    timeout_buffer: float
    stall_after: timedelta | None
    smoke_run_steps: int
    retries: int
    on_corrupt_checkpoints: str

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise GuardConfigError(f"profile name {self.name!r} is empty; give it a name such as 'nightly'")
        where = f"profile {self.name!r}"
        for field, minimum in (
            ("checkpoint_every_steps", 1),
            ("checkpoint_keep_last", 1),
            ("smoke_run_steps", 0),
            ("retries", 0),
        ):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise GuardConfigError(f"{where}: {field} {value!r} must be an integer >= {minimum}")
        object.__setattr__(
            self, "timeout_buffer", validate_buffer(self.timeout_buffer, name="timeout_buffer")
        )
        if self.stall_after is not None and (
            not isinstance(self.stall_after, timedelta) or self.stall_after <= timedelta(0)
        ):
            shown = (
                format_duration(self.stall_after)
                if isinstance(self.stall_after, timedelta)
                else repr(self.stall_after)
            )
            raise GuardConfigError(
                f"{where}: stall_after {shown} must be a positive timedelta, e.g. timedelta(minutes=10), "
                "or None to disable stall detection"
            )
        if self.on_corrupt_checkpoints not in ON_CORRUPT_CHOICES:
            raise GuardConfigError(
                f"{where}: on_corrupt_checkpoints {self.on_corrupt_checkpoints!r} is not valid; use 'fail' "
                "(stop and let a person look) or 'restart' (start from step 0)"
            )


#: Reliability first. The default.
SAFE = GuardProfile(
    name="safe",
    description=(
        "reliability first: frequent checkpoints, a smoke run before every fresh start, "
        "3 retries, and corrupt checkpoints stop the task for a person to inspect"
    ),
    checkpoint_every_steps=50,
    checkpoint_keep_last=3,
    timeout_buffer=DEFAULT_BUFFER,
    stall_after=timedelta(minutes=10),
    smoke_run_steps=5,
    retries=3,
    on_corrupt_checkpoints="fail",
)

#: Less overhead for jobs where a lost hour is cheap. Opt-in only: ``profile="fast"``.
FAST = GuardProfile(
    name="fast",
    description=(
        "less overhead: rare checkpoints, one kept, no smoke run, 1 retry, and corrupt checkpoints "
        "restart from step 0; the deadline buffer stays at 30%"
    ),
    checkpoint_every_steps=500,
    checkpoint_keep_last=1,
    timeout_buffer=DEFAULT_BUFFER,
    stall_after=timedelta(minutes=30),
    smoke_run_steps=0,
    retries=1,
    on_corrupt_checkpoints="restart",
)

#: Every named profile, by name (read-only).
PROFILES: Mapping[str, GuardProfile] = MappingProxyType({SAFE.name: SAFE, FAST.name: FAST})
#: The profile used when none is given.
DEFAULT_PROFILE = "safe"


def get_profile(name: str | GuardProfile) -> GuardProfile:
    """Look up a profile by name (case and surrounding spaces ignored), or pass one through.

    :param name: ``"safe"``, ``"fast"``, or a :class:`GuardProfile` built by the user.
    :raises GuardConfigError: for an unknown name, listing the known ones.
    """
    if isinstance(name, GuardProfile):
        return name
    known = ", ".join(repr(key) for key in sorted(PROFILES))
    if not isinstance(name, str):
        raise GuardConfigError(
            f"profile {name!r} is a {type(name).__name__}; pass a profile name ({known}) or a GuardProfile"
        )
    profile = PROFILES.get(name.strip().lower())
    if profile is None:
        raise GuardConfigError(
            f"profile {name!r} is not known; use one of {known} (default {DEFAULT_PROFILE!r}), "
            "or pass a GuardProfile"
        )
    return profile
