"""runtime/publish.py: the one atomic, durable publish of a directory or a file.

The failure it prevents (issue 15): the ledger renamed a version directory into place without
fsyncing its files first, so after a power loss the committed pointer could name a directory of
empty files; checkpoints and the run manifest each carried their own copy of the fsync dance.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from airflow_training_guard.runtime.publish import fsync_dir, publish_dir, publish_file

REPO_ROOT = Path(__file__).resolve().parents[3]


class FsyncJournal:
    """Records, in order, every path fsynced and every rename (through the real calls)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.events: list[tuple[str, str]] = []
        real_fsync, real_rename, real_replace = os.fsync, os.rename, os.replace

        def fsync(fd: int) -> None:
            self.events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
            real_fsync(fd)

        def rename(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
            self.events.append(("rename", f"{src} -> {dst}"))
            real_rename(src, dst)

        def replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
            self.events.append(("rename", f"{src} -> {dst}"))
            real_replace(src, dst)

        monkeypatch.setattr(os, "fsync", fsync)
        monkeypatch.setattr(os, "rename", rename)
        monkeypatch.setattr(os, "replace", replace)

    def fsynced(self) -> list[str]:
        return [path for kind, path in self.events if kind == "fsync"]

    def index(self, kind: str, path: str | Path) -> int:
        return self.events.index((kind, str(path)))

    def rename_index(self) -> int:
        return next(i for i, (kind, _) in enumerate(self.events) if kind == "rename")


def _staged_tree(root: Path) -> Path:
    staging = root / ".tmp-v1"
    (staging / "nested" / "deeper").mkdir(parents=True)
    (staging / "a.bin").write_bytes(b"a")
    (staging / "nested" / "b.bin").write_bytes(b"b")
    (staging / "nested" / "deeper" / "c.bin").write_bytes(b"c")
    return staging


def test_publish_dir_fsyncs_every_file_and_directory_before_the_rename_and_the_parent_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    staging = _staged_tree(tmp_path)
    journal = FsyncJournal(monkeypatch)

    assert publish_dir(staging, tmp_path / "v1") == tmp_path / "v1"

    rename = journal.rename_index()
    before = set(journal.fsynced()[:rename])
    assert {
        str(staging / "a.bin"),
        str(staging / "nested" / "b.bin"),
        str(staging / "nested" / "deeper" / "c.bin"),
        str(staging / "nested" / "deeper"),
        str(staging / "nested"),
        str(staging),
    } <= before
    # Deepest directory first, the published directory itself last before the rename.
    assert journal.index("fsync", staging / "nested" / "deeper") < journal.index("fsync", staging / "nested")
    assert journal.events[rename - 1] == ("fsync", str(staging))
    assert journal.events[rename + 1 :] == [("fsync", str(tmp_path))]
    assert (tmp_path / "v1" / "nested" / "deeper" / "c.bin").read_bytes() == b"c"
    assert not staging.exists()


def test_publish_dir_synced_by_the_caller_fsyncs_only_the_directory_and_its_parent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The checkpointer fsyncs while it hashes; fsyncing gigabytes twice would cost real time."""
    staging = _staged_tree(tmp_path)
    journal = FsyncJournal(monkeypatch)
    publish_dir(staging, tmp_path / "v1", synced=True)
    assert journal.fsynced() == [str(staging), str(tmp_path)]


def test_publish_dir_does_not_follow_symlinks_out_of_the_tree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.bin").write_bytes(b"x")
    staging = _staged_tree(tmp_path)
    (staging / "link").symlink_to(outside, target_is_directory=True)
    journal = FsyncJournal(monkeypatch)
    publish_dir(staging, tmp_path / "v1")
    assert not any(path.startswith(str(outside)) for path in journal.fsynced())


def test_publish_dir_refuses_to_replace_a_published_directory(tmp_path: Path) -> None:
    (tmp_path / "v1").mkdir()
    (tmp_path / "v1" / "old.bin").write_bytes(b"old")
    staging = _staged_tree(tmp_path)
    with pytest.raises(OSError) as err:
        publish_dir(staging, tmp_path / "v1")
    assert err.value.errno in {errno.ENOTEMPTY, errno.EEXIST}
    assert [p.name for p in (tmp_path / "v1").iterdir()] == ["old.bin"]
    assert (staging / "a.bin").exists()


def test_a_failed_rename_publishes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    staging = _staged_tree(tmp_path)

    def full_disk(src: object, dst: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "rename", full_disk)
    with pytest.raises(OSError, match="No space left"):
        publish_dir(staging, tmp_path / "v1")
    assert not (tmp_path / "v1").exists()


@pytest.mark.parametrize("kind", ["dir", "file"])
def test_kill_9_before_the_rename_leaves_no_half_published_target(tmp_path: Path, kind: str) -> None:
    """A real SIGKILL at the rename: the target is absent (dir) or still the old file (file)."""
    program = textwrap.dedent(
        f"""
        import os, signal, sys
        from pathlib import Path
        from airflow_training_guard.runtime.publish import publish_dir, publish_file

        def die(*args):
            os.kill(os.getpid(), signal.SIGKILL)

        os.rename = os.replace = die
        root = Path(sys.argv[1])
        if {kind!r} == "dir":
            staging = root / ".tmp-v1"
            staging.mkdir()
            (staging / "part-0.csv").write_text("complete\\n")
            publish_dir(staging, root / "v1")
        else:
            publish_file(root / "run-manifest.json", b'{{"new": true}}')
        """
    )
    if kind == "file":
        (tmp_path / "run-manifest.json").write_bytes(b'{"old": true}')
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.run([sys.executable, "-c", program, str(tmp_path)], env=env, capture_output=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()

    if kind == "dir":
        assert not (tmp_path / "v1").exists()
        # Only the hidden staging directory is left, for its owner's clean-up.
        assert sorted(p.name for p in tmp_path.iterdir()) == [".tmp-v1"]
    else:
        assert (tmp_path / "run-manifest.json").read_bytes() == b'{"old": true}'
        assert all(p.name.startswith(".tmp-") for p in tmp_path.iterdir() if p.name != "run-manifest.json")


def test_publish_file_replaces_durably_and_leaves_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "sub" / "run-manifest.json"
    publish_file(target, b"first")
    journal = FsyncJournal(monkeypatch)
    publish_file(target, b"second")
    assert target.read_bytes() == b"second"
    assert sorted(p.name for p in target.parent.iterdir()) == ["run-manifest.json"]
    rename = journal.rename_index()
    temp = journal.events[rename][1].split(" -> ")[0]
    assert journal.events[:rename] == [("fsync", temp)]
    assert journal.events[rename + 1 :] == [("fsync", str(target.parent))]


def test_publish_file_that_fails_keeps_the_old_file_and_removes_the_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "run-manifest.json"
    target.write_bytes(b"old")

    def broken_disk(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken_disk)
    with pytest.raises(OSError, match="Input/output error"):
        publish_file(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["run-manifest.json"]


@pytest.mark.parametrize("code", [errno.EINVAL, errno.ENOTSUP])
def test_directory_fsync_unsupported_by_the_file_system_is_tolerated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    def unsupported(fd: int) -> None:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "fsync", unsupported)
    fsync_dir(tmp_path)


def test_directory_fsync_io_error_is_raised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """EIO means the data may not be on disk: publishing must fail, not pretend."""

    def io_error(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", io_error)
    with pytest.raises(OSError, match="Input/output error"):
        fsync_dir(tmp_path)
