"""Checkpointer: atomic saves that survive kill -9, checksum verification, pruning, bad input."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from airflow_training_guard.exceptions import CheckpointError
from airflow_training_guard.runtime import (
    Checkpoint,
    Checkpointer,
    TrainingEnvironment,
    UnknownCheckpointFileError,
)
from airflow_training_guard.runtime.checkpoint import _host_label, encode_manifest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[3]
PROGRAM = Path(__file__).with_name("training_program.py")


# --- helpers -------------------------------------------------------------------------------------------


def start_program(tmp_path: Path, mode: str, checkpoint_dir: Path, *, keep: int = 3) -> subprocess.Popen[str]:
    env = dict(os.environ)
    env.update(
        TrainingEnvironment(
            partition_key="2026-11-01", checkpoint_dir=checkpoint_dir, checkpoint_keep=keep
        ).to_env()
    )
    env["TEST_READY_FILE"] = str(tmp_path / "ready")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return subprocess.Popen(
        [sys.executable, str(PROGRAM), mode],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(path: Path, proc: subprocess.Popen[str], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            _, err = proc.communicate()
            pytest.fail(f"program exited {proc.returncode} before {path.name} appeared:\n{err}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"{path.name} did not appear within {timeout}s")
        time.sleep(0.01)


def kill_9(proc: subprocess.Popen[str]) -> str:
    """SIGKILL the program (no handler, no cleanup can run) and return its stdout."""
    proc.send_signal(signal.SIGKILL)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    return out


def dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def save_steps(checkpointer: Checkpointer, *steps: int) -> list[Checkpoint]:
    return [checkpointer.save(step, {"weights.bin": f"weights {step}".encode()}) for step in steps]


def step_dirs(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("step-"))


def flip_byte(path: Path, offset: int = 0) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


# --- saving and reading ----------------------------------------------------------------------------


def test_saved_checkpoint_is_what_latest_returns(tmp_path: Path) -> None:
    checkpointer = Checkpointer(tmp_path / "ckpt")
    saved = checkpointer.save(
        120, {"weights.npy": b"\x01\x02\x03", "optim/state.bin": b"adam"}, metadata={"loss": 0.25}
    )

    latest = checkpointer.latest()
    assert latest == saved
    assert latest.step == 120
    assert latest.path == tmp_path / "ckpt" / "step-000000000120"
    assert latest.metadata == {"loss": 0.25}
    assert latest.read_bytes("weights.npy") == b"\x01\x02\x03"
    assert latest.read_bytes("optim/state.bin") == b"adam"
    assert latest.file("optim/state.bin") == latest.path / "optim" / "state.bin"
    assert abs(latest.created_at - time.time()) < 60


def test_manifest_lists_step_sha256_of_every_file_metadata_time_and_format(tmp_path: Path) -> None:
    checkpointer = Checkpointer(tmp_path)
    checkpointer.save(7, {"a.bin": b"abc"}, metadata={"epoch": 2})

    manifest = json.loads((tmp_path / "step-000000000007" / "MANIFEST.json").read_text())
    assert manifest["format"] == "airflow-training-guard-checkpoint"
    assert manifest["format_version"] == 2
    assert manifest["step"] == 7
    # sha256("abc")
    assert manifest["files"] == {"a.bin": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"}
    assert manifest["metadata"] == {"epoch": 2}
    assert isinstance(manifest["created_at"], float)


def test_save_with_a_writer_callable_checksums_every_file_it_wrote(tmp_path: Path) -> None:
    def write(directory: Path) -> None:
        assert directory.name.startswith(".tmp-"), (
            "the writer must write into the temp dir, not the final one"
        )
        (directory / "model.pt").write_bytes(b"model")
        (directory / "shards").mkdir()
        (directory / "shards" / "0.bin").write_bytes(b"shard0")

    saved = Checkpointer(tmp_path).save(3, write)

    assert set(saved.files) == {"model.pt", "shards/0.bin"}
    latest = Checkpointer(tmp_path).latest()
    assert latest is not None and latest.read_bytes("shards/0.bin") == b"shard0"


def test_saving_an_existing_step_replaces_it(tmp_path: Path) -> None:
    """The example trainer saves step N periodically and again on SIGTERM at the same step."""
    checkpointer = Checkpointer(tmp_path)
    checkpointer.save(50, {"w.bin": b"old", "only-in-old.bin": b"x"}, metadata={"reason": "periodic"})
    checkpointer.save(50, {"w.bin": b"new"}, metadata={"reason": "preempted"})

    latest = checkpointer.latest()
    assert latest is not None
    assert latest.read_bytes("w.bin") == b"new"
    assert set(latest.files) == {"w.bin"}
    assert not (latest.path / "only-in-old.bin").exists()
    # The new checkpoint landed under the next revision name before the old one was pruned.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-000000000050.r1"]
    assert latest.path == tmp_path / "step-000000000050.r1"
    assert [c.step for c in checkpointer.scan().valid] == [50]


def test_failed_rename_while_replacing_a_step_keeps_the_old_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Replacing step N must never leave the job without step N when the new one cannot land."""
    checkpointer = Checkpointer(tmp_path)
    checkpointer.save(50, {"w.bin": b"old"})
    real_rename = os.rename

    def rename(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        if Path(src).name.startswith(".tmp-new-"):
            raise OSError(28, "No space left on device")
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", rename)
    with pytest.raises(OSError, match="No space left"):
        checkpointer.save(50, {"w.bin": b"new"})
    monkeypatch.undo()

    latest = checkpointer.latest()
    assert latest is not None and latest.read_bytes("w.bin") == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-000000000050"]


def test_writer_that_raises_leaves_no_checkpoint_and_no_temp_dir(tmp_path: Path) -> None:
    def write(directory: Path) -> None:
        (directory / "half.bin").write_bytes(b"half")
        raise RuntimeError("CUDA out of memory while serializing")

    checkpointer = Checkpointer(tmp_path)
    with pytest.raises(RuntimeError, match="CUDA out of memory"):
        checkpointer.save(1, write)
    assert list(tmp_path.iterdir()) == []
    assert checkpointer.latest() is None


def test_checkpoints_are_ordered_by_step_number_not_by_name(tmp_path: Path) -> None:
    checkpointer = Checkpointer(tmp_path, keep_last=10)
    save_steps(checkpointer, 9, 10, 100)
    # A hand-made, unpadded name still counts and sorts by its number.
    (tmp_path / "step-000000000100").rename(tmp_path / "step-100")

    assert [c.step for c in checkpointer.scan().valid] == [100, 10, 9]
    latest = checkpointer.latest()
    assert latest is not None and latest.step == 100


def test_only_step_directories_count_and_other_entries_are_left_alone(tmp_path: Path) -> None:
    checkpointer = Checkpointer(tmp_path)
    save_steps(checkpointer, 1)
    (tmp_path / "heartbeat.json").write_text("{}")
    (tmp_path / "step-abc").mkdir()
    (tmp_path / "notes").mkdir()

    scan = checkpointer.scan()
    assert [c.step for c in scan.valid] == [1]
    assert scan.corrupt == []
    checkpointer.prune()
    assert (tmp_path / "heartbeat.json").exists() and (tmp_path / "step-abc").exists()


def test_missing_checkpoint_directory_holds_no_checkpoints(tmp_path: Path) -> None:
    checkpointer = Checkpointer(tmp_path / "does-not-exist-yet")
    assert checkpointer.latest() is None
    assert checkpointer.scan().valid == [] and checkpointer.scan().corrupt == []
    assert checkpointer.scan().newest_valid is None
    assert checkpointer.prune() == []


def test_checkpoint_directory_that_is_a_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "ckpt").write_text("oops")
    with pytest.raises(CheckpointError, match=r"ckpt is a file, not a directory"):
        Checkpointer(tmp_path / "ckpt").latest()


# --- torn saves: real processes killed with SIGKILL --------------------------------------------------


def test_kill_9_in_the_middle_of_a_save_never_yields_a_torn_checkpoint(tmp_path: Path) -> None:
    """A preempted job restarted from step 0 because the checkpoint it died writing looked newest.

    The program is SIGKILLed while it writes a large file of step 30: the retry must resume from
    step 20, the last complete checkpoint, and the torn step 30 must not count as valid or corrupt.
    """
    checkpoint_dir = tmp_path / "ckpt"
    proc = start_program(tmp_path, "hang-in-save", checkpoint_dir)
    wait_for(tmp_path / "ready", proc)
    kill_9(proc)

    temp_dirs = [p for p in checkpoint_dir.iterdir() if p.name.startswith(".tmp-new-step-000000000030-")]
    assert len(temp_dirs) == 1, "the torn save should be visible as a temp dir"
    assert (temp_dirs[0] / "optimizer.bin").stat().st_size >= 1_000_000

    checkpointer = Checkpointer(checkpoint_dir)
    latest = checkpointer.latest()
    assert latest is not None
    assert latest.step == 20
    assert latest.read_bytes("weights.bin") == bytes([20]) * 100_000
    scan = checkpointer.scan()
    assert [c.step for c in scan.valid] == [20, 10]
    assert scan.corrupt == [], "a torn save is not a checkpoint at all, not even a corrupt one"

    # The retry's first save cleans up the dead writer's leftovers.
    checkpointer.save(30, {"weights.bin": b"redone"})
    assert not temp_dirs[0].exists()
    assert step_dirs(checkpoint_dir) == ["step-000000000010", "step-000000000020", "step-000000000030"]


@pytest.mark.parametrize("delay", [0.0, 0.013, 0.031, 0.057, 0.089, 0.14])
def test_kill_9_at_any_moment_of_a_save_loop_leaves_only_valid_checkpoints(
    tmp_path: Path, delay: float
) -> None:
    """Every checkpoint that was reported saved survives, and no step-* directory is ever torn.

    Saves and prunes run back to back, so the kill lands in a write, an fsync, a rename or a
    delete depending on the delay.
    """
    checkpoint_dir = tmp_path / "ckpt"
    proc = start_program(tmp_path, "save-loop", checkpoint_dir, keep=2)
    wait_for(tmp_path / "ready", proc)
    time.sleep(delay)
    out = kill_9(proc)
    reported = [int(line) for line in out.split()]
    assert reported, "the program reported no completed save"

    scan = Checkpointer(checkpoint_dir, keep_last=2).scan()
    assert scan.corrupt == []
    assert scan.newest_valid is not None
    assert scan.newest_valid.step >= reported[-1]
    newest = scan.newest_valid
    assert newest.read_bytes("model/weights.bin") == newest.step.to_bytes(8, "big") * 32_768


@pytest.mark.parametrize("delay", [0.0, 0.007, 0.019, 0.043, 0.071, 0.11])
def test_kill_9_at_any_moment_of_replacing_one_step_never_loses_it(tmp_path: Path, delay: float) -> None:
    """With keep_last=1, a kill between the two renames of a replace left no checkpoint at all.

    The old checkpoint sat in ``.tmp-old-*``, which scan() and latest() ignore, so the retry
    resumed from step 0 (issue 13). The program saves step 1 over and over; wherever the kill
    lands, step 1 must be there, at least as new as the last save the program reported.
    """
    checkpoint_dir = tmp_path / "ckpt"
    proc = start_program(tmp_path, "replace-loop", checkpoint_dir, keep=1)
    wait_for(tmp_path / "ready", proc)
    time.sleep(delay)
    out = kill_9(proc)
    reported = [int(line) for line in out.split()]
    assert reported, "the program reported no completed save"

    scan = Checkpointer(checkpoint_dir, keep_last=1).scan()
    assert scan.corrupt == []
    newest = scan.newest_valid
    assert newest is not None and newest.step == 1
    version = newest.metadata["version"]
    assert version >= reported[-1]
    assert newest.read_bytes("model/weights.bin") == int(version).to_bytes(8, "big") * 32_768


# --- corruption ---------------------------------------------------------------------------------------


def _corrupt_flipped_byte(path: Path) -> str:
    flip_byte(path / "weights.bin", 3)
    return r"file 'weights.bin' has sha256 [0-9a-f]{64} but MANIFEST.json says [0-9a-f]{64} \(damaged\)"


def _corrupt_missing_file(path: Path) -> str:
    (path / "weights.bin").unlink()
    return r"file 'weights.bin' listed in MANIFEST.json is missing"


def _corrupt_missing_manifest(path: Path) -> str:
    (path / "MANIFEST.json").unlink()
    return r"MANIFEST.json is missing"


def _corrupt_garbled_manifest(path: Path) -> str:
    manifest = path / "MANIFEST.json"
    manifest.write_bytes(manifest.read_bytes()[:40])  # truncated by a partial copy
    return r"MANIFEST.json is not valid JSON"


def rewrite_manifest(path: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    """Edit a checkpoint's manifest and sign it again, as a buggy or foreign writer would."""
    manifest = path / "MANIFEST.json"
    data = json.loads(manifest.read_text())
    data.pop("manifest_sha256", None)
    edit(data)
    manifest.write_bytes(encode_manifest(data))


def _corrupt_manifest_of_another_step(path: Path) -> str:
    rewrite_manifest(path, lambda data: data.update(step=999))
    return r"MANIFEST.json says step 999 but the directory is step 20"


def _corrupt_manifest_escaping_the_checkpoint(path: Path) -> str:
    rewrite_manifest(path, lambda data: data["files"].update({"../../etc/passwd": "0" * 64}))
    return r"MANIFEST.json lists an invalid file name '../../etc/passwd'"


def _corrupt_future_format_version(path: Path) -> str:
    rewrite_manifest(path, lambda data: data.update(format_version=3))
    return r"format_version 3; this runtime reads versions 1 and 2"


def _corrupt_flipped_byte_in_manifest(path: Path) -> str:
    manifest = path / "MANIFEST.json"
    raw = manifest.read_bytes()
    flip_byte(manifest, raw.index(b'"created_at": ') + len(b'"created_at": ') + 1)
    return r"MANIFEST.json does not match its manifest_sha256 .*: it was damaged"


def _corrupt_manifest_edited_by_hand(path: Path) -> str:
    manifest = path / "MANIFEST.json"
    data = json.loads(manifest.read_text())
    data.pop("manifest_sha256")
    manifest.write_text(json.dumps(data))
    return r"MANIFEST.json of format_version 2 does not begin with its manifest_sha256"


CORRUPTIONS = [
    _corrupt_flipped_byte,
    _corrupt_missing_file,
    _corrupt_missing_manifest,
    _corrupt_garbled_manifest,
    _corrupt_manifest_of_another_step,
    _corrupt_manifest_escaping_the_checkpoint,
    _corrupt_future_format_version,
    _corrupt_flipped_byte_in_manifest,
    _corrupt_manifest_edited_by_hand,
]


@pytest.mark.parametrize("corrupt", CORRUPTIONS, ids=lambda f: f.__name__.removeprefix("_corrupt_"))
def test_latest_skips_a_corrupt_newest_checkpoint_and_scan_reports_why(
    tmp_path: Path, corrupt: object, caplog: pytest.LogCaptureFixture
) -> None:
    """A job loaded damaged weights from its newest checkpoint and trained garbage for hours."""
    checkpointer = Checkpointer(tmp_path)
    save_steps(checkpointer, 10, 20)
    reason_pattern = corrupt(tmp_path / "step-000000000020")  # type: ignore[operator]

    with caplog.at_level(logging.WARNING):
        latest = checkpointer.latest()
    assert latest is not None and latest.step == 10
    assert "skipping corrupt checkpoint" in caplog.text and "step-000000000020" in caplog.text

    scan = checkpointer.scan()
    assert [c.step for c in scan.valid] == [10]
    assert len(scan.corrupt) == 1
    path, reason = scan.corrupt[0]
    assert path == tmp_path / "step-000000000020"
    assert re.search(reason_pattern, reason), reason


def test_latest_skips_checkpoint_with_flipped_byte(tmp_path: Path) -> None:
    checkpointer = Checkpointer(tmp_path)
    save_steps(checkpointer, 1, 2)
    flip_byte(tmp_path / "step-000000000002" / "weights.bin")
    latest = checkpointer.latest()
    assert latest is not None and latest.step == 1


def test_directory_with_only_corrupt_checkpoints_has_no_latest_and_scan_lists_them_newest_first(
    tmp_path: Path,
) -> None:
    checkpointer = Checkpointer(tmp_path)
    save_steps(checkpointer, 1, 2, 3)
    flip_byte(tmp_path / "step-000000000001" / "weights.bin")
    (tmp_path / "step-000000000002" / "MANIFEST.json").unlink()
    (tmp_path / "step-000000000003" / "MANIFEST.json").write_text("{not json")

    assert checkpointer.latest() is None
    scan = checkpointer.scan()
    assert scan.valid == [] and scan.newest_valid is None
    assert [p.name for p, _ in scan.corrupt] == [
        "step-000000000003",
        "step-000000000002",
        "step-000000000001",
    ]
    assert all(reason for _, reason in scan.corrupt)


def test_read_bytes_refuses_a_file_damaged_after_the_checkpoint_was_verified(tmp_path: Path) -> None:
    checkpointer = Checkpointer(tmp_path)
    save_steps(checkpointer, 5)
    latest = checkpointer.latest()
    assert latest is not None
    flip_byte(latest.file("weights.bin"))
    with pytest.raises(CheckpointError, match=r"file 'weights.bin' of checkpoint step 5 .* has sha256"):
        latest.read_bytes("weights.bin")


def test_asking_for_a_file_the_manifest_does_not_list_names_it_and_lists_what_exists(tmp_path: Path) -> None:
    checkpointer = Checkpointer(tmp_path)
    saved = checkpointer.save(5, {"weights.bin": b"w", "optimizer.bin": b"o"})
    with pytest.raises(KeyError):
        saved.file("model.pt")
    with pytest.raises(
        UnknownCheckpointFileError,
        match=r"file 'model.pt' is not in checkpoint step 5 .*it holds: optimizer.bin, weights.bin",
    ):
        saved.read_bytes("model.pt")


def test_every_flipped_byte_of_the_manifest_makes_the_checkpoint_corrupt(tmp_path: Path) -> None:
    """The manifest had no checksum: one flipped byte in its metadata loaded damaged metadata.

    A resume reads the metadata (loss, data position) and the step from the manifest; "valid" must
    mean every one of those bytes verified, not only the files' (issue 13).
    """
    checkpointer = Checkpointer(tmp_path)
    checkpointer.save(20, {"weights.bin": b"w"}, metadata={"loss": 0.25, "data_position": 1234})
    manifest = tmp_path / "step-000000000020" / "MANIFEST.json"
    original = manifest.read_bytes()

    loaded_damaged: list[tuple[int, str]] = []
    for offset in range(len(original)):
        damaged = bytearray(original)
        damaged[offset] ^= 0x01
        manifest.write_bytes(bytes(damaged))
        if checkpointer.scan().valid:
            loaded_damaged.append((offset, chr(original[offset])))
    assert loaded_damaged == [], f"damaged manifests that loaded as valid: {loaded_damaged}"

    manifest.write_bytes(original)
    latest = checkpointer.latest()
    assert latest is not None and latest.metadata == {"loss": 0.25, "data_position": 1234}


def test_flipped_byte_in_manifest_metadata_is_skipped_not_resumed_from(tmp_path: Path) -> None:
    """A resume read ``data_position`` 1235 instead of 1234 from a damaged manifest and skipped data."""
    checkpointer = Checkpointer(tmp_path)
    checkpointer.save(10, {"weights.bin": b"w10"}, metadata={"data_position": 600})
    checkpointer.save(20, {"weights.bin": b"w20"}, metadata={"data_position": 1234})
    manifest = tmp_path / "step-000000000020" / "MANIFEST.json"
    flip_byte(manifest, manifest.read_bytes().index(b"1234") + 3)

    latest = checkpointer.latest()
    assert latest is not None and latest.step == 10 and latest.metadata == {"data_position": 600}
    ((path, reason),) = checkpointer.scan().corrupt
    assert path.name == "step-000000000020"
    assert re.search(
        r"MANIFEST.json does not match its manifest_sha256 \(its content has sha256 [0-9a-f]{64}", reason
    )


def test_manifest_begins_with_the_sha256_of_everything_after_its_first_line(tmp_path: Path) -> None:
    Checkpointer(tmp_path).save(7, {"a.bin": b"abc"})
    raw = (tmp_path / "step-000000000007" / "MANIFEST.json").read_bytes()
    first_line, rest = raw.split(b"\n", 1)
    assert first_line == b"{"
    checksum_line, body = rest.split(b"\n", 1)
    match = re.fullmatch(rb'  "manifest_sha256": "([0-9a-f]{64})",', checksum_line)
    assert match is not None, checksum_line
    assert match.group(1).decode() == hashlib.sha256(body).hexdigest()


def _version_1_checkpoint(
    directory: Path, step: int, files: dict[str, bytes], metadata: dict[str, Any]
) -> Path:
    """A checkpoint exactly as format version 1 wrote it (no manifest checksum)."""
    path = directory / f"step-{step:012d}"
    path.mkdir(parents=True)
    for name, data in files.items():
        (path / name).write_bytes(data)
    manifest = {
        "format": "airflow-training-guard-checkpoint",
        "format_version": 1,
        "step": step,
        "created_at": 1764590000.25,
        "files": {name: hashlib.sha256(data).hexdigest() for name, data in sorted(files.items())},
        "metadata": metadata,
    }
    (path / "MANIFEST.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return path


def test_version_1_checkpoint_still_loads_with_its_files_verified_and_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A job upgraded mid-training must resume from its version-1 checkpoint, not from step 0."""
    _version_1_checkpoint(tmp_path, 30, {"weights.bin": b"w30"}, {"loss": 0.5})
    checkpointer = Checkpointer(tmp_path)

    with caplog.at_level(logging.WARNING):
        latest = checkpointer.latest()
    assert latest is not None and latest.step == 30 and latest.format_version == 1
    assert latest.metadata == {"loss": 0.5} and latest.read_bytes("weights.bin") == b"w30"
    assert "format_version 1" in caplog.text and "metadata is not verified" in caplog.text

    flip_byte(tmp_path / "step-000000000030" / "weights.bin")
    assert checkpointer.latest() is None, "the files of a version-1 checkpoint are still verified"


def test_next_save_after_a_version_1_checkpoint_writes_version_2(tmp_path: Path) -> None:
    _version_1_checkpoint(tmp_path, 30, {"weights.bin": b"w30"}, {})
    saved = Checkpointer(tmp_path, keep_last=1).save(40, {"weights.bin": b"w40"})
    assert saved.format_version == 2
    assert json.loads((saved.path / "MANIFEST.json").read_text())["format_version"] == 2
    assert step_dirs(tmp_path) == ["step-000000000040"]


def test_version_1_manifest_that_carries_a_checksum_is_refused(tmp_path: Path) -> None:
    """A damaged version-2 manifest must not pass as an unchecked version-1 one."""
    Checkpointer(tmp_path).save(20, {"weights.bin": b"w"})
    rewrite_manifest(tmp_path / "step-000000000020", lambda data: data.update(format_version=1))
    ((_, reason),) = Checkpointer(tmp_path).scan().corrupt
    assert "MANIFEST.json of format_version 1 has a manifest_sha256" in reason


# --- pruning ------------------------------------------------------------------------------------------


def test_prune_keeps_the_newest_k_valid_checkpoints(tmp_path: Path) -> None:
    checkpointer = Checkpointer(tmp_path, keep_last=2)
    save_steps(checkpointer, 1, 2, 3, 4)  # save() prunes after each checkpoint
    assert step_dirs(tmp_path) == ["step-000000000003", "step-000000000004"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp-")] == []


def test_prune_never_deletes_the_newest_valid_checkpoint_when_newer_ones_are_corrupt(tmp_path: Path) -> None:
    """Pruning counted corrupt checkpoints toward keep_last and deleted the only good one."""
    checkpointer = Checkpointer(tmp_path, keep_last=10)
    save_steps(checkpointer, 1, 2, 3, 4, 5)
    for step in (3, 4, 5):
        flip_byte(tmp_path / f"step-{step:012d}" / "weights.bin")
    checkpointer.keep_last = 1

    removed = checkpointer.prune()

    assert sorted(p.name for p in removed) == ["step-000000000001"]
    # Step 2 is the newest valid one; newer corrupt ones are kept as evidence until replaced.
    assert step_dirs(tmp_path) == [f"step-{s:012d}" for s in (2, 3, 4, 5)]
    latest = checkpointer.latest()
    assert latest is not None and latest.step == 2


def test_prune_removes_corrupt_checkpoints_older_than_the_newest_valid_one(tmp_path: Path) -> None:
    checkpointer = Checkpointer(tmp_path, keep_last=3)
    save_steps(checkpointer, 1, 2, 3)
    flip_byte(tmp_path / "step-000000000002" / "weights.bin")

    removed = checkpointer.prune()

    assert [p.name for p in removed] == ["step-000000000002"]
    assert step_dirs(tmp_path) == ["step-000000000001", "step-000000000003"]


def test_prune_with_only_corrupt_checkpoints_deletes_nothing(tmp_path: Path) -> None:
    checkpointer = Checkpointer(tmp_path, keep_last=1)
    save_steps(checkpointer, 1)
    (tmp_path / "step-000000000001" / "MANIFEST.json").unlink()
    assert checkpointer.prune() == []
    assert step_dirs(tmp_path) == ["step-000000000001"]


def _temp_dir(parent: Path, kind: str, step: int, pid: int, host: str | None = None) -> Path:
    path = parent / f".tmp-{kind}-step-{step:012d}-{pid}-0123abcd-{host or _host_label()}"
    path.mkdir()
    (path / "weights.bin").write_bytes(b"partial")
    return path


def test_prune_removes_temp_dirs_of_dead_writers_but_not_of_live_ones(tmp_path: Path) -> None:
    checkpointer = Checkpointer(tmp_path)
    save_steps(checkpointer, 1)
    dead = _temp_dir(tmp_path, "new", 2, dead_pid())
    live_writer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = _temp_dir(tmp_path, "new", 2, live_writer.pid)
        removed = checkpointer.prune()
        assert removed == [dead]
        assert not dead.exists()
        assert live.exists(), "a live writer's save in progress must not be deleted"
    finally:
        live_writer.kill()
        live_writer.wait()


def test_prune_removes_temp_dirs_from_other_hosts_only_when_stale(tmp_path: Path) -> None:
    """On shared storage another pod may be writing; its pid cannot be checked from here."""
    checkpointer = Checkpointer(tmp_path)
    fresh = _temp_dir(tmp_path, "new", 2, 1234, host="other-pod-7f9c")
    stale = _temp_dir(tmp_path, "new", 3, 1234, host="other-pod-1a2b")
    two_hours_ago = time.time() - 2 * 3600
    os.utime(stale, (two_hours_ago, two_hours_ago))

    assert checkpointer.prune() == [stale]
    assert fresh.exists()


def test_prune_only_touches_directories_whose_name_says_they_are_temporary(tmp_path: Path) -> None:
    checkpointer = Checkpointer(tmp_path)
    two_hours_ago = time.time() - 2 * 3600
    old_unknown_temp = tmp_path / ".tmp-something"
    old_unknown_temp.mkdir()
    recent_unknown_temp = tmp_path / ".tmp-recent"
    recent_unknown_temp.mkdir()
    temp_named_file = tmp_path / ".tmp-file"
    temp_named_file.write_text("not a directory")
    user_dir = tmp_path / "my-notes"
    user_dir.mkdir()
    for path in (old_unknown_temp, temp_named_file, user_dir):
        os.utime(path, (two_hours_ago, two_hours_ago))

    assert checkpointer.prune() == [old_unknown_temp]
    assert recent_unknown_temp.exists() and temp_named_file.exists() and user_dir.exists()


def test_checkpoint_moved_aside_by_a_writer_killed_mid_replace_is_restored(tmp_path: Path) -> None:
    """A job killed between the two renames of a replace lost its newest checkpoint."""
    checkpointer = Checkpointer(tmp_path)
    save_steps(checkpointer, 1, 2)
    aside = tmp_path / f".tmp-old-step-000000000002-{dead_pid()}-0123abcd-{_host_label()}"
    (tmp_path / "step-000000000002").rename(aside)

    checkpointer.prune()

    assert not aside.exists()
    latest = checkpointer.latest()
    assert latest is not None and latest.step == 2


def test_scan_restores_a_checkpoint_that_an_older_version_left_aside_mid_replace(tmp_path: Path) -> None:
    """Killed between the two renames of a replace, step 2 existed only as ``.tmp-old-*``.

    Only prune() put it back, but the operators call scan() first and resumed from step 1
    (or step 0). Checkpoint directories written by an older runtime can still hold such leftovers.
    """
    checkpointer = Checkpointer(tmp_path)
    save_steps(checkpointer, 1, 2)
    aside = tmp_path / f".tmp-old-step-000000000002-{dead_pid()}-0123abcd-{_host_label()}"
    (tmp_path / "step-000000000002").rename(aside)

    scan = checkpointer.scan()

    assert scan.newest_valid is not None and scan.newest_valid.step == 2
    assert scan.newest_valid.path == tmp_path / "step-000000000002"
    assert not aside.exists()


def test_scan_leaves_a_live_writers_aside_checkpoint_alone(tmp_path: Path) -> None:
    checkpointer = Checkpointer(tmp_path)
    save_steps(checkpointer, 1, 2)
    live_writer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        aside = tmp_path / f".tmp-old-step-000000000002-{live_writer.pid}-0123abcd-{_host_label()}"
        (tmp_path / "step-000000000002").rename(aside)
        assert [c.step for c in checkpointer.scan().valid] == [1]
        assert aside.exists(), "a live writer is between its two renames; its rename comes next"
    finally:
        live_writer.kill()
        live_writer.wait()


# --- bad input -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("step", [-1, -100])
def test_negative_step_is_rejected_with_the_value(tmp_path: Path, step: int) -> None:
    with pytest.raises(ValueError, match=rf"checkpoint step {step} is invalid: steps are integers >= 0"):
        Checkpointer(tmp_path).save(step, {"w.bin": b""})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("step", [1.0, "10", True])
def test_non_integer_step_is_rejected_with_the_value(tmp_path: Path, step: object) -> None:
    with pytest.raises(ValueError, match=rf"checkpoint step {re.escape(repr(step))} is invalid"):
        Checkpointer(tmp_path).save(step, {"w.bin": b""})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "name", ["../escape.bin", "/etc/passwd", "a/../../b.bin", "..", "", ".", "dir\\file.bin", "nul\x00.bin"]
)
def test_file_names_escaping_the_checkpoint_are_rejected_before_anything_is_written(
    tmp_path: Path, name: str
) -> None:
    with pytest.raises(ValueError, match=rf"checkpoint file name {re.escape(repr(name))} is invalid"):
        Checkpointer(tmp_path / "ckpt").save(1, {"ok.bin": b"1", name: b"2"})
    assert not (tmp_path / "ckpt").exists()


def test_file_name_of_the_manifest_is_reserved(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"'MANIFEST.json' is reserved"):
        Checkpointer(tmp_path).save(1, {"MANIFEST.json": b"{}"})


def test_writer_that_creates_a_symlink_is_rejected(tmp_path: Path) -> None:
    outside = tmp_path / "outside.bin"
    outside.write_bytes(b"changes later")

    def write(directory: Path) -> None:
        (directory / "weights.bin").symlink_to(outside)

    checkpointer = Checkpointer(tmp_path / "ckpt")
    with pytest.raises(ValueError, match=r"weights.bin, which is not a regular file"):
        checkpointer.save(1, write)
    assert list((tmp_path / "ckpt").iterdir()) == []


def test_file_contents_that_are_not_bytes_are_rejected_with_the_name(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match=r"checkpoint file 'config.json' is str, not bytes"):
        Checkpointer(tmp_path).save(1, {"config.json": "{}"})  # type: ignore[dict-item]


def test_metadata_that_is_not_json_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"metadata of checkpoint step 1 is not JSON-serializable"):
        Checkpointer(tmp_path).save(1, {"w.bin": b""}, metadata={"when": object()})


@pytest.mark.parametrize("keep_last", [0, -1, 1.5])
def test_keep_last_below_one_is_rejected_with_the_value(tmp_path: Path, keep_last: object) -> None:
    with pytest.raises(ValueError, match=rf"keep_last={re.escape(repr(keep_last))} is invalid"):
        Checkpointer(tmp_path, keep_last=keep_last)  # type: ignore[arg-type]
