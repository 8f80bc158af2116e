#!/usr/bin/env python3
"""`make demo`: run the daily retraining DAG end to end on the embedded default.

Creates an Airflow home under ``.airflow/`` in the project (SQLite metadata database) and the
training-guard pools, writes 24 sample hourly partitions for yesterday, runs the real
``daily_retraining`` DAG with
``airflow dags test`` (the real example training program as a guarded subprocess), and prints a
summary a person can read. ``--ui`` starts ``airflow standalone`` on the same home instead.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
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


def as_dict(value: object) -> dict[str, object]:
    if isinstance(value, str):
        value = json.loads(value)
    return value if isinstance(value, dict) else {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=REPO / ".airflow", help="AIRFLOW_HOME to use")
    parser.add_argument("--ui", action="store_true", help="start `airflow standalone` instead")
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
        step("starting `airflow standalone` (UI on http://localhost:8080; Ctrl-C to stop)")
        os.execvpe(str(Path(sys.executable).with_name("airflow")), ["airflow", "standalone"], env)

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
