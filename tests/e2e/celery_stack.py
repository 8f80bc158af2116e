"""A private Airflow 3.3 on the CeleryExecutor: Redis broker, two Celery workers, PostgreSQL metadata.

:class:`CeleryStack` extends :class:`~tests.e2e.airflow_stack.AirflowStack` (the same api-server,
scheduler, dag-processor and triggerer, each in its own process group) with what
docker-compose's ``celery`` profile runs:

- its own ``redis-server`` (Debian's binary) on a free loopback port, with no persistence, so tests
  never share a broker's state;
- a fresh PostgreSQL database for the metadata (created on start, dropped on stop), which is also
  Celery's result backend and the partition ledger's database;
- two ``airflow celery worker`` processes (``celery-worker-1``, ``celery-worker-2``).

The workers run on one machine, so the host name Airflow records on a task instance would be the
same for both. Each worker therefore reports its own name through Airflow's ``[core]
hostname_callable`` (a two-line module in ``<home>/tg_worker_identity.py``), which is what a real
deployment gets from separate hosts: ``task_instance.hostname`` says which worker ran it. Each
worker serves its logs on its own port.

Used by ``tests/e2e/test_celery_backfill_e2e.py`` and ``benchmarks/backfill_sla.py --executor celery``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

from tests.e2e.airflow_stack import AIRFLOW_BIN, AirflowStack, AirflowStackError, free_port

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
INSTALL_REDIS = "apt-get update && apt-get install -y redis-server"


def ensure_redis_server() -> str:
    """Debian's redis-server: installed here when missing (as root), else a clear error with the command."""
    if os.path.exists(REDIS_SERVER):
        return REDIS_SERVER
    if os.geteuid() != 0:
        raise AirflowStackError(f"{REDIS_SERVER} is missing; install it with: sudo {INSTALL_REDIS}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", "redis-server"]
    if subprocess.run(install, env=env, capture_output=True, check=False).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, check=False, timeout=300)
        result = subprocess.run(install, env=env, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise AirflowStackError(
                f"could not install redis-server ({INSTALL_REDIS}): {result.stderr[-2000:]}"
            )
    return REDIS_SERVER


PG_ADMIN_URL = os.environ.get("TRAINING_GUARD_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
WORKERS = ("celery-worker-1", "celery-worker-2")
IDENTITY_MODULE = "import os\n\n\ndef hostname() -> str:\n    return os.environ['TG_E2E_WORKER_NAME']\n"


def _pg_admin(sql: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql)


def _pg_url(database: str, driver: str = "postgresql+psycopg") -> str:
    from psycopg.conninfo import conninfo_to_dict
    from sqlalchemy import URL

    parts = conninfo_to_dict(PG_ADMIN_URL)
    return URL.create(
        driver,
        username=parts.get("user"),
        password=parts.get("password"),
        host=parts.get("host"),
        port=int(parts["port"]) if parts.get("port") else None,
        database=database,
    ).render_as_string(hide_password=False)


@dataclass
class CeleryStack(AirflowStack):
    """An :class:`AirflowStack` on the CeleryExecutor with its own Redis and PostgreSQL database.

    :param worker_concurrency: task slots of each Celery worker.
    """

    worker_concurrency: int = 2
    database: str = field(default="", init=False)
    redis_port: int = field(default=0, init=False)
    redis: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.database = f"tg_e2e_celery_{uuid.uuid4().hex[:10]}"
        self.redis_port = free_port()
        super().__post_init__()

    def _environment(self) -> dict[str, str]:
        env = super()._environment()
        metadata = _pg_url(self.database)
        env.update(
            {
                "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata,
                "AIRFLOW__CELERY__BROKER_URL": f"redis://127.0.0.1:{self.redis_port}/0",
                "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + _pg_url(self.database),
                "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(self.worker_concurrency),
                # Every key of every backfill is committed once in this ledger, whichever worker ran it.
                "TRAINING_GUARD_LEDGER_URL": metadata,
            }
        )
        env.update(self.extra_env)
        return env

    # --- lifecycle ------------------------------------------------------------------------------

    def start(
        self,
        *,
        timeout: float = 600,
        wait_for_dags: tuple[str, ...] = (),
        pools: Literal["import", "sync"] | None = None,
    ) -> None:
        """Start Redis, create the database, start the Airflow processes and the two workers."""
        self._start_redis()
        _pg_admin(f'CREATE DATABASE "{self.database}"')
        (self.home / "tg_worker_identity.py").write_text(IDENTITY_MODULE)
        try:
            super().start(timeout=timeout, wait_for_dags=wait_for_dags, pools=pools)
            for number, name in enumerate(WORKERS, start=1):
                self._spawn_worker(number, name)
            # A worker takes a minute or more to import and join the broker on a loaded machine.
            self.wait_workers(time.monotonic() + 300)
        except BaseException:
            self.stop()
            raise

    def _start_redis(self) -> None:
        log = (self.log_dir / "redis-server.log").open("ab")
        self.redis = subprocess.Popen(
            [
                ensure_redis_server(),
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.redis_port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.home),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        import redis

        client = redis.Redis(host="127.0.0.1", port=self.redis_port, socket_connect_timeout=1)
        deadline = time.monotonic() + 20
        while True:
            try:
                client.ping()
                break
            except redis.exceptions.ConnectionError:
                if self.redis.poll() is not None or time.monotonic() > deadline:
                    raise AirflowStackError(
                        f"redis-server did not start on port {self.redis_port}\n"
                        f"{self._tail(self.log_dir / 'redis-server.log')}"
                    ) from None
                time.sleep(0.2)
        client.close()

    def _spawn_worker(self, number: int, name: str) -> None:
        env = dict(self.env)
        env.update(
            {
                "TG_E2E_WORKER_NAME": name,
                "AIRFLOW__CORE__HOSTNAME_CALLABLE": "tg_worker_identity.hostname",
                "PYTHONPATH": os.pathsep.join(filter(None, [str(self.home), env.get("PYTHONPATH", "")])),
                # Two workers on one machine: each serves its task logs on its own port.
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            }
        )
        log = (self.log_dir / f"{name}.log").open("ab")
        self.procs[name] = subprocess.Popen(
            [
                AIRFLOW_BIN,
                "celery",
                "worker",
                "--celery-hostname",
                f"{name}@%h",
                "--concurrency",
                str(self.worker_concurrency),
                # One pid file per worker: the default ($AIRFLOW_HOME/airflow-worker.pid) is shared.
                "--pid",
                str(self.home / f"{name}.pid"),
            ],
            env=env,
            cwd=self.home,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()

    def wait_workers(self, deadline: float) -> list[str]:
        """Wait until both workers answer a Celery ping through the broker; return their names."""
        from celery import Celery

        app = Celery(broker=self.env["AIRFLOW__CELERY__BROKER_URL"])
        seen: list[str] = []
        try:
            while time.monotonic() < deadline:
                self._check_alive()
                replies = app.control.ping(timeout=1.0) or []
                seen = sorted(name for reply in replies for name in reply)
                if all(any(name.startswith(f"{worker}@") for name in seen) for worker in WORKERS):
                    return seen
                time.sleep(1)
        finally:
            app.close()
        raise AirflowStackError(f"Celery workers not ready in time; ping answered by {seen}\n{self.logs()}")

    def stop(self, *, grace: float = 20) -> None:
        """Stop Airflow and the workers (process groups), then Redis, then drop the database."""
        super().stop(grace=grace)
        if self.redis is not None:
            self._signal_group(self.redis, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.redis.wait(timeout=5)
            self.redis = None
        with contextlib.suppress(Exception):
            _pg_admin(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')

    @property
    def client(self) -> httpx.Client:
        """The REST client, patient: five processes and two workers share a small, loaded machine."""
        if self._client is None:
            self._client = httpx.Client(base_url=self.base_url, timeout=180)
        return self._client

    def worker_log(self, name: str) -> str:
        return (self.log_dir / f"{name}.log").read_text(errors="replace")

    def describe(self) -> dict[str, Any]:
        return {
            "executor": "CeleryExecutor",
            "broker": self.env["AIRFLOW__CELERY__BROKER_URL"],
            "database": self.database,
            "workers": list(WORKERS),
        }
