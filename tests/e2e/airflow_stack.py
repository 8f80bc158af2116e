"""Start and stop a real Airflow 3.3 deployment on loopback for the end-to-end tests.

One :class:`AirflowStack` is one private Airflow: its own ``AIRFLOW_HOME`` (a temporary folder), its
own SQLite metadata database, LocalExecutor, the repository's ``dags/`` folder, the simple auth
manager in all-admins mode (no login in the browser, no token for the REST API: the auth manager's
middleware adds an admin token to every request) and a free port on 127.0.0.1.

``start()`` runs ``airflow db migrate``, optionally creates the training pools (``pools="import"``:
``airflow pools import deploy/pools.json``, what docker-compose's ``airflow-init`` runs;
``pools="sync"``: ``airflow training-guard pools sync``), and then starts the four long-running
processes a real deployment has (``api-server``, ``scheduler``, ``dag-processor``, ``triggerer``),
each in its own process group with its output in ``<home>/logs/<name>.log``. ``stop()`` sends
SIGTERM to every group, waits, then SIGKILLs what is left, so no task runner or uvicorn worker
outlives the tests.

The module has no pytest dependency so it can also be used by hand::

    python -m tests.e2e.airflow_stack   # starts a stack, prints its URL, stops on Ctrl-C
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx

REPO_ROOT = Path(__file__).resolve().parents[2]
DAGS_FOLDER = REPO_ROOT / "dags"
#: The pools a deployment creates once (docker-compose's airflow-init imports this file).
POOLS_FILE = REPO_ROOT / "deploy" / "pools.json"
AIRFLOW_BIN = str(Path(sys.executable).with_name("airflow"))
PROCESSES = ("api-server", "scheduler", "dag-processor", "triggerer")
HEALTHY_COMPONENTS = ("metadatabase", "scheduler", "dag_processor", "triggerer")


class AirflowStackError(RuntimeError):
    """The stack did not come up (or a process died); the message carries the process logs."""


def _sqlite_busy(response: httpx.Response) -> bool:
    """Whether the API answered that SQLite was busy: 503 "Database is locked", or the 500 "Database
    error" the api-server gives when the lock hits elsewhere in the request (seen on a loaded machine)."""
    if response.status_code == 503:
        return True
    return response.status_code == 500 and "Database error" in response.text


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class AirflowStack:
    """A private Airflow deployment: ``home`` is created if missing; ``port`` 0 picks a free one.

    :param home: the ``AIRFLOW_HOME``; data, checkpoints, models, the registry and logs live under it.
    :param port: the api-server port on 127.0.0.1 (0: a free port).
    :param extra_env: more environment for every process (wins over the defaults).
    """

    home: Path
    port: int = 0
    extra_env: dict[str, str] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict, init=False)
    timings: dict[str, float] = field(default_factory=dict, init=False)
    stray_pids: list[int] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        self.home = self.home.resolve()
        self.home.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port()
        self.log_dir = self.home / "logs"
        self.log_dir.mkdir(exist_ok=True)
        self.guard_root = self.home / "training-guard"
        self.data_root = self.guard_root / "data"
        self.checkpoint_root = self.guard_root / "checkpoints"
        self.output_root = self.guard_root / "models"
        self.registry_url = f"sqlite:///{self.guard_root / 'registry.db'}"
        self.env = self._environment()
        self._client: httpx.Client | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _environment(self) -> dict[str, str]:
        env = {
            name: value
            for name, value in os.environ.items()
            # The test session's own Airflow settings (tests/conftest.py) and a developer's must not leak in.
            if not name.startswith(("AIRFLOW_", "AIRFLOW__", "TRAINING_GUARD_"))
        }
        env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.home / 'airflow.db'}",
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__AUTH_MANAGER": (
                    "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
                ),
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
                # Task runners call the execution API; its default URL is localhost:8080.
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base_url}/execution/",
                "AIRFLOW__API__BASE_URL": self.base_url,
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.port),
                "AIRFLOW__API__WORKERS": "1",
                # The scheduler's and the triggerer's log servers default to fixed ports (8793, 8794):
                # free ones, so two stacks on one machine do not collide.
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
                # Every process must sign and check tokens with the same secret; without one set,
                # a process that starts before airflow.cfg exists would generate its own.
                "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
                "AIRFLOW__CORE__FERNET_KEY": "",
                # A 2-core CI machine: few concurrent task runners, prompt scheduling and parsing.
                "AIRFLOW__CORE__PARALLELISM": "4",
                "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
                "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
                "TRAINING_GUARD_DATA_ROOT": str(self.data_root),
                "TRAINING_GUARD_CHECKPOINT_ROOT": str(self.checkpoint_root),
                "TRAINING_GUARD_OUTPUT_ROOT": str(self.output_root),
                "TRAINING_GUARD_REGISTRY_URL": self.registry_url,
                # Tasks cannot read pools from the database in Airflow 3: pre-flight asks this API server.
                # All-admins mode needs no login; a real deployment gives the connection a user.
                "AIRFLOW_CONN_AIRFLOW_API": json.dumps(
                    {"conn_type": "http", "host": "127.0.0.1", "port": self.port}
                ),
                "TRAINING_GUARD_AIRFLOW_API_CONN_ID": "airflow_api",
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(self.extra_env)
        return env

    # --- lifecycle ------------------------------------------------------------------------------

    def start(
        self,
        *,
        timeout: float = 150,
        wait_for_dags: tuple[str, ...] = (),
        pools: Literal["import", "sync"] | None = None,
    ) -> None:
        """Migrate the database, create the pools if asked, start the processes, wait until healthy.

        :param timeout: seconds for the whole start, ``db migrate`` included.
        :param wait_for_dags: DAG ids that must be parsed and served by the REST API before returning.
        :param pools: create the pools of ``deploy/pools.json`` (``training_backfill``, ``training_sla``)
            after ``db migrate``, as a deployment's init step does: ``"import"`` runs
            ``airflow pools import deploy/pools.json`` (docker-compose's ``airflow-init``), ``"sync"``
            runs the provider's ``airflow training-guard pools sync``. None: no pools (a task in a
            missing pool is never scheduled).
        """
        deadline = time.monotonic() + timeout
        started = time.monotonic()
        for path in (self.data_root, self.checkpoint_root, self.output_root):
            path.mkdir(parents=True, exist_ok=True)
        self._run_cli("db-migrate", ["db", "migrate"], deadline)
        self.timings["db_migrate"] = time.monotonic() - started
        if pools is not None:
            command = {
                "import": ["pools", "import", str(POOLS_FILE)],
                "sync": ["training-guard", "pools", "sync"],
            }[pools]
            self._run_cli(f"pools-{pools}", command, deadline)
            self.timings["pools"] = time.monotonic() - started
        for name in PROCESSES:
            self._spawn(name)
        try:
            self.wait_healthy(deadline)
            self.timings["healthy"] = time.monotonic() - started
            for dag_id in wait_for_dags:
                self.wait_for_dag(dag_id, deadline)
            self.timings["dags_parsed"] = time.monotonic() - started
        except BaseException:
            self.stop()
            raise

    def _run_cli(self, log_name: str, args: list[str], deadline: float) -> None:
        """Run one ``airflow`` command to completion (output in ``<home>/logs/<log_name>.log``)."""
        log = self.log_dir / f"{log_name}.log"
        with log.open("wb") as out:
            result = subprocess.run(
                [AIRFLOW_BIN, *args],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=max(deadline - time.monotonic(), 1),
                check=False,
            )
        if result.returncode != 0:
            raise AirflowStackError(f"airflow {' '.join(args)} exited {result.returncode}\n{self._tail(log)}")

    def _spawn(self, name: str) -> None:
        args = [AIRFLOW_BIN, name]
        if name == "api-server":
            args += ["--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"]
        log = (self.log_dir / f"{name}.log").open("ab")
        self.procs[name] = subprocess.Popen(
            args,
            env=self.env,
            cwd=self.home,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            # Its own process group: stop() signals the group, so task runners and uvicorn workers go too.
            start_new_session=True,
        )
        log.close()

    def stop(self, *, grace: float = 20) -> None:
        """SIGTERM every process group, wait up to ``grace`` seconds, then SIGKILL what is left."""
        if self._client is not None:
            self._client.close()
            self._client = None
        started = time.monotonic()
        for proc in self.procs.values():
            self._signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
        for proc in self.procs.values():
            # Even when the leader exited, children left in its group (task runners) are killed.
            self._signal_group(proc, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        # Anything that escaped its group (setsid) but still carries this home: killed too, and
        # recorded, because it means stop() would have leaked it.
        self.stray_pids = self.leftover_pids()
        for pid in self.stray_pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        reaped_by = time.monotonic() + 5
        while self.leftover_pids() and time.monotonic() < reaped_by:
            time.sleep(0.1)
        self.timings["stop"] = time.monotonic() - started

    @staticmethod
    def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)

    def leftover_pids(self) -> list[int]:
        """Live processes of this stack: in one of its process groups, or started with its ``AIRFLOW_HOME``.

        The environment check also finds a process that left its group (``setsid``), which a
        group signal would miss.
        """
        groups = {proc.pid for proc in self.procs.values()}
        marker = f"AIRFLOW_HOME={self.home}".encode()
        alive = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                stat = (entry / "stat").read_text()
                environ = (entry / "environ").read_bytes()
            except OSError:
                continue
            # Fields after the command's closing parenthesis: state ppid pgrp ...
            fields = stat.rsplit(")", 1)[1].split()
            if fields[0] == "Z":
                continue
            if int(fields[2]) in groups or marker in environ.split(b"\0"):
                alive.append(int(entry.name))
        return alive

    # --- waiting --------------------------------------------------------------------------------

    def _check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise AirflowStackError(
                    f"airflow {name} exited with {proc.returncode} while starting\n{self.logs()}"
                )

    def wait_healthy(self, deadline: float) -> dict[str, Any]:
        """Poll ``GET /api/v2/monitor/health`` until every component reports healthy."""
        last: Any = None
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                response = self.client.get("/api/v2/monitor/health")
                last = response.text
                if response.status_code == 200:
                    health = response.json()
                    if all(
                        (health.get(component) or {}).get("status") == "healthy"
                        for component in HEALTHY_COMPONENTS
                    ):
                        return dict(health)
            except httpx.TransportError as err:
                last = repr(err)
            time.sleep(1)
        raise AirflowStackError(f"Airflow not healthy in time; last health answer: {last}\n{self.logs()}")

    def wait_for_dag(self, dag_id: str, deadline: float) -> dict[str, Any]:
        """Poll ``GET /api/v2/dags/{dag_id}`` until the dag-processor has parsed the DAG."""
        last: Any = None
        while time.monotonic() < deadline:
            self._check_alive()
            response = self.client.get(f"/api/v2/dags/{dag_id}")
            last = f"{response.status_code} {response.text[:300]}"
            if response.status_code == 200:
                return dict(response.json())
            time.sleep(1)
        errors = self.client.get("/api/v2/importErrors").text[:3000]
        raise AirflowStackError(
            f"DAG {dag_id} not parsed in time; last answer: {last}\nimport errors: {errors}\n{self.logs()}"
        )

    # --- REST API -------------------------------------------------------------------------------

    @property
    def client(self) -> httpx.Client:
        """An HTTP client on the api-server. No token needed: all-admins mode adds one per request."""
        if self._client is None:
            self._client = httpx.Client(base_url=self.base_url, timeout=60)
        return self._client

    def create_backfill(self, body: dict[str, Any], *, patience: float = 120) -> dict[str, Any]:
        """``POST /api/v2/backfills`` as the Backfill dialog does, retried while SQLite is locked.

        On SQLite a busy scheduler makes the API answer 503 "Database is locked" (seen on a loaded
        2-core machine); a person in the dialog would simply try again, and so does this. A 503 can
        come after the backfill row was committed, so the retry may meet 409 "already a running
        backfill": then the backfill an earlier attempt created is looked up and returned, as a
        person would find it in the Backfills list.
        """
        deadline = time.monotonic() + patience
        known = {backfill["id"] for backfill in self._backfills(body["dag_id"])}
        retried = False
        while True:
            try:
                response = self.client.post("/api/v2/backfills", json=body)
            except httpx.TimeoutException:
                # The backfill may have been created before the answer timed out: the 409 path below finds it.
                if time.monotonic() > deadline:
                    raise
                retried = True
                continue
            if response.status_code == 409 and retried:
                running = [
                    backfill
                    for backfill in self._backfills(body["dag_id"])
                    if backfill["id"] not in known and not backfill["completed_at"]
                ]
                if len(running) == 1:
                    return dict(running[0])
            if not _sqlite_busy(response) or time.monotonic() > deadline:
                if response.status_code >= 400:
                    raise AssertionError(
                        f"POST /api/v2/backfills -> {response.status_code}: {response.text[:2000]}"
                    )
                return dict(response.json())
            retried = True
            time.sleep(3)

    def _backfills(self, dag_id: str) -> list[dict[str, Any]]:
        """Every backfill of ``dag_id``, from ``GET /api/v2/backfills``."""
        return list(self.api("GET", "/backfills", params={"dag_id": dag_id, "limit": 100})["backfills"])

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        """Call the REST API (``/api/v2`` + path) and return the JSON body; raise on an HTTP error."""
        deadline = time.monotonic() + 120
        while True:
            # A read is safe to repeat: SQLite's 503 "Database is locked" or a slow answer under a
            # busy scheduler on a loaded machine.
            try:
                response = self.client.request(method, f"/api/v2{path}", **kwargs)
            except httpx.TimeoutException:
                if method != "GET" or time.monotonic() > deadline:
                    raise
                continue
            if method != "GET" or not _sqlite_busy(response) or time.monotonic() > deadline:
                break
            time.sleep(2)
        if response.status_code >= 400:
            raise AssertionError(f"{method} /api/v2{path} -> {response.status_code}: {response.text[:2000]}")
        return response.json() if response.content else None

    # --- diagnostics ----------------------------------------------------------------------------

    @staticmethod
    def _tail(path: Path, lines: int = 80) -> str:
        try:
            text = path.read_text(errors="replace")
        except OSError as err:
            return f"(no log: {err})"
        return "\n".join(text.splitlines()[-lines:])

    def logs(self, lines: int = 80) -> str:
        """The last ``lines`` of every process log, for failure messages."""
        parts = []
        for path in sorted(self.log_dir.glob("*.log")):
            parts.append(f"----- {path} (last {lines} lines) -----\n{self._tail(path, lines)}")
        return "\n".join(parts)

    def task_logs(self, lines: int = 60) -> str:
        """The last lines of every task log written under ``<home>/logs``."""
        parts = []
        for path in sorted(self.log_dir.glob("dag_id=*/**/*.log")):
            parts.append(f"----- {path.relative_to(self.log_dir)} -----\n{self._tail(path, lines)}")
        return "\n".join(parts)


def main() -> None:
    import tempfile

    stack = AirflowStack(Path(tempfile.mkdtemp(prefix="training-guard-e2e-")))
    stack.start(wait_for_dags=("daily_retraining",), pools="import")
    print(f"Airflow UI: {stack.base_url}  (AIRFLOW_HOME={stack.home}); Ctrl-C stops it", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
