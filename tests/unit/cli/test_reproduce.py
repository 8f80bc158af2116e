"""`airflow training-guard runs reproduce`: re-run from a manifest, compare bytes, name drift instead of re-running."""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from pathlib import Path

import pytest

from airflow_training_guard.cli.definition import get_training_guard_cli_commands
from airflow_training_guard.cli.reproduce import check_drift, reproduce, runs_reproduce
from airflow_training_guard.manifest import (
    RunManifest,
    file_sha256,
    model_artifact_digests,
    python_environment,
)
from airflow_training_guard.preflight.data import content_digest

pytestmark = pytest.mark.unit

# Deterministic "training": the model bytes depend on the partition key and on the data only.
PROGRAM = textwrap.dedent(
    """
    import hashlib, os, pathlib, sys
    data = pathlib.Path(sys.argv[1]).read_bytes()
    key = os.environ["TRAINING_GUARD_PARTITION_KEY"].encode()
    out = pathlib.Path(os.environ["TRAINING_GUARD_OUTPUT_DIR"])
    out.mkdir(parents=True, exist_ok=True)
    (out / "model.npy").write_bytes(hashlib.sha256(key + data).digest() * 100)
    extra = os.environ.get("NOISE")
    if extra:
        (out / "model.npy").write_bytes(os.urandom(64))
    """
)


@pytest.fixture
def recorded_run(tmp_path: Path) -> Path:
    """A run as LocalTrainingOperator records it: the model, and its manifest beside it."""
    program = tmp_path / "train.py"
    program.write_text(PROGRAM)
    data = tmp_path / "data"
    data.mkdir()
    (data / "part-0.csv").write_text("1,2,3\n")
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "model.npy").write_bytes(
        __import__("hashlib").sha256(b"berlin|2026-11-01" + b"1,2,3\n").digest() * 100
    )
    command = [sys.executable, str(program), str(data / "part-0.csv")]
    manifest = RunManifest(
        dag_id="retrain",
        run_id="scheduled__2026-11-01",
        task_id="train",
        partition_key="berlin|2026-11-01",
        image_digest=None,
        datasets={str(data): content_digest(data).digest},
        models={},
        params={
            "command": command,
            "command_files": {str(program): "sha256:" + file_sha256(program)},
            "cwd": None,
            "nproc_per_node": 1,
            "checkpoint_every_steps": 10,
        },
        code={"package_version": "0.1.0", "dag_file_sha256": "c" * 64},
        python_env=python_environment(),
        checkpoints=(),
        artifact_uri=str(model_dir),
        metrics={},
        created_at="2026-11-21T09:30:00+00:00",
        artifacts=model_artifact_digests(model_dir),
    )
    return manifest.write(model_dir)


def test_an_unchanged_run_reproduces_byte_identical(recorded_run: Path, tmp_path: Path) -> None:
    report = reproduce(recorded_run, work_dir=tmp_path / "again", on_line=lambda line: None)
    assert report.problems == []
    assert report.verdict == "identical" and report.exit_code == 0
    assert report.files["model.npy"]["equal"] is True
    assert (tmp_path / "again" / "output" / "model.npy").read_bytes() == (
        recorded_run.parent / "model.npy"
    ).read_bytes()


def test_a_nondeterministic_program_is_reported_different(
    recorded_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOISE", "1")
    report = reproduce(recorded_run, work_dir=tmp_path / "again", on_line=lambda line: None)
    assert report.verdict == "different" and report.exit_code == 1
    assert report.files["model.npy"]["equal"] is False


def test_changed_data_is_named_and_not_re_run(recorded_run: Path, tmp_path: Path) -> None:
    """Data changed underneath: a silent re-run would 'reproduce' a different model."""
    (tmp_path / "data" / "part-0.csv").write_text("1,2,4\n")
    report = reproduce(recorded_run, work_dir=tmp_path / "again", on_line=lambda line: None)
    assert report.verdict == "refused" and report.exit_code == 2
    assert any(f"the dataset {tmp_path / 'data'} changed since the run" in p for p in report.problems)
    assert not (tmp_path / "again").exists()


def test_a_changed_program_is_named(recorded_run: Path, tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text(PROGRAM + "\n# edited\n")
    blockers, drift = check_drift(RunManifest.read(recorded_run))
    assert blockers == []
    assert len(drift) == 1 and drift[0].startswith(
        f"the program file {str(tmp_path / 'train.py')!r} changed: recorded sha256:"
    )


def test_a_drifted_python_environment_is_named_and_force_re_runs_anyway(
    recorded_run: Path, tmp_path: Path
) -> None:
    data = json.loads(recorded_run.read_text())
    data["python_env"]["distributions_sha256"] = "0" * 64
    recorded_run.write_text(json.dumps(data))
    refused = reproduce(recorded_run, work_dir=tmp_path / "again", on_line=lambda line: None)
    assert refused.verdict == "refused"
    assert refused.problems[0].startswith(
        "the Python environment drifted (distributions_sha256: recorded '000"
    )
    assert "pass --force to re-run anyway" in refused.problems[0]

    forced = reproduce(recorded_run, work_dir=tmp_path / "again", force=True, on_line=lambda line: None)
    assert forced.verdict == "identical" and forced.problems == refused.problems


def test_a_container_run_is_refused_with_the_image_digest_to_use(recorded_run: Path, tmp_path: Path) -> None:
    data = json.loads(recorded_run.read_text())
    data["image_digest"] = "sha256:" + "a" * 64
    recorded_run.write_text(json.dumps(data))
    report = reproduce(recorded_run, work_dir=tmp_path / "again", force=True, on_line=lambda line: None)
    assert report.verdict == "refused"
    assert (
        "re-run it on Kubernetes with GuardedTrainingPodOperator(image='<repo>@sha256:aaaa"
        in report.problems[0]
    )


def test_a_manifest_without_model_digests_is_refused(recorded_run: Path, tmp_path: Path) -> None:
    data = json.loads(recorded_run.read_text())
    del data["artifacts"]  # written before the field existed: still readable
    recorded_run.write_text(json.dumps(data))
    report = reproduce(recorded_run, on_line=lambda line: None, force=True)
    assert report.verdict == "refused"
    assert "records no model file digests" in report.problems[0]


def test_the_cli_command_parses_prints_the_verdict_and_exits_with_its_code(
    recorded_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from airflow.cli.cli_parser import _add_command

    parser = argparse.ArgumentParser(prog="airflow")
    subparsers = parser.add_subparsers(dest="subcommand")
    for command in get_training_guard_cli_commands():
        _add_command(subparsers, command)
    args = parser.parse_args(
        [
            "training-guard",
            "runs",
            "reproduce",
            str(recorded_run),
            "--work-dir",
            str(tmp_path / "w"),
            "-o",
            "json",
        ]
    )
    assert "runs_reproduce" in repr(args.func) or args.func.__name__ == "runs_reproduce"
    with pytest.raises(SystemExit) as exited:
        runs_reproduce(args)
    assert exited.value.code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["verdict"] == "identical" and out["files"]["model.npy"]["equal"] is True
