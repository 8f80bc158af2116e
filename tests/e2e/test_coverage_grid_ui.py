"""The partition coverage page in Chromium, against a real Airflow with real logins.

A stack of its own (not the session's all-admins one): the simple auth manager with three users,
``admin`` (role admin), ``viewer`` (role viewer: may read DAGs, may not trigger them) and
``outsider`` (no role: may read nothing). The browser carries each user's real token (from
``POST /auth/token``) in the UI's ``_token`` cookie, the way the login page leaves it.

Pipeline ``city_demand`` (dags/city_demand.py): inputs are written for berlin and oslo over three
days except ``oslo|DAY2``; a backfill of those six keys commits five and fails one.

1. The grid shows 5 committed, 1 failed and 12 missing cells (6 cities x 3 days), the failed cell
   carries the error and links to its task instance; the page opens from the UI's navigation.
2. The input lands; a rectangle over berlin..oslo x DAY1..DAY3 and "Backfill failed" runs only
   ``oslo|DAY2`` (one mapped instance), the grid shows it running at once, then committed.
3. Each committed key reached Airflow's partition machinery: ``city_demand_report`` has one run
   per key with that ``partition_key``.
4. A reversed date range is refused on the page with validate_request's message; no run exists.
5. The viewer sees the grid but cannot backfill (buttons disabled, POST refused with 403); the
   outsider sees no pipeline and gets 403 from the grid.

``docs/coverage-grid.png`` is written by test 1: the screenshot in the docs is the real page.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shutil
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.airflow_stack import REPO_ROOT, AirflowStack
from tests.e2e.conftest import ARTIFACTS

PIPELINE = "city_demand"
BACKFILL_DAG = "city_demand_backfill"
REPORT_DAG = "city_demand_report"
CITIES = ("berlin", "oslo")
ALL_CITIES = ("berlin", "hamburg", "munich", "oslo", "paris", "rome")
TODAY = dt.datetime.now(dt.UTC).date()
DAY1, DAY2, DAY3 = ((TODAY - dt.timedelta(days=n)).isoformat() for n in (6, 5, 4))
FAILING_KEY = f"oslo|{DAY2}"
PASSWORDS = {"admin": "admin-pw", "viewer": "viewer-pw", "outsider": "outsider-pw"}
RUN_TIMEOUT = 600
UI_TIMEOUT_MS = 60_000
SCREENSHOT = REPO_ROOT / "docs" / "coverage-grid.png"


class UsersStack(AirflowStack):
    """An Airflow stack with real users; its REST client logs in as ``admin``."""

    def login(self, user: str) -> str:
        response = httpx.post(
            f"{self.base_url}/auth/token",
            json={"username": user, "password": PASSWORDS[user]},
            timeout=120,
        )
        assert response.status_code == 201, f"login of {user} failed: {response.status_code} {response.text}"
        return str(response.json()["access_token"])

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            # Generous: on a loaded 2-core machine the API server can take tens of seconds to answer.
            self._client = httpx.Client(base_url=self.base_url, timeout=120)
        client = self._client
        if "authorization" not in client.headers:
            # Not up yet: the health check needs no login, the next call retries.
            with contextlib.suppress(httpx.TransportError, AssertionError):
                client.headers["Authorization"] = f"Bearer {self.login('admin')}"
        return client


def _write_input(stack: AirflowStack, city: str, day: str) -> None:
    path = stack.data_root / "city_demand" / city / f"{day}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(list(range(24))))


@pytest.fixture(scope="module")
def stack() -> Iterator[UsersStack]:
    home = Path(tempfile.mkdtemp(prefix="training-guard-grid-e2e-"))
    passwords = home / "passwords.json"
    passwords.write_text(json.dumps(PASSWORDS))
    stack = UsersStack(
        home,
        extra_env={
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin,viewer:viewer,outsider:",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
            # On a loaded 2-core machine the API server can take longer than the 5 s default to
            # answer a task's first call; the task then dies before it starts.
            "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": "60",
        },
    )
    stack.start(timeout=600, wait_for_dags=(BACKFILL_DAG, REPORT_DAG), pools="import")
    try:
        yield stack
    finally:
        stack.stop()
        leftovers = stack.leftover_pids()
        if os.environ.get("TRAINING_GUARD_E2E_KEEP") != "1":
            shutil.rmtree(home, ignore_errors=True)
        assert not leftovers, f"Airflow processes survived stop(): {leftovers}"


def _runs(stack: AirflowStack, dag_id: str) -> list[dict[str, Any]]:
    return list(stack.api("GET", f"/dags/{dag_id}/dagRuns", params={"limit": 100})["dag_runs"])


def _wait_finished(stack: AirflowStack, run_id: str) -> dict[str, Any]:
    path = f"/dags/{BACKFILL_DAG}/dagRuns/{urllib.parse.quote(run_id, safe='')}"
    deadline = time.monotonic() + RUN_TIMEOUT
    while True:
        state = "unknown (the API server did not answer in time)"
        try:
            run: dict[str, Any] = stack.api("GET", path)
            state = run["state"]
            if state in {"success", "failed"}:
                return run
        except httpx.TimeoutException:
            pass  # a slow answer is not a verdict; the deadline is
        assert time.monotonic() < deadline, f"run {run_id} still {state} after {RUN_TIMEOUT}s"
        time.sleep(2)


def _mapped(stack: AirflowStack, run_id: str) -> list[dict[str, Any]]:
    path = f"/dags/{BACKFILL_DAG}/dagRuns/{urllib.parse.quote(run_id, safe='')}/taskInstances"
    tis = stack.api("GET", path, params={"task_id": "train_partition", "limit": 100})["task_instances"]
    return sorted(tis, key=lambda ti: int(ti["map_index"]))


@pytest.fixture(scope="module")
def first_backfill(stack: UsersStack) -> dict[str, Any]:
    """Backfill berlin and oslo x DAY1..DAY3 with every input but oslo|DAY2's: 5 commit, 1 fails."""
    for city in CITIES:
        for day in (DAY1, DAY2, DAY3):
            if f"{city}|{day}" != FAILING_KEY:
                _write_input(stack, city, day)
    for dag_id in (BACKFILL_DAG, REPORT_DAG):  # a paused consumer gets no runs from asset events
        stack.api("PATCH", f"/dags/{dag_id}", json={"is_paused": False})
    conf = {"start_date": DAY1, "end_date": DAY3, "city": list(CITIES), "reprocess": "missing"}
    run = stack.api("POST", f"/dags/{BACKFILL_DAG}/dagRuns", json={"logical_date": None, "conf": conf})
    finished = _wait_finished(stack, run["dag_run_id"])
    states = {ti["rendered_map_index"]: ti["state"] for ti in _mapped(stack, run["dag_run_id"])}
    expected = {f"{city}|{day}": "success" for city in CITIES for day in (DAY1, DAY2, DAY3)}
    expected[FAILING_KEY] = "failed"
    assert states == expected, f"first backfill {finished['state']}: {states}\n{stack.logs(40)}"
    return finished


@pytest.fixture(autouse=True, scope="module")
def _patient_expect() -> None:
    from playwright.sync_api import expect

    expect.set_options(timeout=UI_TIMEOUT_MS)


def _browser_as(browser: Any, stack: UsersStack, user: str) -> Any:
    context = browser.new_context(viewport={"width": 1500, "height": 950})
    context.add_cookies([{"name": "_token", "value": stack.login(user), "url": stack.base_url}])
    page = context.new_page()
    page.set_default_timeout(UI_TIMEOUT_MS)
    return page


def _open_grid(page: Any, stack: AirflowStack, **query: str) -> None:
    from playwright.sync_api import expect

    params = {"pipeline": PIPELINE, "date_from": DAY1, "date_to": DAY3, **query}
    page.goto(f"{stack.base_url}/training-guard/coverage?{urllib.parse.urlencode(params)}")
    expect(page.locator("#grid td[data-key]")).to_have_count(len(ALL_CITIES) * 3)


def _cell(page: Any, key: str) -> Any:
    return page.locator(f'#grid td[data-key="{key}"]')


def _states(page: Any) -> dict[str, str]:
    return dict(
        page.eval_on_selector_all(
            "#grid td[data-key]", "cells => cells.map(c => [c.dataset.key, c.dataset.state])"
        )
    )


# --- tests ---------------------------------------------------------------------------------------


def test_grid_shows_committed_failed_and_missing_cells_after_a_backfill_where_one_key_failed(
    stack: UsersStack, first_backfill: dict[str, Any], browser: Any
) -> None:
    from playwright.sync_api import expect

    assert first_backfill["state"] == "failed", first_backfill  # one key failed: the run says so
    page = _browser_as(browser, stack, "admin")
    try:
        # The page is in the UI's navigation and renders inside the Airflow UI.
        page.goto(f"{stack.base_url}/plugin/partition-coverage")
        frame = page.frame_locator("iframe").first
        expect(frame.locator("#grid td[data-key]").first).to_be_visible()

        _open_grid(page, stack)
        states = _states(page)
        expected = {f"{city}|{day}": "missing" for city in ALL_CITIES for day in (DAY1, DAY2, DAY3)}
        expected.update({f"{city}|{day}": "committed" for city in CITIES for day in (DAY1, DAY2, DAY3)})
        expected[FAILING_KEY] = "failed"
        assert states == expected
        expect(page.get_by_test_id("count-committed")).to_contain_text("committed: 5")
        expect(page.get_by_test_id("count-failed")).to_contain_text("failed: 1")
        expect(page.get_by_test_id("count-missing")).to_contain_text("missing: 12")

        _cell(page, FAILING_KEY).click()
        expect(page.get_by_test_id("detail-state")).to_have_text("failed")
        expect(page.get_by_test_id("detail-error")).to_contain_text(
            f"FileNotFoundError: input of partition_key='{FAILING_KEY}' is missing"
        )
        link = page.get_by_role("link", name="Task instance")
        href = link.get_attribute("href") or ""
        assert href.startswith(f"/dags/{BACKFILL_DAG}/runs/") and "/tasks/train_partition/mapped/" in href
        assert urllib.parse.unquote(href).split("/runs/")[1].startswith(first_backfill["dag_run_id"])
        expect(page.get_by_role("link", name="Log")).to_have_attribute(
            "href", href.replace("/details", "?try_number=1")
        )

        _cell(page, f"berlin|{DAY1}").click()
        expect(page.get_by_test_id("detail-state")).to_have_text("committed")
        expect(page.locator("#detail")).to_contain_text("v1")
        SCREENSHOT.parent.mkdir(exist_ok=True)
        page.goto(
            f"{stack.base_url}/plugin/partition-coverage"
        )  # the docs show the page inside the Airflow UI
        expect(frame.locator("#grid td[data-key]").first).to_be_visible()
        frame.locator("#date-from").fill(DAY1)
        frame.locator("#date-to").fill(DAY3)
        frame.locator("#apply").click()
        expect(frame.locator("#grid td[data-key]")).to_have_count(len(ALL_CITIES) * 3)
        frame.locator(f'#grid td[data-key="{FAILING_KEY}"]').click()
        expect(frame.get_by_test_id("detail-state")).to_have_text("failed")
        page.screenshot(path=str(SCREENSHOT))
    except BaseException:
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "coverage-grid-failure.png"), full_page=True)
        raise
    finally:
        page.context.close()


def test_backfill_failed_on_a_selected_rectangle_runs_only_the_failed_key(
    stack: UsersStack, first_backfill: dict[str, Any], browser: Any
) -> None:
    from playwright.sync_api import expect

    _write_input(stack, "oslo", DAY2)  # the missing input landed
    runs_before = {run["dag_run_id"] for run in _runs(stack, BACKFILL_DAG)}
    page = _browser_as(browser, stack, "admin")
    try:
        _open_grid(page, stack)
        page.locator("#dimension-filters select").select_option(list(CITIES))
        page.locator("#apply").click()
        expect(page.locator("#grid td[data-key]")).to_have_count(len(CITIES) * 3)
        # Drag a rectangle from berlin|DAY1 to oslo|DAY3: the 6 keys of the first backfill.
        _cell(page, f"berlin|{DAY1}").hover()
        page.mouse.down()
        _cell(page, f"oslo|{DAY3}").hover()
        page.mouse.up()
        expect(page.locator("#grid td.selected")).to_have_count(6)
        expect(page.locator("#selection")).to_have_attribute("data-keys", "6")

        with page.expect_response(lambda r: r.url.endswith(f"/pipelines/{PIPELINE}/backfill")) as answer:
            page.get_by_role("button", name="Backfill failed").click()
        assert answer.value.status == 201, answer.value.text()
        body = answer.value.json()
        assert body["keys_to_run"] == [FAILING_KEY]
        assert body["conf"] == {
            "start_date": DAY1,
            "end_date": DAY3,
            "city": ["berlin", "oslo"],
            "reprocess": "failed",
        }
        expect(page.get_by_test_id("backfill-started")).to_contain_text(
            "1 key(s) to process in mode 'failed'"
        )
        # At once, before any task ran, the key shows as running.
        expect(_cell(page, FAILING_KEY)).to_have_attribute("data-state", "running")

        run = _wait_finished(stack, body["dag_run_id"])
        assert run["state"] == "success", run
        assert {r["dag_run_id"] for r in _runs(stack, BACKFILL_DAG)} - runs_before == {body["dag_run_id"]}
        tis = _mapped(stack, body["dag_run_id"])
        assert [(ti["rendered_map_index"], ti["state"]) for ti in tis] == [(FAILING_KEY, "success")]

        page.locator("#apply").click()
        expect(_cell(page, FAILING_KEY)).to_have_attribute("data-state", "committed")
        assert set(_states(page).values()) == {"committed"}
    finally:
        page.context.close()


def test_each_committed_key_gets_a_downstream_run_with_that_partition_key(
    stack: UsersStack, first_backfill: dict[str, Any]
) -> None:
    """Native partitions: city_demand_report is scheduled on the announced keys, no polling."""
    expected = {f"{city}|{day}" for city in CITIES for day in (DAY1, DAY2, DAY3)} - {FAILING_KEY}
    deadline = time.monotonic() + RUN_TIMEOUT
    keys: set[str] = set()
    while time.monotonic() < deadline:
        runs = _runs(stack, REPORT_DAG)
        keys = {run["partition_key"] for run in runs}
        if expected <= keys:
            break
        time.sleep(2)
    assert expected <= keys, f"report runs by partition_key: {sorted(keys)}"
    events = stack.api("GET", "/assets/events", params={"source_dag_id": BACKFILL_DAG, "limit": 100})
    announced = [event["partition_key"] for event in events["asset_events"]]
    assert expected <= set(announced)


def test_a_reversed_range_is_refused_with_its_message_and_no_run_is_created(
    stack: UsersStack, first_backfill: dict[str, Any], browser: Any
) -> None:
    from playwright.sync_api import expect

    runs_before = _runs(stack, BACKFILL_DAG)
    page = _browser_as(browser, stack, "admin")
    try:
        _open_grid(page, stack)
        page.locator("#date-from").fill(DAY3)
        page.locator("#date-to").fill(DAY1)
        with page.expect_response(lambda r: r.url.endswith(f"/pipelines/{PIPELINE}/backfill")) as answer:
            page.get_by_role("button", name="Backfill missing").click()
        assert answer.value.status == 422
        problems = page.get_by_test_id("backfill-problems")
        expect(problems).to_contain_text("Refused, nothing was started")
        expect(problems).to_contain_text(f"start_date {DAY3} is after end_date {DAY1}; swap them")
    finally:
        page.context.close()
    assert _runs(stack, BACKFILL_DAG) == runs_before


def test_a_viewer_sees_the_grid_but_cannot_backfill(
    stack: UsersStack, first_backfill: dict[str, Any], browser: Any
) -> None:
    from playwright.sync_api import expect

    runs_before = _runs(stack, BACKFILL_DAG)
    page = _browser_as(browser, stack, "viewer")
    try:
        _open_grid(page, stack)
        for name in ("Backfill missing", "Backfill failed", "Backfill all"):
            expect(page.get_by_role("button", name=name)).to_be_disabled()
    finally:
        page.context.close()
    token = stack.login("viewer")
    response = httpx.post(
        f"{stack.base_url}/training-guard/api/pipelines/{PIPELINE}/backfill",
        json={"start_date": DAY1, "end_date": DAY1, "city": ["rome"], "reprocess": "missing"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=120,
    )
    assert response.status_code == 403, response.text
    assert f"you may not trigger DAG '{BACKFILL_DAG}'" in response.json()["detail"]
    assert _runs(stack, BACKFILL_DAG) == runs_before


def test_a_user_who_may_not_read_the_dag_sees_none_of_its_partitions(
    stack: UsersStack, first_backfill: dict[str, Any], browser: Any
) -> None:
    from playwright.sync_api import expect

    headers = {"Authorization": f"Bearer {stack.login('outsider')}"}
    api = f"{stack.base_url}/training-guard/api"
    assert httpx.get(f"{api}/pipelines", headers=headers, timeout=120).json()["pipelines"] == []
    grid = httpx.get(f"{api}/pipelines/{PIPELINE}/grid", headers=headers, timeout=120)
    assert grid.status_code == 403 and "states" not in grid.text
    cell = httpx.get(
        f"{api}/pipelines/{PIPELINE}/cell",
        params={"partition_key": FAILING_KEY},
        headers=headers,
        timeout=120,
    )
    assert cell.status_code == 403 and FAILING_KEY not in cell.text
    assert httpx.get(f"{api}/pipelines", timeout=120).status_code == 401  # not logged in at all

    page = _browser_as(browser, stack, "outsider")
    try:
        page.goto(f"{stack.base_url}/training-guard/coverage?pipeline={PIPELINE}")
        expect(page.locator("#fatal")).to_contain_text("No pipeline you may read")
        expect(page.locator("#grid td")).to_have_count(0)
    finally:
        page.context.close()
