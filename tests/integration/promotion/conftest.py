"""Fixtures for promotion tests: registries on SQLite, PostgreSQL and a loopback Hub."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hub_server import HubServer


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'registry.db'}"


@pytest.fixture
def postgres_registry_url(postgres_sqlalchemy_url: str) -> str:
    return postgres_sqlalchemy_url


@pytest.fixture
def hub_server() -> Iterator[HubServer]:
    with HubServer() as server:
        server.hub.create_repo("org/ranker")
        yield server
