"""The ledger publishes version directories through runtime/publish.py, fsyncs included.

Regression (issue 15): ``PartitionLedger.publish`` renamed the staging directory into place without
fsyncing the files a task had written into it; after a power loss the committed pointer could name
a version directory whose files were empty.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from airflow_training_guard.partitions.ledger import PartitionLedger


def test_publish_fsyncs_the_staged_files_before_the_rename_and_the_key_dir_before_the_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = PartitionLedger(
        f"sqlite:///{tmp_path / 'ledger.db'}", namespace="pricing", output_root=tmp_path / "out"
    )
    claim = ledger.claim("berlin|2026-11-01", holder="run-1", mode="all")
    assert claim is not None
    staging = ledger.staging_dir(claim)
    (staging / "part-0.csv").write_text("a\n")
    (staging / "stats").mkdir()
    (staging / "stats" / "rows.json").write_text('{"rows": 1}')

    events: list[tuple[str, str]] = []
    real_fsync, real_rename = os.fsync, os.rename

    def fsync(fd: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def rename(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        events.append(("rename", str(dst)))
        real_rename(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "rename", rename)
    commit = ledger.publish(claim, staging_path=staging)
    monkeypatch.undo()

    version_dir = Path(commit.location or "")
    resolved = staging.resolve()
    renamed = events.index(("rename", str(version_dir)))
    before = {path for kind, path in events[:renamed] if kind == "fsync"}
    assert {
        str(resolved / "part-0.csv"),
        str(resolved / "stats" / "rows.json"),
        str(resolved / "stats"),
        str(resolved),
    } <= before
    assert events[renamed + 1] == ("fsync", str(version_dir.parent))
    assert (version_dir / "stats" / "rows.json").read_text() == '{"rows": 1}'
