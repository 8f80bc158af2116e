"""When a training job counts as stalled: the one rule every watchdog applies.

A job is stalled when its heartbeat step has not changed for ``stall_after``; before its first
heartbeat it also gets ``startup_grace`` (image pull, data loading), so a program that never beats
is stopped after ``startup_grace + stall_after``. Every launcher applies this rule, and passes its
``startup_timeout`` as ``startup_grace``: the pod watchdog in the worker (sync mode, a thread
reading the pod log), the triggerer (deferrable mode,
:mod:`airflow_training_guard.triggers.training_pod`), the Job operator per rank, and the local
process supervisor (:mod:`airflow_training_guard.launchers.process`, reading the heartbeat file).
What a stall is called is :func:`airflow_training_guard.policies.diagnostics.stalled`.
Pure Python; time is passed in, so the rule is tested without sleeping.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from airflow_training_guard.policies.durations import format_duration


@dataclass
class StallWatch:
    """Feed it the newest heartbeat step at each look; it says when progress stopped.

    :param stall_after: seconds without a new step that make a job stalled.
    :param startup_grace: extra seconds allowed before the first heartbeat.
    :param started: monotonic time the watch started.
    """

    stall_after: float
    startup_grace: float
    started: float
    last_step: int | None = field(default=None, init=False)
    last_progress: float = field(default=0.0, init=False)

    def observe(self, step: int | None, now: float) -> str | None:
        """Record what the log shows now (``None``: no heartbeat seen); return why it is stalled, or None."""
        if step is not None and step != self.last_step:
            self.last_step, self.last_progress = step, now
            return None
        if self.last_step is None:
            waited, limit = now - self.started, self.startup_grace + self.stall_after
        else:
            waited, limit = now - self.last_progress, self.stall_after
        if waited < limit:
            return None
        last = self.last_step if self.last_step is not None else "none"
        window = format_duration(timedelta(seconds=self.stall_after))
        return f"no heartbeat progress for {waited:.0f}s (stall_after {window}); last step {last}"
