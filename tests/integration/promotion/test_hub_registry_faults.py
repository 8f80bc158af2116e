"""The Hub registry never reads a failed download as "no production pointer".

huggingface_hub raises ``LocalEntryNotFoundError`` (a subclass of ``EntryNotFoundError``) when a
download fails because the Hub errors or is unreachable. Taken as "the file does not exist", a
live pointer looks absent and the next promotion commits v1 over production, wiping its history.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from contention import POLICY, make_candidates, make_registry

from airflow_training_guard.promotion.promote import Backoff, promote
from airflow_training_guard.promotion.registry import RegistryError


def _registry(hub_server, tmp_path: Path):  # type: ignore[no-untyped-def]
    return make_registry(
        {"kind": "hub", "endpoint": hub_server.url, "cache_dir": str(tmp_path / f"cache-{id(tmp_path)}")}
    )


def test_download_failure_is_an_error_not_an_empty_registry(hub_server, tmp_path: Path) -> None:
    first, better = make_candidates(2, tmp_path / "artifacts", seed=3)
    registry = _registry(hub_server, tmp_path)
    promote(registry, "org/ranker", first, POLICY, promoted_by="daily")
    observed = registry.read("org/ranker")
    assert observed.pointer is not None and observed.pointer.version == 1

    # The Hub answers info requests but every download fails (501 from a proxy: not retried; fresh cache).
    hub_server.hub.fail_next(50, 501, path_contains="/resolve/")
    fresh = make_registry({"kind": "hub", "endpoint": hub_server.url, "cache_dir": str(tmp_path / "cache-2")})
    with pytest.raises(RegistryError, match=r"cannot download .*the Hub did not say the file is missing"):
        fresh.read("org/ranker")
    with pytest.raises(RegistryError):
        promote(fresh, "org/ranker", better, POLICY, promoted_by="daily", backoff=Backoff(max_attempts=1))

    # Production and its history are untouched.
    hub_server.hub.clear_failures()
    after = _registry(hub_server, tmp_path / "later")
    pointer = after.read("org/ranker").pointer
    assert (
        pointer is not None and pointer.version == 1 and pointer.candidate_id == observed.pointer.candidate_id
    )
    assert len(after.history("org/ranker")) == 1


def test_a_file_the_hub_says_is_missing_still_reads_as_an_empty_registry(hub_server, tmp_path: Path) -> None:
    registry = _registry(hub_server, tmp_path)
    observed = registry.read("org/ranker")
    assert observed.pointer is None and registry.history("org/ranker") == []
