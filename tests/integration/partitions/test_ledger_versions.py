"""Which version directories the ledger prunes, on SQLite and on a real PostgreSQL.

Readers resolve ``current_path()`` once and read that immutable version directory; the ledger
promises that the previous ``keep_versions - 1`` committed versions stay on disk for them. These
tests put an uncommitted version directory next to the committed ones, the way a publish killed
between its rename and its database commit, or a stale claim racing a newer one, leaves it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import delete

from airflow_training_guard.partitions.ledger import (
    Claim,
    PartitionLedger,
    StaleClaimError,
    versions_table,
)

REPO = Path(__file__).resolve().parents[3]
KEY = "berlin|2026-11-01"

# A worker that claims KEY (mode "all"), stages its output and publishes, and is SIGKILLed right
# after the rename into the version directory, before the database commit: no cleanup runs.
KILLED_PUBLISHER = r"""
import os, signal, sys
from pathlib import Path
from airflow_training_guard.partitions.ledger import PartitionLedger

url, output_root, key = sys.argv[1:4]
ledger = PartitionLedger(url, namespace="pricing", output_root=output_root)
claim = ledger.claim(key, mode="all", holder="killed-worker")
staging = ledger.staging_dir(claim)
(staging / "part-0.csv").write_text(f"v{claim.fencing_token}\n")
real_rename = os.rename

def rename_then_die(src, dst):
    real_rename(src, dst)
    if Path(dst).name.startswith("v"):
        os.kill(os.getpid(), signal.SIGKILL)

os.rename = rename_then_die
ledger.publish(claim, staging_path=staging)
raise SystemExit("the publish was not killed")
"""


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.db'}"
    return str(request.getfixturevalue("postgres_sqlalchemy_url"))


def _ledger(url: str, tmp_path: Path, **kwargs: object) -> PartitionLedger:
    return PartitionLedger(url, namespace="pricing", output_root=tmp_path / "out", **kwargs)  # type: ignore[arg-type]


def _publish(ledger: PartitionLedger, claim: Claim | None = None) -> Path:
    claim = claim or ledger.claim(KEY, mode="all", holder="worker")
    assert claim is not None
    staging = ledger.staging_dir(claim)
    (staging / "part-0.csv").write_text(f"v{claim.fencing_token}\n")
    location = ledger.publish(claim, staging_path=staging).location
    assert location is not None
    return Path(location)


def _versions_on_disk(ledger: PartitionLedger) -> list[str]:
    return sorted(p.name for p in ledger.key_dir(KEY).glob("v*"))


def test_publish_killed_between_rename_and_commit_never_costs_the_previous_committed_version(
    ledger_url: str, tmp_path: Path
) -> None:
    """Pruning counted a crashed publish's uncommitted directory as a version and deleted the last
    committed one that readers still held (issue 13)."""
    ledger = _ledger(ledger_url, tmp_path)
    _publish(ledger)  # token 1
    _publish(ledger)  # token 2
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    )
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_PUBLISHER, ledger_url, str(tmp_path / "out"), KEY],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert _versions_on_disk(ledger) == ["v00000001", "v00000002", "v00000003"]
    held = ledger.current_path(KEY)  # a reader resolves the pointer before the next publish
    assert held is not None and held.name == "v00000002", "token 3 renamed its directory but never committed"

    current = _publish(ledger)  # token 4 takes the key over from the dead worker

    assert current.name == "v00000004" and ledger.current_path(KEY) == current
    assert (held / "part-0.csv").read_text() == "v2\n", "the previous committed version must stay readable"
    assert _versions_on_disk(ledger) == ["v00000002", "v00000004"]


def test_stale_claim_renaming_its_version_while_a_newer_claim_publishes_never_costs_the_previous_version(
    ledger_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stale claim's directory, renamed into place just before a newer claim committed, counted as
    a version in the newer claim's prune, which deleted the previous committed version (issue 13)."""
    ledger = _ledger(ledger_url, tmp_path)
    _publish(ledger)  # token 1, committed
    held = ledger.current_path(KEY)
    assert held is not None
    stale = ledger.claim(KEY, mode="all", holder="backfill-a")
    newer = ledger.claim(KEY, mode="all", holder="backfill-b")
    assert stale is not None and newer is not None
    stale_staging = ledger.staging_dir(stale)
    (stale_staging / "part-0.csv").write_text("stale\n")
    real_rename = os.rename
    published: list[Path] = []

    def rename(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        real_rename(src, dst)
        if Path(dst).name == f"v{stale.fencing_token:08d}":
            # The stale claim's directory is in place, its database commit not yet run: the newer
            # claim publishes (and prunes) exactly now.
            published.append(_publish(ledger, newer))

    monkeypatch.setattr(os, "rename", rename)
    with pytest.raises(StaleClaimError, match=r"fencing token 2 .*newest claim is token 3"):
        ledger.publish(stale, staging_path=stale_staging)
    monkeypatch.undo()

    assert [p.name for p in published] == ["v00000003"]
    assert ledger.current_path(KEY) == published[0]
    assert (held / "part-0.csv").read_text() == "v1\n", "the previous committed version must stay readable"
    assert _versions_on_disk(ledger) == ["v00000001", "v00000003"]


def test_prune_keeps_the_newest_keep_versions_committed_versions(ledger_url: str, tmp_path: Path) -> None:
    ledger = _ledger(ledger_url, tmp_path, keep_versions=3)
    for _ in range(5):
        _publish(ledger)
    assert _versions_on_disk(ledger) == ["v00000003", "v00000004", "v00000005"]


def test_version_committed_before_the_history_table_existed_is_kept_as_the_previous_one(
    ledger_url: str, tmp_path: Path
) -> None:
    """Ledgers created by an older version have no version history; their current commit still counts."""
    ledger = _ledger(ledger_url, tmp_path)
    first = _publish(ledger)
    with ledger.engine.begin() as conn:
        conn.execute(delete(versions_table))
    _publish(ledger)
    assert first.is_dir() and (first / "part-0.csv").read_text() == "v1\n"
    assert _versions_on_disk(ledger) == ["v00000001", "v00000002"]
