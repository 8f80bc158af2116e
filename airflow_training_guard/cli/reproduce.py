"""``airflow training-guard runs reproduce MANIFEST``: re-run a past training run, compare the model.

The failure this answers: "can we still produce the model we shipped on 2026-11-01?" nobody knew,
because the data, the program or the environment had drifted since. This command reads a run
manifest (``run-manifest.json``, docs/run-manifest.md), checks that everything the run used is
still the same, re-runs the recorded command through the same launcher contract into a scratch
directory (fresh checkpoints, the same partition key and pins) and compares the SHA-256 of every
model file with the recorded one.

Drift is named, never silently re-run: a different Python environment, changed data behind a
``sha256:`` pin, a changed program file, or a run that used a container image (re-run it with its
image digest on Kubernetes) refuses with the reason (exit 2) unless ``--force`` is given, and even
then the report lists the drift.

Exit codes: 0 every model file is byte-identical; 1 the re-run differs (or failed); 2 refused.
Pure logic in :func:`check_drift` and :func:`reproduce`; no Airflow import.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airflow_training_guard.manifest import (
    RunManifest,
    check_python_environment,
    file_sha256,
    model_artifact_digests,
)

__all__ = ["ReproduceReport", "check_drift", "reproduce", "runs_reproduce"]

EXIT_IDENTICAL = 0
EXIT_DIFFERENT = 1
EXIT_REFUSED = 2


@dataclass
class ReproduceReport:
    """What a reproduction found.

    :param verdict: ``identical``, ``different``, ``failed`` (the re-run did not succeed) or
        ``refused`` (drift or a run that cannot be re-run here; see ``problems``).
    :param problems: each drift or blocker, as a sentence naming the value and the fix.
    :param files: model file -> ``{"recorded": digest, "reproduced": digest or None, "equal": bool}``.
    """

    manifest: str
    verdict: str
    problems: list[str] = field(default_factory=list)
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    work_dir: str | None = None
    duration_seconds: float | None = None
    detail: str = ""

    @property
    def exit_code(self) -> int:
        if self.verdict == "identical":
            return EXIT_IDENTICAL
        if self.verdict == "refused":
            return EXIT_REFUSED
        return EXIT_DIFFERENT

    def to_dict(self) -> dict[str, Any]:
        return {
            "manifest": self.manifest,
            "verdict": self.verdict,
            "problems": list(self.problems),
            "files": self.files,
            "work_dir": self.work_dir,
            "duration_seconds": self.duration_seconds,
            "detail": self.detail,
        }


def check_drift(manifest: RunManifest) -> tuple[list[str], list[str]]:
    """``(blockers, drift)``: why the run cannot be re-run here at all, and what changed since.

    Both are sentences naming the value and the fix; ``--force`` overrides drift, never blockers.
    """
    blockers: list[str] = []
    problems: list[str] = []
    if manifest.image_digest:
        blockers.append(
            f"the run used the container image digest {manifest.image_digest}; re-run it on Kubernetes "
            "with GuardedTrainingPodOperator(image='<repo>@" + manifest.image_digest + "'), this command "
            "re-runs local-launcher runs only"
        )
    command = manifest.params.get("command")
    if not isinstance(command, list) or not command or not all(isinstance(part, str) for part in command):
        blockers.append(
            "the manifest records no command (params.command); it was not written by LocalTrainingOperator"
        )
    if not manifest.artifacts:
        blockers.append(
            "the manifest records no model file digests (field 'artifacts'; written by an older version), "
            "so there is nothing to compare a re-run with"
        )
    for difference in check_python_environment(manifest):
        problems.append(
            f"the Python environment drifted ({difference}); recreate it (pip install -c "
            "constraints/constraints-3.11.txt ...) or pass --force to re-run anyway"
        )
    cwd = manifest.params.get("cwd") or None
    for part, recorded in dict(manifest.params.get("command_files") or {}).items():
        path = Path(part) if os.path.isabs(part) else Path(cwd or os.getcwd()) / part
        if not path.is_file():
            problems.append(f"the program file {part!r} the run used no longer exists")
            continue
        current = "sha256:" + file_sha256(path)
        if current != recorded:
            problems.append(f"the program file {part!r} changed: recorded {recorded}, now {current}")
    problems.extend(_data_drift(manifest))
    return blockers, problems


def _data_drift(manifest: RunManifest) -> list[str]:
    from airflow_training_guard.preflight.data import (
        DataPinError,
        is_content_digest,
        open_location,
        verify_content_digest,
    )

    problems: list[str] = []
    for kind, pins in (("dataset", manifest.datasets), ("model", manifest.models)):
        for location, pin in pins.items():
            if not is_content_digest(pin):
                continue  # a Hub commit SHA is immutable: the program loads that revision
            try:
                verify_content_digest(open_location(location), pin, location=location)
            except DataPinError as err:
                problems.append(f"the {kind} {location} changed since the run: {err}")
            except (OSError, ValueError) as err:
                problems.append(f"the {kind} {location} cannot be read: {err}")
    return problems


def reproduce(
    manifest_path: str | os.PathLike[str],
    *,
    work_dir: str | os.PathLike[str] | None = None,
    force: bool = False,
    timeout: float = 7200.0,
    on_line: Callable[[str], None] = print,
) -> ReproduceReport:
    """Re-run the run recorded at ``manifest_path`` and compare its model files.

    :param work_dir: scratch directory for the re-run's checkpoints and model (default: a new
        temporary directory, kept so the reproduced model can be inspected).
    :param force: re-run despite drift (the report still lists it).
    :param timeout: hard deadline of the re-run, seconds.
    """
    from airflow_training_guard.launchers.process import ProcessSupervisor, SupervisionLimits
    from airflow_training_guard.runtime.contract import TrainingEnvironment

    manifest = RunManifest.read(manifest_path)
    report = ReproduceReport(manifest=str(manifest_path), verdict="refused")
    blockers, drift = check_drift(manifest)
    report.problems = blockers + drift
    if blockers or (drift and not force):
        return report

    scratch = (
        Path(work_dir) if work_dir is not None else Path(tempfile.mkdtemp(prefix="training-guard-reproduce-"))
    )
    checkpoint_dir, output_dir = scratch / "checkpoints", scratch / "output"
    for directory in (checkpoint_dir, output_dir):
        if directory.exists():
            shutil.rmtree(directory)  # a re-run must start from step 0, like the original fresh start
        directory.mkdir(parents=True)
    report.work_dir = str(scratch)
    every = manifest.params.get("checkpoint_every_steps")
    environment = TrainingEnvironment(
        partition_key=manifest.partition_key,
        checkpoint_dir=checkpoint_dir,
        checkpoint_every=int(every) if isinstance(every, int) and every > 0 else 100,
        heartbeat_file=checkpoint_dir / "heartbeat.json",
        output_dir=output_dir,
        pins={"datasets": dict(manifest.datasets), "models": dict(manifest.models)},
    )
    command = [str(part) for part in manifest.params["command"]]
    env = {**os.environ, **environment.to_env(), "PYTHONUNBUFFERED": "1"}
    supervisor = ProcessSupervisor(
        command=command,
        env=env,
        limits=SupervisionLimits(
            deadline=timeout,
            startup_timeout=timeout,
            stall_after=None,
            poll_interval=1.0,
            watch_heartbeat=False,
        ),
        cwd=manifest.params.get("cwd") or None,
        on_line=on_line,
        multi_rank="torch.distributed.run" in command,
    )
    outcome = supervisor.run()
    report.duration_seconds = round(outcome.duration, 3)
    if not outcome.succeeded:
        report.verdict = "failed"
        ended = outcome.kind.value if outcome.kind is not None else "cancelled"
        report.detail = f"the re-run failed ({ended}): {outcome.detail}"
        return report
    reproduced = model_artifact_digests(output_dir)
    for name, recorded in sorted(manifest.artifacts.items()):
        current = reproduced.get(name)
        report.files[name] = {"recorded": recorded, "reproduced": current, "equal": current == recorded}
    report.verdict = "identical" if all(entry["equal"] for entry in report.files.values()) else "different"
    return report


def runs_reproduce(args: argparse.Namespace) -> None:
    """CLI entry point: print the report (text or ``--output json``) and exit 0, 1 or 2."""
    report = reproduce(
        args.manifest,
        work_dir=getattr(args, "work_dir", None),
        force=bool(getattr(args, "force", False)),
        timeout=float(getattr(args, "timeout", None) or 7200.0),
        on_line=lambda line: print(f"[train] {line}", file=sys.stderr),
    )
    if getattr(args, "output", None) == "json":
        print(json.dumps(report.to_dict(), indent=2, sort_keys=True))
    else:
        print(f"run manifest: {report.manifest}")
        for problem in report.problems:
            print(f"  drift: {problem}")
        if report.detail:
            print(f"  {report.detail}")
        for name, entry in report.files.items():
            mark = "identical" if entry["equal"] else "DIFFERENT"
            print(f"  {name}: {mark} (recorded {entry['recorded']}, reproduced {entry['reproduced']})")
        if report.work_dir:
            print(f"  re-run files: {report.work_dir}")
        print(f"verdict: {report.verdict}")
    sys.exit(report.exit_code)
