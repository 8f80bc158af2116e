"""When a rank of a multi-rank job counts as a straggler: the one rule every launcher applies.

The failure this prevents: one slow rank (a throttled node, a noisy neighbour, a failing disk)
holds every other rank at each collective, and a 2 h job takes 6 h with nothing in the logs. A
rank is a straggler when its step rate stays below ``fraction`` of the median rate of the other
ranks (its peers) for ``window`` seconds; the launcher then warns (policy ``warn``) or stops the attempt so the retry
resumes from the newest valid checkpoint (policy ``restart``), optionally away from the node.

Why the peers' median and not every rank's: with two ranks the median of all is their mean, and a
rank three times slower than its peer would sit exactly on a 0.5 threshold; against its peers it
is at 33%.

What "step rate" means: in synchronous data-parallel training (DDP) every rank finishes each step
at the same wall-clock moment, because the fast ranks wait for the slow one in the gradient
all-reduce; wall-clock step rates are all equal. So when every rank reports
``compute_seconds`` (its cumulative time spent computing, outside collectives; see
:data:`airflow_training_guard.runtime.heartbeat.COMPUTE_SECONDS_METRIC`), a rank's rate is steps
per compute second. Without that metric the rate is steps per second of observation time, which
is right for ranks that do not wait for each other.

Pure Python, no Airflow import; time is passed in, so the rule is tested without sleeping. The
local launcher (:mod:`airflow_training_guard.launchers.process`) feeds it per-rank heartbeat files;
a Kubernetes Job launcher feeds it the per-rank heartbeat lines of its pods' logs.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow_training_guard.exceptions import GuardConfigError
from airflow_training_guard.policies.durations import parse_duration

__all__ = [
    "STRAGGLER_ACTIONS",
    "StragglerPolicy",
    "StragglerReport",
    "StragglerWatch",
    "coerce_straggler_policy",
]

#: ``warn``: log the report and keep going; ``restart``: stop the attempt (retryable) so the retry
#: resumes from the newest valid checkpoint.
STRAGGLER_ACTIONS = ("warn", "restart")


@dataclass(frozen=True)
class StragglerPolicy:
    """What counts as a straggler and what to do about it.

    :param fraction: a rank whose rate is below ``fraction`` x its peers' median rate is slow (0 < f < 1).
    :param window: seconds a rank must stay slow, at every look, before it is reported.
    :param action: ``"warn"`` or ``"restart"`` (see :data:`STRAGGLER_ACTIONS`).
    :param rate_window: seconds of history each rate is measured over (default: ``window / 2``);
        shorter reacts faster, longer smooths bursty steps.
    :param avoid_node: with ``restart``, ask the launcher to schedule the retry away from the
        straggler's node (multi-node launchers only).
    """

    fraction: float = 0.5
    window: float = 120.0
    action: str = "warn"
    rate_window: float | None = None
    avoid_node: bool = False

    def __post_init__(self) -> None:
        if (
            isinstance(self.fraction, bool)
            or not isinstance(self.fraction, int | float)
            or not 0 < self.fraction < 1
        ):
            raise GuardConfigError(
                f"straggler fraction {self.fraction!r} is invalid: use a number between 0 and 1, e.g. 0.5 "
                "(a rank slower than half the median rate is a straggler)"
            )
        for name in ("window", "rate_window"):
            value = getattr(self, name)
            if value is None and name == "rate_window":
                continue
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or value <= 0
            ):
                raise GuardConfigError(
                    f"straggler {name} {value!r} is invalid: use a number of seconds > 0, e.g. 120"
                )
        if self.action not in STRAGGLER_ACTIONS:
            raise GuardConfigError(
                f"straggler action {self.action!r} is not valid; use 'warn' (report and continue) or "
                "'restart' (stop the attempt; the retry resumes from the newest valid checkpoint)"
            )
        if self.avoid_node and self.action != "restart":
            raise GuardConfigError(
                "straggler avoid_node=True needs action='restart': only a restarted attempt can be "
                "scheduled away from the node"
            )

    @property
    def effective_rate_window(self) -> float:
        return float(self.rate_window) if self.rate_window is not None else self.window / 2

    def describe(self) -> dict[str, object]:
        """The effective settings, for the task log."""
        return {
            "fraction": self.fraction,
            "window_seconds": self.window,
            "rate_window_seconds": self.effective_rate_window,
            "action": self.action,
            "avoid_node": self.avoid_node,
        }


@dataclass(frozen=True)
class StragglerReport:
    """One rank found too slow.

    :param rank: the straggler's global rank.
    :param node: the node it runs on (``None`` when its heartbeat did not say).
    :param rate: its step rate (steps per second, of compute time when reported).
    :param median_rate: the median rate of the other ranks at the same look.
    :param rates: every rank's rate at that look, by rank.
    :param slow_for: seconds it had been below the threshold when reported.
    :param observations: number of looks (heartbeat polls) from the watch's start to this report.
    :param fraction: the policy's fraction.
    """

    rank: int
    node: str | None
    rate: float
    median_rate: float
    rates: dict[int, float]
    slow_for: float
    observations: int
    fraction: float

    def describe(self) -> str:
        node = self.node or "unknown node"
        ratio = self.rate / self.median_rate if self.median_rate else 0.0
        others = ", ".join(f"rank {r}: {v:.3g}" for r, v in sorted(self.rates.items()))
        return (
            f"rank {self.rank} on {node} is a straggler: {self.rate:.3g} steps/s, {ratio:.0%} of the "
            f"median {self.median_rate:.3g} steps/s (threshold {self.fraction:.0%}) for {self.slow_for:.0f}s; "
            f"rates: {others}"
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "rank": self.rank,
            "node": self.node,
            "rate": self.rate,
            "median_rate": self.median_rate,
            "rates": {str(rank): rate for rank, rate in sorted(self.rates.items())},
            "slow_for_seconds": self.slow_for,
            "observations": self.observations,
        }


@dataclass
class _RankHistory:
    node: str | None = None
    # (observed at, step, compute seconds or None), oldest first
    samples: deque[tuple[float, int, float | None]] = field(default_factory=deque)
    slow_since: float | None = None


@dataclass
class StragglerWatch:
    """Feed it every rank's newest heartbeat at each look; it says which ranks are stragglers.

    :param policy: the rule's settings.
    :param started: monotonic time the watch started (for the report's timing only).
    """

    policy: StragglerPolicy
    started: float = 0.0
    _ranks: dict[int, _RankHistory] = field(default_factory=dict, init=False, repr=False)
    _observations: int = field(default=0, init=False, repr=False)
    _reported: set[int] = field(default_factory=set, init=False, repr=False)

    def observe(
        self,
        rank: int,
        step: int,
        now: float,
        *,
        node: str | None = None,
        compute_seconds: float | None = None,
    ) -> None:
        """Record what ``rank``'s heartbeat says at time ``now`` (monotonic seconds).

        Call it for every rank at each look, then :meth:`check`. Repeating the same step is fine
        (a rank that stopped shows a rate falling to 0).
        """
        history = self._ranks.setdefault(rank, _RankHistory())
        if node is not None:
            history.node = node
        if history.samples and step < history.samples[-1][1]:
            # A restarted rank went back to a checkpoint: its old history says nothing now.
            history.samples.clear()
            history.slow_since = None
        history.samples.append((now, step, compute_seconds))
        horizon = now - self.policy.effective_rate_window
        # Keep one sample at or before the horizon, so a rate always spans the full window.
        while len(history.samples) > 2 and history.samples[1][0] <= horizon:
            history.samples.popleft()

    def rates(self, now: float) -> dict[int, float]:
        """Every rank's current rate, for ranks with enough history (a full rate window)."""
        use_compute = all(
            history.samples and history.samples[-1][2] is not None for history in self._ranks.values()
        )
        rates: dict[int, float] = {}
        min_span = self.policy.effective_rate_window * 0.9
        for rank, history in self._ranks.items():
            if len(history.samples) < 2:
                continue
            first_at, first_step, first_compute = history.samples[0]
            _, last_step, last_compute = history.samples[-1]
            if now - first_at < min_span:
                continue
            steps = last_step - first_step
            if use_compute and first_compute is not None and last_compute is not None:
                spent = last_compute - first_compute
                if spent <= 0:
                    # No compute reported over the window: a stopped rank, or no step at all.
                    rates[rank] = 0.0 if steps <= 0 else math.inf
                    continue
                rates[rank] = steps / spent
            else:
                rates[rank] = steps / max(now - first_at, 1e-9)
        return rates

    def check(self, now: float) -> list[StragglerReport]:
        """Ranks that have been slow for the whole ``window`` at this look, each reported once."""
        self._observations += 1
        rates = self.rates(now)
        if len(rates) < 2 or len(rates) < len(self._ranks):
            return []
        reports: list[StragglerReport] = []
        for rank, rate in rates.items():
            history = self._ranks[rank]
            median = statistics.median(other for peer, other in rates.items() if peer != rank)
            if not median > 0 or not math.isfinite(median) or rate >= self.policy.fraction * median:
                # Peers stopped too (a stall, which the stall rule reports) or this rank keeps up.
                history.slow_since = None
                continue
            if history.slow_since is None:
                history.slow_since = now
            slow_for = now - history.slow_since
            if slow_for >= self.policy.window and rank not in self._reported:
                self._reported.add(rank)
                reports.append(
                    StragglerReport(
                        rank=rank,
                        node=history.node,
                        rate=rate,
                        median_rate=median,
                        rates=dict(rates),
                        slow_for=slow_for,
                        observations=self._observations,
                        fraction=self.policy.fraction,
                    )
                )
        return sorted(reports, key=lambda report: report.rank)


def coerce_straggler_policy(
    value: StragglerPolicy | Mapping[str, Any] | None, *, task_id: str
) -> StragglerPolicy | None:
    """A :class:`StragglerPolicy` from itself or its keyword arguments (durations like ``"2m"`` allowed)."""
    if value is None or isinstance(value, StragglerPolicy):
        return value
    if not isinstance(value, Mapping):
        raise GuardConfigError(
            f"straggler_policy {value!r} of task {task_id!r} is neither a StragglerPolicy nor a dict of its "
            "arguments, e.g. {'fraction': 0.5, 'window': '2m', 'action': 'restart'}"
        )
    kwargs = dict(value)
    for name in ("window", "rate_window"):
        if kwargs.get(name) is not None and not isinstance(kwargs[name], int | float):
            kwargs[name] = parse_duration(kwargs[name], name=f"straggler_policy {name}").total_seconds()
    try:
        return StragglerPolicy(**kwargs)
    except TypeError as err:
        raise GuardConfigError(
            f"straggler_policy {value!r} of task {task_id!r} has an unknown key ({err}); use fraction, window, "
            "rate_window, action, avoid_node"
        ) from err
