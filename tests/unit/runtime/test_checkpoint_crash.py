"""Checkpointer under kill -9 at every filesystem step of save, replace and prune.

Each scenario is run once to enumerate its mutating filesystem calls (mkdir, rename, replace,
fsync, unlink, rmdir; ``shutil.rmtree`` goes through unlink and rmdir). Then, for every call N, a
fresh copy of the scenario runs in a forked process that SIGKILLs itself just before call N: a
real kill -9 (no ``finally``, no ``except BaseException``, no atexit), at a deterministic point.
After each kill the directory is checked the way a retry sees it: ``scan()`` first (what the
operators call), then ``latest()``, then a new save that must clean up after the dead writer.
"""

from __future__ import annotations

import json
import os
import re
import signal
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from airflow_training_guard.runtime import Checkpointer

pytestmark = pytest.mark.unit

MUTATING_CALLS = ("mkdir", "rename", "replace", "fsync", "unlink", "rmdir")


def _short(name: str) -> str:
    # Temporary names carry pid, token and host; the label should read the same in every run.
    return re.sub(r"^(\.tmp-[a-z]+-step-[0-9]+)-.*$", r"\1-*", name)


def _describe(call: str, args: tuple[object, ...]) -> str:
    names: list[str] = []
    for arg in args[:2]:
        if isinstance(arg, int) and call != "fsync":
            continue  # mkdir's mode
        if isinstance(arg, int):  # fsync(fd): name the file or directory behind the descriptor
            try:
                arg = os.readlink(f"/proc/self/fd/{arg}")
            except OSError:
                names.append(f"fd {arg}")
                continue
        if isinstance(arg, str | bytes | os.PathLike):
            names.append(_short(Path(os.fsdecode(arg)).name))
    return f"{call}({', '.join(names)})"


def _run_killed_at(crash_at: int | None, action: Callable[[], None], calls_log: Path) -> int:
    """Run ``action`` in a forked child that SIGKILLs itself before mutating call ``crash_at``.

    With ``crash_at=None`` the child runs to the end and writes the labels of its calls to
    ``calls_log``. Returns the child's wait status.
    """
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child never returns into pytest
        try:
            labels: list[str] = []

            def counted(call: str, original: Callable[..., object]) -> Callable[..., object]:
                def wrapper(*args: object, **kwargs: object) -> object:
                    if len(labels) == crash_at:
                        os.kill(os.getpid(), signal.SIGKILL)
                    labels.append(_describe(call, args))
                    return original(*args, **kwargs)

                return wrapper

            for call in MUTATING_CALLS:
                setattr(os, call, counted(call, getattr(os, call)))
            action()
            calls_log.write_text(json.dumps(labels))
            os._exit(0)
        except BaseException:
            traceback.print_exc()
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    return status


def killed_at_every_call(
    tmp_path: Path, prepare: Callable[[Path], None], action: Callable[[Path], None]
) -> Iterator[tuple[str, Path]]:
    """Yield ``(label, directory)`` for a copy of the scenario killed before each mutating call."""
    calls_log = tmp_path / "calls.json"
    dry_run = tmp_path / "complete"
    prepare(dry_run)
    status = _run_killed_at(None, lambda: action(dry_run), calls_log)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, "the scenario fails without a crash"
    labels = json.loads(calls_log.read_text())
    assert labels, "the scenario made no filesystem call to crash in"
    for index, label in enumerate(labels):
        directory = tmp_path / f"killed-{index:03d}"
        prepare(directory)
        status = _run_killed_at(index, lambda directory=directory: action(directory), calls_log)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, (
            f"the child was not killed before call #{index} {label} (status {status})"
        )
        yield f"#{index} before {label}", directory
    yield "after the last call", dry_run


def weights(step: int, version: str) -> dict[str, bytes]:
    return {"weights.bin": f"{version} weights of step {step}".encode() * 100, "optimizer.bin": b"adam"}


def resume_point(directory: Path, keep_last: int) -> tuple[int, bytes] | str:
    """What a retry resumes from: ``(step, weights)``, or why it cannot resume from anything."""
    checkpointer = Checkpointer(directory, keep_last=keep_last)
    scan = checkpointer.scan()  # the operators look first, before the program starts
    if scan.corrupt:
        return f"scan() reports corrupt checkpoints: {scan.corrupt}"
    if scan.newest_valid is None:
        return "scan() finds no valid checkpoint: the retry would start from step 0"
    latest = checkpointer.latest()  # then the program itself
    if latest is None or latest.step != scan.newest_valid.step:
        return f"latest() returns {latest!r} but scan() found step {scan.newest_valid.step}"
    return latest.step, latest.read_bytes("weights.bin")


def retry_cleans_up(directory: Path, keep_last: int, step: int) -> str | None:
    """The retry's first save succeeds and leaves only checkpoints: no leftover of the dead writer."""
    checkpointer = Checkpointer(directory, keep_last=keep_last)
    checkpointer.save(step, weights(step, "retry"))
    leftovers = sorted(p.name for p in directory.iterdir() if not p.name.startswith("step-"))
    if leftovers:
        return f"leftovers after the retry's save: {leftovers}"
    latest = checkpointer.latest()
    if latest is None or latest.step != step:
        return f"after the retry's save, latest() is {latest!r}"
    return None


def assert_no_failures(failures: list[str]) -> None:
    assert failures == [], "kill -9 at these points lost progress:\n" + "\n".join(failures)


# --- scenarios -------------------------------------------------------------------------------------------


def test_kill_9_at_every_step_of_replacing_a_step_with_keep_last_1_never_loses_that_step(
    tmp_path: Path,
) -> None:
    """Killed between the two renames of a replace, the job lost its only checkpoint.

    The periodic save and the SIGTERM save hit the same step; the old checkpoint was moved to
    ``.tmp-old-*``, which scan() and latest() ignore, so with keep_last=1 the retry resumed from
    step 0 (issue 13).
    """

    def prepare(directory: Path) -> None:
        Checkpointer(directory, keep_last=1).save(10, weights(10, "old"))

    def replace(directory: Path) -> None:
        Checkpointer(directory, keep_last=1).save(10, weights(10, "new"))

    failures: list[str] = []
    for label, directory in killed_at_every_call(tmp_path, prepare, replace):
        found = resume_point(directory, keep_last=1)
        if isinstance(found, str):
            failures.append(f"{label}: {found}")
            continue
        step, data = found
        if step != 10 or data not in (weights(10, "old")["weights.bin"], weights(10, "new")["weights.bin"]):
            failures.append(f"{label}: resumed from step {step} with unexpected weights")
        elif label == "after the last call" and data != weights(10, "new")["weights.bin"]:
            failures.append(f"{label}: the completed replace did not win")
        problem = retry_cleans_up(directory, keep_last=1, step=11)
        if problem:
            failures.append(f"{label}: {problem}")
    assert_no_failures(failures)


def test_kill_9_at_every_step_of_replacing_a_step_keeps_older_checkpoints(tmp_path: Path) -> None:
    """Replacing step 20 with keep_last=3 must neither lose step 20 nor prune step 10."""

    def prepare(directory: Path) -> None:
        checkpointer = Checkpointer(directory, keep_last=3)
        checkpointer.save(10, weights(10, "old"))
        checkpointer.save(20, weights(20, "old"))

    def replace(directory: Path) -> None:
        Checkpointer(directory, keep_last=3).save(20, weights(20, "new"))

    failures: list[str] = []
    for label, directory in killed_at_every_call(tmp_path, prepare, replace):
        found = resume_point(directory, keep_last=3)
        if isinstance(found, str):
            failures.append(f"{label}: {found}")
            continue
        if found[0] != 20:
            failures.append(f"{label}: resumed from step {found[0]}, not 20")
        steps = [c.step for c in Checkpointer(directory, keep_last=3).scan().valid]
        if steps != [20, 10]:
            failures.append(f"{label}: valid steps {steps}, expected [20, 10]")
    assert_no_failures(failures)


def test_kill_9_at_every_step_of_a_save_and_its_prune_keeps_the_newest_reported_step(
    tmp_path: Path,
) -> None:
    """A save of a new step prunes the previous one (keep_last=1): at no instant may both be gone."""

    def prepare(directory: Path) -> None:
        checkpointer = Checkpointer(directory, keep_last=1)
        checkpointer.save(10, weights(10, "old"))
        checkpointer.save(20, weights(20, "old"))

    def save_next(directory: Path) -> None:
        Checkpointer(directory, keep_last=1).save(30, weights(30, "new"))

    failures: list[str] = []
    for label, directory in killed_at_every_call(tmp_path, prepare, save_next):
        found = resume_point(directory, keep_last=1)
        if isinstance(found, str):
            failures.append(f"{label}: {found}")
            continue
        step, data = found
        expected = {20: weights(20, "old")["weights.bin"], 30: weights(30, "new")["weights.bin"]}
        if expected.get(step) != data:
            failures.append(f"{label}: resumed from step {step} with unexpected weights")
        problem = retry_cleans_up(directory, keep_last=1, step=31)
        if problem:
            failures.append(f"{label}: {problem}")
    assert_no_failures(failures)


def test_kill_9_at_every_step_of_a_prune_never_tears_a_checkpoint(tmp_path: Path) -> None:
    """A delete interrupted half-way must not leave a torn step-* directory that looks corrupt."""

    def prepare(directory: Path) -> None:
        checkpointer = Checkpointer(directory, keep_last=3)
        for step in (10, 20, 30):
            checkpointer.save(step, weights(step, "old"))

    def prune(directory: Path) -> None:
        Checkpointer(directory, keep_last=1).prune()

    failures: list[str] = []
    for label, directory in killed_at_every_call(tmp_path, prepare, prune):
        found = resume_point(directory, keep_last=1)
        if isinstance(found, str):
            failures.append(f"{label}: {found}")
        elif found != (30, weights(30, "old")["weights.bin"]):
            failures.append(f"{label}: resumed from step {found[0]}, not 30")
        problem = retry_cleans_up(directory, keep_last=1, step=40)
        if problem:
            failures.append(f"{label}: {problem}")
    assert_no_failures(failures)
