"""Backfill benchmark: DAG file parse time for backfill ranges of 1, 90 and 365 days x 30 cities.

Run: ``.venv/bin/python benchmarks/backfill_sla.py [--repeat 5]``; prints JSON.

What it measures: the wall time of a real ``DagBag`` parse of one DAG file built with the factory
(``build_dags``), for ``max_backfill_days`` of 1, 90 and 365 with 30 cities (target: flat, < 0.5 s).
The factory maps partition keys at run time, so the DAG's shape (and its parse cost) does not grow
with the range.

Scheduler SLA (``scheduler_sla`` in the output; ``--skip-scheduler`` leaves it out): for each scenario a
real private Airflow (``tests/e2e/airflow_stack.py``: api-server, scheduler, dag-processor, triggerer)
with LocalExecutor on a fresh PostgreSQL database (``--pg-admin-url``; dropped at the end), DAG files
generated in a temp folder:

- ``bench_backlog_<N>d``: a plain ``@daily`` DAG of 30 city tasks that sleep ``--sleep`` s, all declaring
  ``pool="training_sla"``; backlog = a native backfill (``POST /api/v2/backfills``) of N days, all runs
  active at once (30 x N task instances);
- ``bench_daily``: 4 tasks in ``training_sla``, triggered through the REST API once the backlog's task
  instances exist, the scheduler has examined all of them (state scheduled or later) and its pool
  is saturated (bounded by ``--setup-timeout``; ``backlog_ready`` says whether it got there).

``plain``: the policy is off, so backlog and daily share ``training_sla`` (4 slots), default priority.
``protected``: ``AIRFLOW__TRAINING_GUARD__BACKFILL_POLICY_ENABLED=True`` routes the backfill to
``training_backfill`` (2 slots, priority 1); daily tasks have priority 100. Pools come from
``airflow training-guard pools sync`` in both.

Wait = trigger (run ``queued_at``) -> first daily task's ``start_date`` (REST API). Scheduler loops are
read from the scheduler's own "Ran scheduling loop in ... ms" debug line (enabled for that logger
only): ``scheduler_loop_that_queued_it`` is 1 + the number of loops that ended between the trigger
and the first task's ``queued_when`` (1: the first loop after the trigger queued it); target met when
<= 2. ``queued_to_start_s`` (executor starting a task process)
is reported separately. In ``plain`` the daily run normally does not start before ``--wait-timeout``:
the wait is then reported as a lower bound.

Run: ``.venv/bin/python benchmarks/backfill_sla.py`` (a few minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import itertools
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))  # tests.e2e.airflow_stack
PG_ADMIN_URL = os.environ.get("TRAINING_GUARD_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")

DAG_TEMPLATE = textwrap.dedent(
    '''
    """Benchmark pipeline."""
    from __future__ import annotations

    import datetime as dt

    from airflow_training_guard.backfill.factory import TrainingPipeline, build_dags
    from airflow_training_guard.backfill.validation import Dimension

    pipeline = TrainingPipeline(
        name="bench_{days}",
        work=lambda unit: [],
        start_date=dt.date(2025, 1, 1),
        dimensions=(Dimension("city", tuple(f"city{{i:02d}}" for i in range(30))),),
        output="rows",
        max_backfill_days={days},
        doc_md="benchmark",
    )
    daily, backfill = build_dags(pipeline)
    '''
)


def parse_times(days_list: list[int], repeat: int) -> dict[str, dict[str, float]]:
    from airflow.dag_processing.dagbag import DagBag

    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as folder:
        for days in days_list:
            path = Path(folder) / f"bench_{days}.py"
            path.write_text(DAG_TEMPLATE.format(days=days))
            samples = []
            for _ in range(repeat):
                begin = time.perf_counter()
                bag = DagBag(dag_folder=str(path))
                samples.append(time.perf_counter() - begin)
                if bag.import_errors:
                    raise SystemExit(f"import errors: {bag.import_errors}")
            results[f"{days}d_x_30_cities"] = {
                "median_s": round(statistics.median(samples), 4),
                "max_s": round(max(samples), 4),
                "dags": len(bag.dags),
                "tasks_per_dag": max(len(dag.tasks) for dag in bag.dags.values()),
            }
    return results


# ------------------------------------------------------------------------------------------------
# Scheduler SLA: a real scheduler (LocalExecutor, PostgreSQL), a backfill backlog, then the daily run.
# ------------------------------------------------------------------------------------------------

CITIES = tuple(f"city{i:02d}" for i in range(30))
DAILY_TASKS = 4  # one per training_sla slot
BACKLOG_START = dt.date(2025, 1, 1)

BACKLOG_DAG = textwrap.dedent(
    '''
    """Benchmark backlog: a PLAIN periodic DAG (no factory, no backfill awareness) of {cities} city tasks.

    Its tasks declare the SLA pool, as an unaware author would; only the cluster policy can move a
    native backfill of it out of that pool.
    """
    from __future__ import annotations

    import datetime as dt
    import time

    from airflow.sdk import DAG, task

    with DAG(
        "{dag_id}",
        schedule="@daily",
        start_date=dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc),
        # Ends before today: unpausing it (backfill runs of a paused DAG never start) creates no
        # scheduled run, so the backlog is the backfill only.
        end_date=dt.datetime(2026, 6, 30, tzinfo=dt.timezone.utc),
        catchup=False,
        max_active_tasks=64,
        tags=["benchmark"],
    ):

        @task(pool="training_sla")
        def work() -> None:
            time.sleep({sleep})

        for i in range({cities}):
            work.override(task_id=f"city{{i:02d}}")()
    '''
)

DAILY_DAG = textwrap.dedent(
    '''
    """Benchmark daily run: {tasks} tasks in training_sla, priority {priority} (absolute)."""
    from __future__ import annotations

    import datetime as dt
    import time

    from airflow.sdk import DAG, task

    with DAG(
        "bench_daily",
        schedule=None,
        start_date=dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc),
        max_active_tasks=64,
        max_active_runs=8,
        tags=["benchmark"],
    ):

        @task(pool="training_sla", priority_weight={priority}, weight_rule="absolute")
        def train() -> None:
            time.sleep({sleep})

        for i in range({tasks}):
            train.override(task_id=f"train{{i}}")()
    '''
)

ACTIVE_STATES = ("scheduled", "queued", "running")
FINISHED_STATES = ("success", "failed", "skipped", "upstream_failed", "removed")
LOCAL_SETTINGS = (
    "from airflow_training_guard.backfill.policy import task_instance_mutation_hook  # noqa: F401\n"
)

LOOP_LINE = re.compile(r"^(\S+)\s.*Ran scheduling loop in ([0-9.]+) ms")


def _ts(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def _pg_admin(sql: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(sql)


def _scheduler_loops(log: Path) -> list[tuple[dt.datetime, float]]:
    """(end time, duration ms) of every scheduler loop, from the scheduler's debug line."""
    loops = []
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return loops
    for line in text.splitlines():
        match = LOOP_LINE.search(line)
        if match:
            with contextlib.suppress(ValueError):
                when = dt.datetime.fromisoformat(match.group(1).replace("Z", "+00:00"))
                if when.tzinfo is None:
                    when = when.replace(tzinfo=dt.UTC)
                loops.append((when, float(match.group(2))))
    return loops


class Scenario:
    """One private Airflow (tests/e2e/airflow_stack.py) on a fresh PostgreSQL database."""

    def __init__(self, name: str, *, protected: bool, sleep: float, parallelism: int) -> None:
        from tests.e2e.airflow_stack import AirflowStack

        self.name = name
        self.protected = protected
        self.sleep = sleep
        self.db = f"tg_bench_{name}_{os.getpid()}"
        self.tmp = Path(tempfile.mkdtemp(prefix=f"tg-bench-{name}-"))
        self.dags = self.tmp / "dags"
        self.dags.mkdir()
        self.backlog_pool = "training_backfill" if protected else "training_sla"
        self.backlog_pool_slots = 2 if protected else 4
        env = {
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql+psycopg://postgres@127.0.0.1:5432/{self.db}",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags),
            "AIRFLOW__CORE__PARALLELISM": str(parallelism),
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "AIRFLOW__TRAINING_GUARD__BACKFILL_POLICY_ENABLED": str(protected),
            # The loop-duration debug line of the scheduler only ("Ran scheduling loop in ... ms").
            "AIRFLOW__LOGGING__NAMESPACE_LEVELS": "airflow.jobs.scheduler_job_runner=DEBUG",
        }
        self.stack = AirflowStack(self.tmp / "home", extra_env=env)
        # Airflow 3.3.2 applies task_instance_mutation_hook when it CREATES task instances only if an
        # airflow_local_settings module was imported (settings.import_local_settings flips
        # ``task_instance_mutation_hook.is_noop``); with the ``airflow.policy`` entry point alone, new
        # backfill task instances keep their declared pool. So register it the documented second way
        # too (docs/backfills.md, "Enable the cluster policy"), in both scenarios.
        config = self.stack.home / "config"
        config.mkdir(exist_ok=True)
        (config / "airflow_local_settings.py").write_text(LOCAL_SETTINGS)
        self.created_db = False

    # -- setup ----------------------------------------------------------------------------------
    def write_dags(self, sizes: list[int]) -> list[str]:
        ids = []
        for days in sizes:
            dag_id = f"bench_backlog_{days}d"
            (self.dags / f"{dag_id}.py").write_text(
                BACKLOG_DAG.format(dag_id=dag_id, cities=len(CITIES), sleep=self.sleep)
            )
            ids.append(dag_id)
        (self.dags / "bench_daily.py").write_text(
            DAILY_DAG.format(tasks=DAILY_TASKS, priority=100 if self.protected else 1, sleep=self.sleep)
        )
        return [*ids, "bench_daily"]

    def start(self, sizes: list[int]) -> None:
        _pg_admin(f'DROP DATABASE IF EXISTS "{self.db}" WITH (FORCE)')
        _pg_admin(f'CREATE DATABASE "{self.db}"')
        self.created_db = True
        dag_ids = self.write_dags(sizes)
        self.stack.start(timeout=240, wait_for_dags=tuple(dag_ids))
        sync = subprocess.run(
            [str(Path(sys.executable).with_name("airflow")), "training-guard", "pools", "sync", "-o", "json"],
            env=self.stack.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if sync.returncode != 0:
            raise RuntimeError(f"pools sync failed: {sync.stdout}\n{sync.stderr}")
        for dag_id in dag_ids:
            self.stack.api("PATCH", f"/dags/{dag_id}", json={"is_paused": False})

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.stack.stop()
        if self.created_db:
            with contextlib.suppress(Exception):
                _pg_admin(f'DROP DATABASE IF EXISTS "{self.db}" WITH (FORCE)')
        shutil.rmtree(self.tmp, ignore_errors=True)

    # -- REST helpers ---------------------------------------------------------------------------
    def count_tis(self, dag_id: str, states: tuple[str, ...] = (), pool: str | None = None) -> int:
        params: list[tuple[str, str]] = [("limit", "1")] + [("state", s) for s in states]
        if pool:
            params.append(("pool", pool))
        body = self.stack.api("GET", f"/dags/{dag_id}/dagRuns/~/taskInstances", params=params)
        return int(body["total_entries"])

    def pool(self, name: str) -> dict[str, Any]:
        return dict(self.stack.api("GET", f"/pools/{name}"))

    # -- one measurement ------------------------------------------------------------------------
    def backfill(self, dag_id: str, days: int, setup_timeout: float) -> dict[str, Any]:
        start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
        end = start + dt.timedelta(days=days - 1)
        began = time.monotonic()
        self.stack.api(
            "POST",
            "/backfills",
            json={
                "dag_id": dag_id,
                "from_date": start.isoformat(),
                "to_date": end.isoformat(),
                "run_backwards": False,
                "dag_run_conf": {},
                "reprocess_behavior": "none",
                "max_active_runs": days,
            },
        )
        expected = days * len(CITIES)
        deadline = began + setup_timeout
        created = saturated = examined = 0
        # Ready = every backlog task instance exists and the scheduler has examined it (scheduled,
        # queued, running or done: a real queue waiting for slots), and the backlog pool is full.
        while time.monotonic() < deadline:
            self.stack._check_alive()
            created = self.count_tis(dag_id)
            examined = self.count_tis(dag_id, ACTIVE_STATES + FINISHED_STATES)
            pool = self.pool(self.backlog_pool)
            saturated = int(pool.get("running_slots", 0)) + int(pool.get("queued_slots", 0))
            if created >= expected and examined >= created and saturated >= self.backlog_pool_slots:
                break
            time.sleep(1)
        return {
            "expected_task_instances": expected,
            "task_instances_created": created,
            "task_instances_examined_by_scheduler": examined,
            "backlog_ready": created >= expected and examined >= created,
            "backlog_pool": self.backlog_pool,
            "backlog_task_instances_in_backlog_pool": self.count_tis(dag_id, pool=self.backlog_pool),
            "backlog_pool_busy_slots": saturated,
            "backlog_pool_slots": self.backlog_pool_slots,
            "setup_s": round(time.monotonic() - began, 1),
        }

    def measure_daily(self, wait_timeout: float) -> dict[str, Any]:
        backlog_dags = [path.stem for path in self.dags.glob("bench_backlog_*.py")]
        backlog_pending = sum(self.count_tis(d) - self.count_tis(d, FINISHED_STATES) for d in backlog_dags)
        backlog_waiting = sum(self.count_tis(d, ("scheduled",)) for d in backlog_dags)
        run = self.stack.api("POST", "/dags/bench_daily/dagRuns", json={"logical_date": None})
        run_id = run["dag_run_id"]
        triggered = _ts(run.get("queued_at")) or dt.datetime.now(dt.UTC)
        deadline = time.monotonic() + wait_timeout
        first: dict[str, Any] | None = None
        tis: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            self.stack._check_alive()
            tis = self.stack.api("GET", f"/dags/bench_daily/dagRuns/{run_id}/taskInstances")["task_instances"]
            started = [ti for ti in tis if ti.get("start_date")]
            if started:
                first = min(started, key=lambda ti: ti["start_date"])
                break
            time.sleep(0.25)
        now = dt.datetime.now(dt.UTC)
        loops = _scheduler_loops(self.stack.log_dir / "scheduler.log")
        window = [d for when, d in loops if when >= triggered - dt.timedelta(seconds=60)]
        periods = [
            (b - a).total_seconds()
            for (a, _), (b, _) in itertools.pairwise(loops)
            if b >= triggered - dt.timedelta(seconds=60)
        ]
        loop_s = statistics.median(periods) if periods else None
        result: dict[str, Any] = {
            "backlog_unfinished_task_instances_at_trigger": backlog_pending,
            "backlog_scheduled_waiting_for_a_slot_at_trigger": backlog_waiting,
            "daily_run_id": run_id,
            "scheduler_loop_period_median_s": round(loop_s, 3) if loop_s else None,
            "scheduler_loop_work_median_ms": round(statistics.median(window), 1) if window else None,
        }
        if first is None:
            waited = (now - triggered).total_seconds()
            states = sorted({str(ti.get("state")) for ti in tis})
            result.update(
                {
                    "daily_first_task_started": False,
                    "daily_first_task_wait_s": f">= {waited:.1f} (not started when the wait ended)",
                    "daily_first_task_wait_s_lower_bound": round(waited, 1),
                    "daily_task_states_at_timeout": states,
                    "daily_first_task_wait_loops": (
                        f">= {sum(1 for when, _ in loops if triggered < when <= now)}"
                    ),
                    "target_met": False,
                }
            )
            return result
        start = _ts(first["start_date"])
        queued = _ts(first.get("queued_when"))
        assert start is not None
        loops_to_start = sum(1 for when, _ in loops if triggered < when <= start)
        loops_to_queue = sum(1 for when, _ in loops if queued and triggered < when <= queued)
        result.update(
            {
                "daily_first_task_started": True,
                "daily_first_task": first["task_id"],
                "daily_first_task_pool": first.get("pool"),
                "daily_first_task_priority_weight": first.get("priority_weight"),
                "daily_first_task_wait_s": round((start - triggered).total_seconds(), 2),
                "trigger_to_queued_s": round((queued - triggered).total_seconds(), 2) if queued else None,
                "queued_to_start_s": round((start - queued).total_seconds(), 2) if queued else None,
                # 1 = queued by the first loop that ended after the trigger.
                "scheduler_loop_that_queued_it": loops_to_queue + 1,
                "scheduler_loops_trigger_to_start": loops_to_start,
                "daily_first_task_wait_loops": (
                    round((start - triggered).total_seconds() / loop_s, 2) if loop_s else None
                ),
            }
        )
        # Target: the scheduler queues the daily run's first task within 2 of its loops after the
        # trigger (what pools/priority/policy control); queued -> start is the executor starting a
        # task runner process, reported separately.
        result["target_met"] = loops_to_queue + 1 <= 2 if loops else None
        return result

    def wait_daily_done(self, run_id: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.stack.api("GET", f"/dags/bench_daily/dagRuns/{run_id}")
            if run["state"] in ("success", "failed"):
                return
            time.sleep(1)


def run_scenario(name: str, protected: bool, sizes: list[int], args: argparse.Namespace) -> dict[str, Any]:
    began = time.monotonic()
    scenario = Scenario(name, protected=protected, sleep=args.sleep, parallelism=args.parallelism)
    out: dict[str, Any] = {
        "protected": protected,
        "description": (
            "native backfill routed by the cluster policy to training_backfill (2 slots, priority 1); "
            "daily tasks in training_sla (4 slots, priority 100)"
            if protected
            else "policy off: backfill and daily tasks share training_sla (4 slots), default priority"
        ),
        "measurements": [],
    }
    try:
        scenario.start(sizes)
        out["stack_start_s"] = round(scenario.stack.timings.get("dags_parsed", 0), 1)
        for days in sizes:
            entry: dict[str, Any] = {"backfill": f"{len(CITIES)} cities x {days} days"}
            entry.update(scenario.backfill(f"bench_backlog_{days}d", days, args.setup_timeout))
            entry.update(scenario.measure_daily(args.wait_timeout))
            out["measurements"].append(entry)
            if entry.get("daily_first_task_started"):
                scenario.wait_daily_done(entry["daily_run_id"], 60)
    except Exception as err:  # report, never leave processes behind
        out["error"] = f"{type(err).__name__}: {str(err)[:3000]}"
    finally:
        scenario.stop()
        out["stray_processes_killed"] = len(scenario.stack.stray_pids)
        out["scenario_wall_s"] = round(time.monotonic() - began, 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--skip-scheduler", action="store_true", help="only the parse-time part")
    parser.add_argument(
        "--pg-admin-url", default=None, help="PostgreSQL URL used to CREATE/DROP the bench databases"
    )
    parser.add_argument("--sleep", type=float, default=3.0, help="seconds each task sleeps")
    parser.add_argument("--parallelism", type=int, default=8)
    parser.add_argument(
        "--protected-days", default="3,90", help="backfill sizes (days x 30 cities), in order"
    )
    parser.add_argument("--plain-days", default="90")
    parser.add_argument(
        "--setup-timeout",
        type=float,
        default=45,
        help="max s to wait for a backlog to be queued and saturating",
    )
    parser.add_argument("--wait-timeout", type=float, default=60, help="max s to wait for the daily task")
    parser.add_argument("--scenarios", default="plain,protected")
    args = parser.parse_args()
    global PG_ADMIN_URL
    if args.pg_admin_url:
        PG_ADMIN_URL = args.pg_admin_url
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    with contextlib.redirect_stdout(sys.stderr):  # DagBag logs to stdout; stdout is the JSON only
        parse = parse_times([1, 90, 365], args.repeat)
    flat = max(entry["median_s"] for entry in parse.values()) < 0.5
    sla: Any = "skipped (--skip-scheduler)"
    if not args.skip_scheduler:
        began = time.monotonic()
        sla = {}
        for name in args.scenarios.split(","):
            days = args.protected_days if name == "protected" else args.plain_days
            sizes = [int(d) for d in days.split(",") if d]
            sla[name] = run_scenario(name, name == "protected", sizes, args)
        prot = [m.get("target_met") for m in sla.get("protected", {}).get("measurements", [])]
        sla["protected_target_met_at_every_backlog_size"] = bool(prot) and all(prot)
        sla["total_wall_s"] = round(time.monotonic() - began, 1)
    print(
        json.dumps(
            {
                "python": sys.version.split()[0],
                "dag_parse_time": parse,
                "parse_target_met": flat,
                "scheduler_sla": sla,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
