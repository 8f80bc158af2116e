"""Fixtures for promotion tests: registries on SQLite, PostgreSQL and a loopback Hub."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.hub.hub_server import LocalHub

# The tests import ``contention`` as a top-level module (so does benchmarks/promotion.py).
sys.path.insert(0, str(Path(__file__).resolve().parent))


@dataclass(frozen=True)
class HubServer:
    """A running :class:`LocalHub` as the promotion tests use it: ``url`` for the client, ``hub``
    for the commit counters."""

    url: str
    hub: LocalHub


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'registry.db'}"


@pytest.fixture
def postgres_registry_url(postgres_sqlalchemy_url: str) -> str:
    return postgres_sqlalchemy_url


@pytest.fixture
def hub_server() -> Iterator[HubServer]:
    # The token HubModelRegistry gets in contention.make_registry, so promoters are authenticated.
    with LocalHub(token="hf_test") as hub:
        hub.add("org/ranker", files={".gitattributes": b""})
        yield HubServer(url=hub.url, hub=hub)
