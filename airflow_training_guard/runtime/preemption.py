"""Graceful preemption: turn SIGTERM into "save a checkpoint at the next step boundary, then exit 75".

The failure this prevents: Kubernetes (spot node reclaimed, pod evicted) or the local launcher sends
SIGTERM, Python's default action kills the program mid-step, and everything since the last periodic
checkpoint is lost. Under :class:`PreemptionGuard` the signal only sets a flag; the training loop
checks :attr:`PreemptionGuard.requested` after each step, saves a checkpoint and calls
:func:`exit_preempted`. Exit code 75 tells the launcher "preempted, resumable": it retries, and the
retry resumes from that checkpoint.

The program must finish within the launcher's grace period (Kubernetes
``terminationGracePeriodSeconds``), after which SIGKILL follows; the checkpoint format guarantees
that even then no torn checkpoint is ever loaded.

This module is imported inside training containers: standard library only, no Airflow.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from types import FrameType, TracebackType
from typing import NoReturn

from airflow_training_guard.runtime.contract import EXIT_PREEMPTED

__all__ = ["PreemptionGuard", "exit_preempted"]

_Handler = Callable[[int, FrameType | None], object] | int | signal.Handlers | None


class PreemptionGuard:
    """Context manager: while active, SIGTERM (and SIGINT) set a flag instead of killing the process,
    so the training loop can save a checkpoint at a step boundary and exit with ``EXIT_PREEMPTED``.

    A second SIGINT while a request is already pending raises :class:`KeyboardInterrupt` as usual,
    so a person pressing Ctrl-C twice can still stop a program whose step never ends.

    Example::

        with PreemptionGuard() as preemption:
            for step in range(start, total):
                train_one_step()
                if preemption.requested:
                    checkpointer.save(step, state())
                    exit_preempted(f"preempted at step {step}")

    Signal handlers can only be installed from the main thread, so entering the guard anywhere
    else raises :class:`RuntimeError`. Previous handlers are restored on exit; the flag stays
    readable afterwards.
    """

    def __init__(self, signals: Sequence[int] = (signal.SIGTERM, signal.SIGINT)) -> None:
        resolved: list[signal.Signals] = []
        for signum in signals:
            try:
                resolved.append(signal.Signals(signum))
            except ValueError:
                raise ValueError(
                    f"signal {signum!r} is not a valid signal number; use e.g. signal.SIGTERM"
                ) from None
        if not resolved:
            raise ValueError("signals is empty; pass at least one signal, e.g. (signal.SIGTERM,)")
        if signal.SIGKILL in resolved or signal.SIGSTOP in resolved:
            raise ValueError(
                f"signals {[s.name for s in resolved]} include SIGKILL or SIGSTOP, which cannot be caught"
            )
        self._signals = tuple(dict.fromkeys(resolved))
        self._previous: dict[signal.Signals, _Handler] = {}
        self._received: int | None = None
        self._active = False

    def __enter__(self) -> PreemptionGuard:
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError(
                "PreemptionGuard must be entered in the main thread: Python installs signal handlers "
                f"only there, and this is thread {threading.current_thread().name!r}. Run the training "
                "loop (or at least the `with PreemptionGuard()` block) in the main thread"
            )
        if self._active:
            raise RuntimeError("this PreemptionGuard is already active; do not enter it twice")
        self._received = None
        for signum in self._signals:
            self._previous[signum] = signal.getsignal(signum)
            signal.signal(signum, self._handle)
        self._active = True
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._restore()

    def _restore(self) -> None:
        for signum, previous in self._previous.items():
            # getsignal() returns None for a handler not installed from Python; the default action
            # is the closest we can put back.
            signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
        self._previous.clear()
        self._active = False

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self._received is not None and signum == signal.SIGINT:
            # Second Ctrl-C: the person wants out now, checkpoint or not.
            self._restore()
            raise KeyboardInterrupt
        if self._received is None:
            self._received = signum
            # os.write, not print: a handler can run while the main thread is inside a print to
            # the same stream, and re-entering a buffered stream raises RuntimeError.
            name = signal.Signals(signum).name
            message = (
                f"training-guard: received {name}; will save a checkpoint at the next step boundary "
                f"and exit with code {EXIT_PREEMPTED}\n"
            )
            with contextlib.suppress(OSError):
                os.write(2, message.encode())

    @property
    def requested(self) -> bool:
        """True once one of the signals arrived: save a checkpoint and exit at the step boundary."""
        return self._received is not None

    @property
    def signal_received(self) -> int | None:
        """Number of the first signal received (e.g. ``signal.SIGTERM``), or ``None``."""
        return self._received


def exit_preempted(message: str | None = None) -> NoReturn:
    """Exit with :data:`~airflow_training_guard.runtime.contract.EXIT_PREEMPTED` (75).

    Call it after the checkpoint is saved. ``message`` goes to stderr, so it shows in the task log;
    both streams are flushed first because buffered output is lost if the launcher kills the
    process group right after the exit.
    """
    if message:
        print(message, file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    sys.exit(EXIT_PREEMPTED)
