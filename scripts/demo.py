#!/usr/bin/env python3
"""`make demo`: run the daily retraining DAG end to end on the embedded default.

Creates an Airflow home under ``.airflow/`` in the project (SQLite metadata database) and the
training-guard pools, writes 24 sample hourly partitions for yesterday, runs the real
``daily_retraining`` DAG with
``airflow dags test`` (the real example training program as a guarded subprocess), and prints a
summary a person can read.

``--ui`` starts Airflow's four services on the same home instead (what ``airflow standalone`` does,
without its surprises on a laptop): the API server and UI on 127.0.0.1 only (``--port``, default
8080; no log server on any other interface), a LocalExecutor with ``parallelism`` = the number of
CPUs (2 to 4), and on Ctrl-C or SIGTERM every service and every task it started is stopped within
seconds (SIGTERM to each service's process group, SIGKILL after a grace period).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DAG_ID = "daily_retraining"


def demo_env(home: Path) -> dict[str, str]:
    guard = home / "training-guard"
    env = dict(os.environ)
    env.update(
        {
            # `airflow standalone` starts its components as `airflow ...` found on PATH: this venv's.
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "TRAINING_GUARD_DATA_ROOT": str(guard / "data"),
            "TRAINING_GUARD_CHECKPOINT_ROOT": str(guard / "checkpoints"),
            "TRAINING_GUARD_OUTPUT_ROOT": str(guard / "models"),
        }
    )
    return env


def step(message: str) -> None:
    print(f"==> {message}", flush=True)


def airflow(env: dict[str, str], *args: str, log: Path | None = None) -> subprocess.CompletedProcess[str]:
    binary = str(Path(sys.executable).with_name("airflow"))
    proc = subprocess.run([binary, *args], env=env, capture_output=True, text=True)
    if log is not None:
        log.write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-40:])
        where = f" (full log: {log})" if log else ""
        sys.exit(f"airflow {' '.join(args)} failed with exit code {proc.returncode}{where}:\n{tail}")
    return proc


def summarize(env: dict[str, str], run_id_hint: str) -> dict[str, object]:
    """Read the run's task states and XComs from the metadata database."""
    os.environ.update(env)
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        run = session.query(DagRun).filter(DagRun.dag_id == DAG_ID).order_by(DagRun.id.desc()).first()
        assert run is not None, f"no run of {DAG_ID} found ({run_id_hint})"
        states = {
            ti.task_id: str(ti.state)
            for ti in session.query(TaskInstance).filter(
                TaskInstance.dag_id == DAG_ID, TaskInstance.run_id == run.run_id
            )
        }
        xcoms = {
            x.task_id: x.value
            for x in session.query(XComModel).filter(
                XComModel.dag_id == DAG_ID, XComModel.run_id == run.run_id, XComModel.key == "return_value"
            )
        }
        return {"run_id": run.run_id, "state": str(run.state), "tasks": states, "xcom": xcoms}


#: The services ``--ui`` starts, in order; each in its own process group.
UI_SERVICES = ("api-server", "scheduler", "dag-processor", "triggerer")
#: Seconds the services get to stop after SIGTERM before they are killed.
STOP_GRACE = 15


def ui_parallelism() -> int:
    """LocalExecutor task processes: one per CPU, at least 2, at most 4 (a laptop stays usable)."""
    return max(2, min(4, os.cpu_count() or 2))


def ui_env(env: dict[str, str], home: Path, port: int) -> dict[str, str]:
    """The demo's environment plus what makes the services safe on a laptop."""
    secret_file = home / "jwt-secret"
    if not secret_file.exists():
        secret_file.write_text(secrets.token_urlsafe(32))
        secret_file.chmod(0o600)
    base_url = f"http://127.0.0.1:{port}"
    return {
        **env,
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": str(ui_parallelism()),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": base_url,
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base_url}/execution/",
        # Loopback only, one person: no login (the simple auth manager makes everyone admin).
        "AIRFLOW__CORE__AUTH_MANAGER": (
            "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
        ),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        # Every service must sign and check tokens with one secret.
        "AIRFLOW__API_AUTH__JWT_SECRET": secret_file.read_text().strip(),
        "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
        # daily_retraining's pre-flight checks its pool through this API server (as in docker-compose).
        "AIRFLOW_CONN_AIRFLOW_API": json.dumps({"conn_type": "http", "host": "127.0.0.1", "port": port}),
        "TRAINING_GUARD_AIRFLOW_API_CONN_ID": "airflow_api",
    }


def _service_args(name: str, port: int) -> list[str]:
    args = [str(Path(sys.executable).with_name("airflow")), name]
    if name == "api-server":
        args += ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    if name in ("scheduler", "triggerer"):
        # The log servers listen on every interface and a fixed port; the API server reads the
        # task logs from the same folder instead.
        args.append("--skip-serve-logs")
    return args


def stop_services(procs: dict[str, subprocess.Popen[bytes]], grace: float = STOP_GRACE) -> None:
    """SIGTERM every service's process group, wait ``grace`` seconds, SIGKILL what is left."""
    for proc in procs.values():
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for proc in procs.values():
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
    for proc in procs.values():
        # Task processes left in a group whose leader exited are killed too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)


def run_ui(env: dict[str, str], home: Path, *, port: int) -> None:
    """Start the services, print where the UI is, and stop them all on Ctrl-C or SIGTERM."""
    env = ui_env(env, home, port)
    logs = home / "logs"
    logs.mkdir(exist_ok=True)
    procs: dict[str, subprocess.Popen[bytes]] = {}

    def _terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    # SIGINT too: a process started from a script in the background inherits SIGINT ignored, and
    # Python then never raises KeyboardInterrupt; Ctrl-C must stop the services whatever started us.
    for stop in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(stop, _terminate)
    step(
        f"starting the API server on http://127.0.0.1:{port} (loopback only), scheduler "
        f"(LocalExecutor, parallelism {ui_parallelism()}), dag-processor and triggerer; logs in {logs}"
    )
    try:
        for name in UI_SERVICES:
            with (logs / f"{name}.log").open("ab") as out:
                procs[name] = subprocess.Popen(
                    _service_args(name, port),
                    env=env,
                    cwd=home,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    # Its own group: Ctrl-C reaches only this script, which stops each group whole.
                    start_new_session=True,
                )
        wait_ui(procs, port, logs)
        step(
            f"Airflow UI: http://127.0.0.1:{port}  (partition coverage: /plugin/partition-coverage); Ctrl-C stops"
        )
        while all(proc.poll() is None for proc in procs.values()):
            time.sleep(1)
        died = [name for name, proc in procs.items() if proc.poll() is not None]
        print(f"airflow {', '.join(died)} exited; stopping the others (see {logs})", file=sys.stderr)
    except KeyboardInterrupt:
        pass
    finally:
        step("stopping the Airflow services")
        stop_services(procs)
        step("stopped")


def wait_ui(procs: dict[str, subprocess.Popen[bytes]], port: int, logs: Path, timeout: float = 600) -> None:
    """Wait until the API server answers its health check (or a service dies)."""
    deadline = time.monotonic() + timeout
    url = f"http://127.0.0.1:{port}/api/v2/monitor/health"
    while time.monotonic() < deadline:
        for name, proc in procs.items():
            if proc.poll() is not None:
                raise SystemExit(
                    f"airflow {name} exited with {proc.returncode} while starting; see {logs / name}.log"
                )
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=5) as response:
            if response.status == 200:
                return
        time.sleep(1)
    raise SystemExit(f"the API server did not answer on {url} within {timeout:.0f}s; see {logs}")


def as_dict(value: object) -> dict[str, object]:
    if isinstance(value, str):
        value = json.loads(value)
    return value if isinstance(value, dict) else {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=REPO / ".airflow", help="AIRFLOW_HOME to use")
    parser.add_argument("--ui", action="store_true", help="start the Airflow UI and services instead")
    parser.add_argument("--port", type=int, default=8080, help="--ui: the UI's port on 127.0.0.1")
    args = parser.parse_args()
    home: Path = args.home.resolve()
    home.mkdir(parents=True, exist_ok=True)
    env = demo_env(home)

    step(f"embedded Airflow in {home} (SQLite)")
    airflow(env, "db", "migrate", log=home / "db-migrate.log")
    step("creating the pools training_sla and training_backfill")
    airflow(env, "training-guard", "pools", "sync", log=home / "pools-sync.log")

    import pendulum

    sys.path.insert(0, str(REPO / "examples" / "training"))
    from sample_data import write_day

    if args.ui:
        # Unpausing daily_retraining in the UI makes the scheduler run the latest 02:00 UTC at once
        # (catchup=False): give that run its 24 hours, so the sensor finds them at its first poke.
        now = pendulum.now("UTC")
        latest = now.start_of("day").add(hours=2)
        latest = latest if now >= latest else latest.subtract(days=1)
        day = latest.subtract(days=1).to_date_string()
        step(f"writing 24 sample hourly partitions for {day} (the run of {latest.to_iso8601_string()})")
        write_day(Path(env["TRAINING_GUARD_DATA_ROOT"]), day, rows_per_hour=200)
        run_ui(env, home, port=args.port)
        return

    logical_date = pendulum.now("UTC").start_of("day").add(hours=2)
    partition_date = logical_date.subtract(days=1).to_date_string()
    guard = home / "training-guard"
    # A demo run starts clean so it shows a full training; retries inside the run still resume. The
    # registry goes too: its production pointer would name a model folder this run overwrites.
    for leaf in ("checkpoints", "models"):
        shutil.rmtree(guard / leaf, ignore_errors=True)
    (guard / "registry.db").unlink(missing_ok=True)

    step(f"writing 24 sample hourly partitions for {partition_date}")
    write_day(Path(env["TRAINING_GUARD_DATA_ROOT"]), partition_date, rows_per_hour=200)

    step(f"running DAG {DAG_ID} for {logical_date.to_iso8601_string()} (partition_key={partition_date})")
    started = time.monotonic()
    log = home / f"demo-{partition_date}.log"
    airflow(env, "dags", "test", DAG_ID, logical_date.to_iso8601_string(), log=log)
    elapsed = time.monotonic() - started

    summary = summarize(env, partition_date)
    train = as_dict(summary["xcom"].get("train"))  # type: ignore[union-attr]
    evaluation = as_dict(summary["xcom"].get("evaluate"))  # type: ignore[union-attr]
    completeness = as_dict(summary["xcom"].get("wait_for_partitions"))  # type: ignore[union-attr]
    pins = as_dict(summary["xcom"].get("preflight"))  # type: ignore[union-attr]
    promotion = as_dict(summary["xcom"].get("promote"))  # type: ignore[union-attr]
    checkpoints = sorted(Path(str(train.get("checkpoint_dir", ""))).glob("step-*")) if train else []
    print()
    print(f"daily retraining demo: run {summary['run_id']} -> {summary['state']} in {elapsed:.0f}s")
    for task_id, state in sorted(summary["tasks"].items()):  # type: ignore[union-attr]
        print(f"  task {task_id:<12} {state}")
    if completeness:
        print(
            f"  partitions        {completeness['present_count']}/{completeness['expected_count']} "
            "hourly partitions verified present and finalized by wait_for_partitions"
        )
    if pins:
        for location, digest in sorted(as_dict(pins.get("datasets")).items()):
            print(f"  data pinned       {location} -> {digest} (re-verified by train before it started)")
    manifest = as_dict(train.get("manifest")) if train else {}
    if pins.get("image_digest"):
        print(f"  image             {pins['image']} (digest verified in its registry at pre-flight)")
    elif manifest:
        python_env = as_dict(manifest.get("python_env"))
        print(
            f"  image             none: local launcher; the manifest pins Python {python_env.get('python', '?')} "
            f"and its packages (sha256:{str(python_env.get('distributions_sha256', ''))[:16]}...)"
        )
    if train:
        print(f"  partition_key     {train['partition_key']}")
        print(f"  training          steps {train['resumed_from_step']} -> {train['final_step']}")
        print(f"  checkpoints       {len(checkpoints)} kept in {train['checkpoint_dir']}")
        print(f"  model             {train['output_dir']}/model.npy")
    if train.get("manifest_path"):
        print(
            f"  run manifest      {train['manifest_path']} (data pins, code, Python environment, checkpoints, metrics)"
        )
    if evaluation:
        print(f"  evaluation        accuracy={evaluation['accuracy']:.3f} loss={evaluation['loss']:.4f}")
        print(f"  model SHA-256     {evaluation['model_sha256']}")
    if promotion:
        previous, current = promotion.get("previous") or {}, promotion.get("current") or {}
        before = f"v{previous['version']}" if previous else "none"
        after = f"v{current['version']}" if current else "none"
        if promotion["outcome"] == "promoted":
            change = f"production {before} -> {after}, pointer records commit {current.get('commit')}"
        else:
            change = f"production stays {after}"
        print(f"  promotion         {promotion['outcome']}: {change} ({promotion['reason']})")
    print(f"  full log          {log}")
    if summary["state"] != "success":
        sys.exit(f"the demo run ended in state {summary['state']}; see {log}")


if __name__ == "__main__":
    main()
