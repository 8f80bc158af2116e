"""Fixtures for the end-to-end tier: one real Airflow deployment per session, and a browser.

The stack has its OWN ``AIRFLOW_HOME`` (a temporary folder with its own SQLite database), separate
from the session home that ``tests/conftest.py`` gives unit and integration tests. When a test that
uses it fails, the tail of every process log and task log is attached to the report.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pendulum
import pytest

from tests.e2e.airflow_stack import REPO_ROOT, AirflowStack

ARTIFACTS = REPO_ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
# Headless Chromium on a closed network: without the background-networking flags its start-up
# connections (Google hosts, component updates) are refused many at a time.
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-dev-shm-usage",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
INSTALL_CHROMIUM = "apt-get update && apt-get install -y chromium"
DAILY_DAG_ID = "daily_retraining"
SCHEDULED_RUN_TIMEOUT = 240  # seconds; the run itself takes about 10-20 s on a 2-core machine


def _wait_past_the_daily_fire_time() -> None:
    """Do not start the stack in the 90 s before 02:00 UTC, ``daily_retraining``'s fire time.

    The dag-processor computes the next run when it parses the DAG; if 02:00 passed between that and
    the unpause, the scheduler would create two scheduled runs (yesterday's, then today's at once),
    and the test would have written data for only one of them.
    """
    now = pendulum.now("UTC")
    fire = now.start_of("day").add(hours=2)
    if fire.subtract(seconds=90) <= now < fire:
        wait = (fire - now).total_seconds() + 5
        print(f"\nwaiting {wait:.0f}s for 02:00 UTC to pass before starting the stack")
        time.sleep(wait)


@pytest.fixture(scope="session")
def airflow_stack() -> Iterator[AirflowStack]:
    """A running Airflow (api-server, scheduler, dag-processor, triggerer) on 127.0.0.1.

    The pools ``training_sla`` and ``training_backfill`` exist (``airflow pools import
    deploy/pools.json`` after ``db migrate``, as docker-compose's ``airflow-init`` does): a task in a
    missing pool is never scheduled. ``daily_retraining`` is parsed and served by the REST API when
    the fixture returns; a test using another DAG waits for it with ``stack.wait_for_dag``. Set
    ``TRAINING_GUARD_E2E_KEEP=1`` to keep the temporary home (logs, data, database) afterwards.
    """
    _wait_past_the_daily_fire_time()
    home = Path(tempfile.mkdtemp(prefix="training-guard-e2e-"))
    stack = AirflowStack(home)
    stack.start(wait_for_dags=("daily_retraining",), pools="import")
    print(f"\nAirflow e2e stack up at {stack.base_url} (AIRFLOW_HOME={home}): {stack.timings}")
    try:
        yield stack
    finally:
        stack.stop()
        leftovers = stack.leftover_pids()
        if os.environ.get("TRAINING_GUARD_E2E_KEEP") != "1":
            shutil.rmtree(home, ignore_errors=True)
        assert not leftovers, f"Airflow processes survived stop(): {leftovers}"
        assert not stack.stray_pids, (
            f"processes left their process group and escaped SIGTERM: {stack.stray_pids}"
        )


def latest_scheduled_logical_date(now: pendulum.DateTime) -> pendulum.DateTime:
    """The run an unpaused ``0 2 * * *`` DAG with ``catchup=False`` gets at once: the last 02:00 UTC.

    Airflow 3 turns a cron string into a ``CronTriggerTimetable``, whose logical date is the fire
    time itself (not the start of an interval); without catchup only the latest one is created.
    """
    today_0200 = now.in_tz("UTC").start_of("day").add(hours=2)
    return today_0200 if now >= today_0200 else today_0200.subtract(days=1)


def sample_data() -> ModuleType:
    """``examples/training/sample_data.py``, which writes the hourly partitions the DAG trains on."""
    spec = importlib.util.spec_from_file_location(
        "training_sample_data", REPO_ROOT / "examples" / "training" / "sample_data.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass(frozen=True)
class ScheduledRun:
    """The scheduled run of ``daily_retraining`` the scheduler created and finished."""

    run: dict[str, Any]
    expected_logical_date: pendulum.DateTime
    partition_key: str
    dag_before_unpause: dict[str, Any]
    seconds_to_finish: float

    @property
    def run_id(self) -> str:
        return str(self.run["dag_run_id"])


@pytest.fixture(scope="session")
def daily_retraining_run(airflow_stack: AirflowStack) -> ScheduledRun:
    """Make the scheduler run ``daily_retraining`` on its own schedule now, and wait until it finishes.

    The DAG is ``0 2 * * *`` with ``catchup=False`` and starts paused: unpausing it makes the
    scheduler create the run of the most recent 02:00 UTC at once (run type ``scheduled``). The
    fixture writes the 24 hourly partitions that run trains on (the day before its logical date)
    first, so the sensor finds them at its first poke.
    """
    stack = airflow_stack
    expected = latest_scheduled_logical_date(pendulum.now("UTC"))
    partition_key = expected.subtract(days=1).to_date_string()
    dag = stack.api("GET", f"/dags/{DAILY_DAG_ID}")
    if dag["next_dagrun_logical_date"]:
        # The run the scheduler will create is the one the dag-processor computed: write its data.
        partition_key = pendulum.parse(dag["next_dagrun_logical_date"]).subtract(days=1).to_date_string()
    sample_data().write_day(stack.data_root, partition_key, rows_per_hour=200)
    started = time.monotonic()
    stack.api("PATCH", f"/dags/{DAILY_DAG_ID}", json={"is_paused": False})
    deadline = started + SCHEDULED_RUN_TIMEOUT
    runs: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        runs = stack.api("GET", f"/dags/{DAILY_DAG_ID}/dagRuns", params={"run_type": "scheduled"})["dag_runs"]
        finished = [run for run in runs if run["state"] in {"success", "failed"}]
        if finished:
            elapsed = time.monotonic() - started
            print(
                f"\nscheduled run {finished[0]['dag_run_id']} ended {finished[0]['state']} in {elapsed:.0f}s"
            )
            return ScheduledRun(finished[0], expected, partition_key, dag, elapsed)
        time.sleep(2)
    pytest.fail(
        f"no scheduled run of {DAILY_DAG_ID} finished within {SCHEDULED_RUN_TIMEOUT}s; runs seen: {runs}\n"
        f"{stack.logs()}\n{stack.task_logs()}"
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.rep_call = report  # type: ignore[attr-defined]  # read by the page fixture
    stack = getattr(item, "funcargs", {}).get("airflow_stack")
    if report.failed and isinstance(stack, AirflowStack):
        report.sections.append(("Airflow process logs", stack.logs()))
        report.sections.append(("Airflow task logs", stack.task_logs()))
    return report


def _ensure_chromium() -> str:
    """Install Debian's chromium when missing (as root), or skip with the command that installs it."""
    if Path(CHROMIUM).exists():
        return CHROMIUM
    if os.geteuid() != 0:
        pytest.skip(
            f"Chromium is not installed at {CHROMIUM}; install it with: sudo sh -c '{INSTALL_CHROMIUM}'"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]
    result = subprocess.run(install, env=env, capture_output=True, text=True, check=False, timeout=900)
    if result.returncode != 0:
        # A fresh machine's package lists may be missing or stale.
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, check=False, timeout=300)
        result = subprocess.run(install, env=env, capture_output=True, text=True, check=False, timeout=900)
    if result.returncode != 0 or not Path(CHROMIUM).exists():
        pytest.fail(
            f"could not install chromium ({INSTALL_CHROMIUM}):\n{result.stdout[-2000:]}{result.stderr[-2000:]}"
        )
    return CHROMIUM


# Module scope, not session: Playwright's sync API runs an asyncio loop in the main thread while the
# browser is open, and any later test that calls asyncio.run() (KubernetesPodOperator does) would
# fail with "asyncio.run() cannot be called from a running event loop".
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Debian Chromium driven by Playwright (no Playwright browser download)."""
    executable = _ensure_chromium()
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        # launch() starts Chromium with a fresh, empty --user-data-dir of its own every time.
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh browser page; on failure a screenshot lands in ``test-artifacts/``."""
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    page = context.new_page()
    try:
        yield page
    finally:
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / f"{request.node.name}-failure.png"), full_page=True)
        context.close()


@pytest.fixture
def artifacts_dir() -> Path:
    """``test-artifacts/`` at the repository root (git-ignored), where screenshots are saved."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
