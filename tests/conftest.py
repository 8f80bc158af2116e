"""Test harness shared by unit, integration and e2e tests.

- An isolated ``AIRFLOW_HOME`` per test session (set before anything imports Airflow), with its
  SQLite metadata database migrated once, lazily, by the ``airflow_db`` fixture: unit tests that
  never touch Airflow do not pay for it.
- ``run_dag``: run a DAG with ``dag.test()`` and get back ``{task_id: state}``.
- ``postgres_url``: a real PostgreSQL server. The URL comes from
  ``TRAINING_GUARD_TEST_POSTGRES_URL`` (default ``postgresql://postgres@127.0.0.1:5432/test``).
  When it is unreachable the tests that need it are skipped with a message saying how to enable
  them, unless ``TRAINING_GUARD_REQUIRE_POSTGRES=1`` (CI sets it) turns the skip into a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import write_dag_to_db

REPO_ROOT = Path(__file__).resolve().parent.parent
DAGS_FOLDER = REPO_ROOT / "dags"

# --- isolated Airflow home: must happen before any test module imports Airflow ------------------
_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="training-guard-airflow-home-"))
_CHECKPOINT_ROOT = _AIRFLOW_HOME / "checkpoints"
_AIRFLOW_ENV = {
    "AIRFLOW_HOME": str(_AIRFLOW_HOME),
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_AIRFLOW_HOME / 'airflow.db'}",
    "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
    "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
    "TRAINING_GUARD_CHECKPOINT_ROOT": str(_CHECKPOINT_ROOT),
    "TRAINING_GUARD_DATA_ROOT": str(_AIRFLOW_HOME / "data"),
    "TRAINING_GUARD_OUTPUT_ROOT": str(_AIRFLOW_HOME / "models"),
}
for _name, _value in _AIRFLOW_ENV.items():
    os.environ[_name] = _value
# A developer's own connections must not leak into tests.
for _name in list(os.environ):
    if _name.startswith("AIRFLOW_CONN_"):
        del os.environ[_name]

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(_AIRFLOW_HOME, ignore_errors=True)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test carries exactly the marker of the folder it lives in."""
    for item in items:
        parts = Path(str(item.fspath)).relative_to(REPO_ROOT / "tests").parts
        if parts and parts[0] in {"unit", "integration", "e2e"}:
            item.add_marker(getattr(pytest.mark, parts[0]))


@pytest.fixture(scope="session")
def airflow_home() -> Path:
    """The session's private ``AIRFLOW_HOME``."""
    return _AIRFLOW_HOME


@pytest.fixture(scope="session")
def airflow_env() -> dict[str, str]:
    """Environment for Airflow subprocesses that share the session's ``AIRFLOW_HOME``."""
    env = dict(os.environ)
    env.update(_AIRFLOW_ENV)
    return env


@pytest.fixture(scope="session")
def airflow_db(airflow_home: Path) -> Path:
    """Migrate the session's SQLite metadata database once and return its path."""
    from airflow.utils.db import initdb

    initdb()
    return airflow_home / "airflow.db"


@pytest.fixture
def run_dag(airflow_db: Path) -> Callable[..., dict[str, str]]:
    """Run a DAG for real with ``dag.test()`` and return ``{task_id: final state}``.

    Mapped tasks report one entry per map index as ``task_id[i]``.
    """
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    def _run(dag: Any, **kwargs: Any) -> dict[str, str]:
        write_dag_to_db(dag)
        dag_run = dag.test(**kwargs)
        assert dag_run is not None, f"dag.test() did not create a run of {dag.dag_id}"
        with create_session() as session:
            tis = (
                session.query(TaskInstance)
                .filter(TaskInstance.dag_id == dag.dag_id, TaskInstance.run_id == dag_run.run_id)
                .all()
            )
            states: dict[str, str] = {}
            for ti in tis:
                key = ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]"
                states[key] = str(ti.state.value if hasattr(ti.state, "value") else ti.state)
        return states

    return _run


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """URL of a reachable PostgreSQL server, or skip (fail under CI) with how to enable it."""
    url = os.environ.get("TRAINING_GUARD_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)
    try:
        import psycopg

        with psycopg.connect(url, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except Exception as err:
        message = (
            f"PostgreSQL is not reachable at {url} ({type(err).__name__}: {err}). To run these tests, "
            "start PostgreSQL and set TRAINING_GUARD_TEST_POSTGRES_URL=postgresql://USER@HOST:PORT/DB "
            "(default postgresql://postgres@127.0.0.1:5432/test)."
        )
        if os.environ.get("TRAINING_GUARD_REQUIRE_POSTGRES") == "1":
            pytest.fail(message + " TRAINING_GUARD_REQUIRE_POSTGRES=1 forbids skipping.")
        pytest.skip(message)
    return url


@pytest.fixture
def postgres_database(postgres_url: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test; dropped afterwards."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    name = f"tg_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    params = conninfo_to_dict(postgres_url)
    params["dbname"] = name
    try:
        yield make_conninfo(**params)
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_sqlalchemy_url(postgres_database: str) -> str:
    """The fresh test database as a SQLAlchemy URL (``postgresql+psycopg://...``)."""
    from psycopg.conninfo import conninfo_to_dict
    from sqlalchemy import URL

    params = conninfo_to_dict(postgres_database)
    return URL.create(
        "postgresql+psycopg",
        username=params.get("user"),
        password=params.get("password"),
        host=params.get("host"),
        port=int(params["port"]) if params.get("port") else None,
        database=params.get("dbname"),
    ).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def airflow_cli(
    airflow_env: dict[str, str], airflow_db: Path
) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run the real ``airflow`` command line against the session's ``AIRFLOW_HOME``."""
    airflow_bin = str(Path(sys.executable).with_name("airflow"))

    def _run(*args: str, check: bool = True, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [airflow_bin, *args], env=airflow_env, capture_output=True, text=True, timeout=timeout
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"airflow {' '.join(args)} exited {proc.returncode}\nstdout:\n{proc.stdout}\n"
                f"stderr:\n{proc.stderr[-4000:]}"
            )
        return proc

    return _run
