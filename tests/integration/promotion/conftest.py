"""Fixtures for promotion tests: registries on SQLite, PostgreSQL and a loopback Hub."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hub_server import HubServer


def sqlalchemy_url(conninfo: str) -> str:
    """psycopg conninfo ("host=... dbname=...") -> a SQLAlchemy ``postgresql+psycopg://`` URL."""
    from psycopg.conninfo import conninfo_to_dict
    from sqlalchemy import URL

    params = conninfo_to_dict(conninfo)
    return URL.create(
        "postgresql+psycopg",
        username=params.get("user"),
        password=params.get("password"),
        host=params.get("host"),
        port=int(params["port"]) if params.get("port") else None,
        database=params.get("dbname"),
    ).render_as_string(hide_password=False)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'registry.db'}"


@pytest.fixture
def postgres_registry_url(postgres_database: str) -> str:
    return sqlalchemy_url(postgres_database)


@pytest.fixture
def hub_server() -> Iterator[HubServer]:
    with HubServer() as server:
        server.hub.create_repo("org/ranker")
        yield server
