"""The pre-flight checklist model: checks, their results, running them, and the report.

Why a checklist that runs everything: a run that fails on the first problem, is fixed, retried and
fails on the next one costs an hour of GPU queueing per problem. Every check runs, concurrently and
within a bounded total time, and the report lists every failure with its fix at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from airflow_training_guard.exceptions import GuardConfigError
from airflow_training_guard.secrets import redact

#: Default bound on the whole checklist's wall time, in seconds.
DEFAULT_TOTAL_TIMEOUT = 120.0
#: Default number of checks that run at the same time.
DEFAULT_MAX_WORKERS = 8

#: Pin categories a check can produce (see :attr:`CheckResult.pin`).
PIN_CATEGORIES = ("image_digest", "datasets", "models")


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check.

    :param name: the check's name, e.g. ``"dataset trl-lib/ultrafeedback_binarized"``.
    :param passed: whether the check passed.
    :param evidence: what was observed (``"revision 'main' -> 1f3c..."``), logged either way.
    :param problem: what is wrong, when failed.
    :param fix: what to do about it, when failed.
    :param pin: ``(category, key, value)`` a passed check resolved, e.g.
        ``("datasets", "org/data", "<40 hex sha>")`` or ``("image_digest", "<image>", "sha256:...")``.
    :param duration: seconds the check took.
    """

    name: str
    passed: bool
    evidence: str = ""
    problem: str | None = None
    fix: str | None = None
    pin: tuple[str, str, str] | None = None
    duration: float = 0.0

    def __post_init__(self) -> None:
        if not self.passed and not self.problem:
            raise GuardConfigError(f"check {self.name!r} failed without saying why; give a problem")
        if self.pin is not None and (len(self.pin) != 3 or self.pin[0] not in PIN_CATEGORIES):
            raise GuardConfigError(f"check {self.name!r}: pin {self.pin!r} must be (category, key, value)")

    @classmethod
    def ok(cls, name: str, evidence: str, *, pin: tuple[str, str, str] | None = None) -> CheckResult:
        """A passed check with its evidence."""
        return cls(name=name, passed=True, evidence=evidence, pin=pin)

    @classmethod
    def fail(cls, name: str, problem: str, fix: str, *, evidence: str = "") -> CheckResult:
        """A failed check: what is wrong and what to do."""
        return cls(name=name, passed=False, evidence=evidence, problem=problem, fix=fix)

    def line(self) -> str:
        """One log line: ``PASSED image: ... `` or ``FAILED dataset x: problem; fix: ...``."""
        if self.passed:
            return f"PASSED {self.name}: {self.evidence} ({self.duration:.2f}s)"
        text = f"FAILED {self.name}: {self.problem}"
        if self.fix:
            text += f"; fix: {self.fix}"
        if self.evidence:
            text += f" [evidence: {self.evidence}]"
        return text


@dataclass(frozen=True)
class Check:
    """One named check. ``run`` returns a :class:`CheckResult`; an exception it raises fails the check.

    :param name: shown in logs and the report.
    :param run: the check itself, called without arguments, possibly in a worker thread.
    :param network: whether the check talks to a remote service (informational, for logs).
    """

    name: str
    run: Callable[[], CheckResult]
    network: bool = False


@dataclass(frozen=True)
class PreflightReport:
    """Every check's result, in the order the checks were given.

    :param results: the results.
    :param elapsed: wall time of the whole checklist, seconds.
    """

    results: tuple[CheckResult, ...]
    elapsed: float = 0.0

    @property
    def passed(self) -> bool:
        """Whether every check passed."""
        return all(result.passed for result in self.results)

    @property
    def failures(self) -> tuple[CheckResult, ...]:
        """The failed checks."""
        return tuple(result for result in self.results if not result.passed)

    def pins(self) -> dict[str, Any]:
        """What the checks resolved: ``{"image_digest", "image", "datasets": {id: sha}, "models": {...}}``.

        Training tasks consume these, never the moving names (branch, tag) they came from.
        """
        pins: dict[str, Any] = {"image_digest": None, "image": None, "datasets": {}, "models": {}}
        for result in self.results:
            if not result.passed or result.pin is None:
                continue
            category, key, value = result.pin
            if category == "image_digest":
                pins["image_digest"] = value
                pins["image"] = key
            else:
                pins[category][key] = value
        return pins

    def summary(self) -> str:
        """``"7 checks: 5 passed, 2 failed"``."""
        return (
            f"{len(self.results)} checks: {len(self.results) - len(self.failures)} passed, "
            f"{len(self.failures)} failed"
        )

    def format(self) -> str:
        """The report as text: a summary line, then one line per check."""
        lines = [f"pre-flight {self.summary()} in {self.elapsed:.1f}s"]
        lines.extend(f"  {result.line()}" for result in self.results)
        return "\n".join(lines)

    def failure_message(self) -> str:
        """Every failed check with its fix, numbered: the message of the task failure."""
        lines = [f"pre-flight failed: {len(self.failures)} of {len(self.results)} checks failed"]
        for number, result in enumerate(self.failures, start=1):
            lines.append(f"{number}. {result.name}: {result.problem}")
            if result.fix:
                lines.append(f"   fix: {result.fix}")
        return "\n".join(lines)


def _guarded(check: Check) -> CheckResult:
    start = time.monotonic()
    try:
        result = check.run()
        if not isinstance(result, CheckResult):
            raise TypeError(f"check returned {type(result).__name__}, not CheckResult")
    except Exception as err:
        result = CheckResult.fail(
            check.name,
            f"the check itself raised {type(err).__name__}: {err}",
            "see the task log for the traceback; report it if it is a bug in the check",
        )
    # Problems and evidence quote servers (a Hub or registry error text): they reach the log, the
    # task's exception and XCom, so they are redacted here, once, for every check (issue 14).
    return CheckResult(
        name=check.name,
        passed=result.passed,
        evidence=redact(result.evidence),
        problem=redact(result.problem),
        fix=redact(result.fix),
        pin=result.pin,
        duration=time.monotonic() - start,
    )


def run_checks(
    checks: Iterable[Check],
    *,
    total_timeout: float = DEFAULT_TOTAL_TIMEOUT,
    max_workers: int = DEFAULT_MAX_WORKERS,
    on_result: Callable[[CheckResult], None] | None = None,
) -> PreflightReport:
    """Run every check concurrently and return the report; never raises for a failing check.

    A check still running when ``total_timeout`` seconds have passed fails with "did not finish";
    its thread is abandoned (it holds no resources the run needs), so the checklist always returns
    within about ``total_timeout``.

    :param checks: the checks; names should be unique (they label the report).
    :param total_timeout: bound on the whole checklist's wall time, seconds (> 0).
    :param max_workers: checks running at the same time (>= 1).
    :param on_result: called with each result as it completes (e.g. to log it).
    """
    checks = list(checks)
    if not (isinstance(total_timeout, int | float) and total_timeout > 0):
        raise GuardConfigError(f"total_timeout {total_timeout!r} must be a positive number of seconds")
    if isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1:
        raise GuardConfigError(f"max_workers {max_workers!r} must be an integer >= 1")
    start = time.monotonic()
    if not checks:
        return PreflightReport(results=(), elapsed=0.0)
    executor = ThreadPoolExecutor(max_workers=min(max_workers, len(checks)), thread_name_prefix="preflight")
    futures: dict[Future[CheckResult], int] = {}
    try:
        for index, check in enumerate(checks):
            future = executor.submit(_guarded, check)
            if on_result is not None:
                future.add_done_callback(lambda f: on_result(f.result()))
            futures[future] = index
        wait(futures, timeout=total_timeout)
    finally:
        executor.shutdown(wait=False, cancel_futures=True)
    results: list[CheckResult] = []
    for future, index in sorted(futures.items(), key=lambda item: item[1]):
        check = checks[index]
        if future.done() and not future.cancelled():
            results.append(future.result())
        else:
            result = CheckResult.fail(
                check.name,
                f"did not finish within the pre-flight time limit of {total_timeout:g}s",
                "check the remote service is reachable from the worker, or raise the pre-flight timeout",
            )
            results.append(result)
            if on_result is not None:
                on_result(result)
    return PreflightReport(results=tuple(results), elapsed=time.monotonic() - start)


def results_by_name(report: PreflightReport) -> Mapping[str, CheckResult]:
    """The report's results keyed by check name."""
    return {result.name: result for result in report.results}


def unique_names(checks: Sequence[Check]) -> None:
    """Reject duplicate check names, which would make the report ambiguous."""
    seen: set[str] = set()
    for check in checks:
        if check.name in seen:
            raise GuardConfigError(f"two pre-flight checks are named {check.name!r}; list each artifact once")
        seen.add(check.name)


__all__ = [
    "DEFAULT_MAX_WORKERS",
    "DEFAULT_TOTAL_TIMEOUT",
    "Check",
    "CheckResult",
    "PreflightReport",
    "results_by_name",
    "run_checks",
    "unique_names",
]
