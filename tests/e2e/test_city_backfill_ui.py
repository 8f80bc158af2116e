"""A person backfills 3 cities x 3 days of ``city_pricing_backfill`` from the UI: each key commits once.

Against the session stack (``airflow_stack``: real api-server, scheduler, dag-processor, triggerer,
with the pools of ``deploy/pools.json``) and Debian's Chromium driven by Playwright:

1. The ``form_backfill`` fixture opens the DAG page, clicks Trigger and fills the form like a
   person: unpauses the DAG with the header's switch, then First date / Last date (4 and 2 days
   before today UTC), clears the City values multi-select (default: all 30) and picks 3 cities by
   typing and clicking them, leaves Reprocess at "Missing only" and submits. The run id comes from the
   UI's own ``POST /api/v2/dags/city_pricing_backfill/dagRuns``; the fixture waits for the run through
   the REST API.
2. The REST API must show one manual run (triggered by the UI) that succeeded with exactly the
   form's dates and cities in its conf, and 9 mapped ``train_partition`` instances (3 cities x 3
   days), all successful, named ``city|YYYY-MM-DD`` and returning ``committed`` with 24 rows. The
   ledger the DAG used (``<AIRFLOW_HOME>/training-guard/ledger.db``, namespace ``city_pricing``, opened
   read-only) must hold exactly those 9 keys, each committed once with its 24 rows.
3. The same backfill is triggered a second time, through the REST API (the form was covered by the
   first run), in mode ``missing``. ``validate_request`` plans against the ledger and drops the
   committed keys *before* mapping, so the run succeeds with nothing mapped (``train_partition`` is
   skipped as a whole, no mapped instance runs) and the ledger rows are unchanged: commits stays 1,
   the fencing tokens do not move (no key was even claimed).
4. A request with the dates reversed (REST API) fails in ``validate_request`` with a message naming
   both dates, and no ``train_partition`` instance runs.
5. Screenshots: ``test-artifacts/city_pricing_backfill-trigger-form.png`` (the filled form),
   ``city_pricing_backfill-run-graph.png`` and ``city_pricing_backfill-mapped-instances.png`` (the
   finished run).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from airflow_training_guard.partitions.ledger import PartitionLedger
from tests.e2e.airflow_stack import AirflowStack
from tests.e2e.conftest import ARTIFACTS

DAG_ID = "city_pricing_backfill"
LEDGER_NAMESPACE = "city_pricing"  # the pipeline's name (dags/city_pricing_backfill.py)
VALIDATE_TASK = "validate_request"
MAPPED_TASK = "train_partition"
# Picked in this order in the multi-select; not the first three of the list, so a form that kept
# its default selection (or the head of it) cannot pass.
CITIES = ("rome", "berlin", "oslo")
ROWS_PER_KEY = 24  # one feature row per hour of the key's day
DAG_PARSED_TIMEOUT = 60  # seconds
RUN_TIMEOUT = 120  # seconds; a run of 9 keys takes about 15-20 s on 2 cores (pool of 2 slots)
UI_TIMEOUT_MS = 30_000


# --- REST API helpers -----------------------------------------------------------------------------


def _run_path(run_id: str) -> str:
    return f"/dags/{DAG_ID}/dagRuns/{urllib.parse.quote(run_id, safe='')}"


def _task_instances(stack: AirflowStack, run_id: str, task_id: str) -> list[dict[str, Any]]:
    body = stack.api("GET", f"{_run_path(run_id)}/taskInstances", params={"task_id": task_id, "limit": 100})
    return sorted(body["task_instances"], key=lambda ti: int(ti["map_index"]))


def _return_value(stack: AirflowStack, run_id: str, task_id: str, map_index: int) -> Any:
    entry = stack.api(
        "GET",
        f"{_run_path(run_id)}/taskInstances/{task_id}/xcomEntries/return_value",
        params={"map_index": map_index, "deserialize": "true"},
    )
    return entry["value"]


def _wait_finished(stack: AirflowStack, run_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + RUN_TIMEOUT
    while True:
        run: dict[str, Any] = stack.api("GET", _run_path(run_id))
        if run["state"] in {"success", "failed"}:
            return run
        if time.monotonic() > deadline:
            states = [
                (ti["task_id"], ti["map_index"], ti["state"])
                for ti in stack.api("GET", f"{_run_path(run_id)}/taskInstances")["task_instances"]
            ]
            raise AssertionError(f"run {run_id} still {run['state']} after {RUN_TIMEOUT}s; tasks: {states}")
        time.sleep(1)


def _trigger_by_api(stack: AirflowStack, conf: dict[str, Any]) -> str:
    run = stack.api("POST", f"/dags/{DAG_ID}/dagRuns", json={"logical_date": None, "conf": conf})
    return str(run["dag_run_id"])


# --- fixtures -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FormBackfill:
    """The run the trigger form created, what was typed into the form, and the runs when it ended."""

    run_id: str
    first: dt.date
    last: dt.date
    cities: tuple[str, ...]
    run: dict[str, Any]
    runs_when_finished: list[dict[str, Any]] = field(repr=False)
    seconds_to_finish: float

    @property
    def days(self) -> list[str]:
        count = (self.last - self.first).days + 1
        return [(self.first + dt.timedelta(days=offset)).isoformat() for offset in range(count)]

    @property
    def expected_keys(self) -> set[str]:
        """``city|YYYY-MM-DD`` for every chosen city and day (built here, not by the package)."""
        return {f"{city}|{day}" for city in self.cities for day in self.days}


@pytest.fixture(scope="module")
def city_stack(airflow_stack: AirflowStack) -> AirflowStack:
    """The session stack, once the dag-processor has parsed ``city_pricing_backfill``."""
    airflow_stack.wait_for_dag(DAG_ID, time.monotonic() + DAG_PARSED_TIMEOUT)
    return airflow_stack


@pytest.fixture(scope="module")
def ledger(city_stack: AirflowStack) -> Iterator[PartitionLedger]:
    """The ledger the DAG's workers used, opened read-only (SQLite ``mode=ro``: a write would fail)."""
    path = city_stack.guard_root / "ledger.db"
    ledger = PartitionLedger(
        f"sqlite:///file:{path}?mode=ro&uri=true", namespace=LEDGER_NAMESPACE, create_tables=False
    )
    try:
        yield ledger
    finally:
        ledger.engine.dispose()


def _fill_and_submit_trigger_form(
    page: Any, base_url: str, first: dt.date, last: dt.date, cities: tuple[str, ...]
) -> str:
    """Trigger ``city_pricing_backfill`` from its DAG page; return the id of the run the UI created."""
    from playwright.sync_api import expect

    page.goto(f"{base_url}/dags/{DAG_ID}")
    # The DAG starts paused: unpause it with the header's switch first. (The Trigger dialog's
    # "Unpause ... on trigger" box sends its PATCH concurrently with the POST of the run; on SQLite
    # the two transactions can deadlock until one fails with "database is locked" after 5 s, and
    # when the PATCH loses, the run stays queued on a paused DAG.)
    pause_switch = page.get_by_test_id("toggle-pause")
    expect(pause_switch.get_by_role("checkbox")).not_to_be_checked()
    with page.expect_response(
        lambda response: (
            response.request.method == "PATCH" and response.url.endswith(f"/api/v2/dags/{DAG_ID}")
        )
    ) as unpaused:
        pause_switch.click()
    assert unpaused.value.ok, f"unpausing failed: {unpaused.value.status} {unpaused.value.text()}"
    expect(pause_switch.get_by_role("checkbox")).to_be_checked()

    page.get_by_test_id("trigger-dag-button").click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_role("heading")).to_contain_text(DAG_ID)

    def form_field(label: str) -> Any:
        # Each form row is a role=group with its <label>; the date inputs are not tied to it by
        # for/id (their id is element_<param>), so the row, not get_by_label, finds them.
        return dialog.get_by_role("group").filter(has=page.locator("label").filter(has_text=label))

    first_input = form_field("First date").locator('input[type="date"]')
    last_input = form_field("Last date").locator('input[type="date"]')
    first_input.fill(first.isoformat())
    last_input.fill(last.isoformat())
    expect(first_input).to_have_value(first.isoformat())
    expect(last_input).to_have_value(last.isoformat())

    city = form_field("City values")
    chips = city.get_by_label(re.compile(r"^Remove "))  # one "Remove <city>" control per selected city
    expect(chips.first).to_be_visible()  # the default selection: every city
    city.get_by_label("Clear selected options").click()
    expect(chips).to_have_count(0)
    search = city.get_by_role("combobox")
    for name in cities:
        search.fill(name)
        page.get_by_role("option", name=name, exact=True).click()
    for name in cities:
        expect(city.get_by_label(f"Remove {name}", exact=True)).to_be_visible()
    expect(chips).to_have_count(len(cities))

    expect(form_field("Reprocess")).to_contain_text("Missing only")  # left at its default

    page.screenshot(path=str(ARTIFACTS / f"{DAG_ID}-trigger-form.png"), full_page=True)
    with page.expect_response(
        lambda response: (
            response.request.method == "POST" and response.url.endswith(f"/api/v2/dags/{DAG_ID}/dagRuns")
        )
    ) as created:
        dialog.get_by_test_id("trigger-dag-submit").click()
    response = created.value
    assert response.ok, f"the UI's trigger request failed: {response.status} {response.text()}"
    run_id = str(response.json()["dag_run_id"])
    # The UI then shows the new run's page.
    page.wait_for_url(lambda url: urllib.parse.unquote(url).endswith(f"/runs/{run_id}"))
    return run_id


@pytest.fixture(scope="module")
def form_backfill(city_stack: AirflowStack, browser: Any) -> FormBackfill:
    """Trigger the backfill through the form in Chromium and wait until the run has finished."""
    today = dt.datetime.now(dt.UTC).date()
    first, last = today - dt.timedelta(days=4), today - dt.timedelta(days=2)
    ARTIFACTS.mkdir(exist_ok=True)
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(UI_TIMEOUT_MS)
    try:
        run_id = _fill_and_submit_trigger_form(page, city_stack.base_url, first, last, CITIES)
    except BaseException:
        page.screenshot(path=str(ARTIFACTS / f"{DAG_ID}-trigger-form-failure.png"), full_page=True)
        raise
    finally:
        context.close()
    started = time.monotonic()
    run = _wait_finished(city_stack, run_id)
    elapsed = time.monotonic() - started
    runs = city_stack.api("GET", f"/dags/{DAG_ID}/dagRuns", params={"limit": 100})["dag_runs"]
    print(f"\n{DAG_ID} run {run_id} from the form ended {run['state']} in {elapsed:.0f}s")
    return FormBackfill(run_id, first, last, CITIES, run, runs, elapsed)


# --- tests ----------------------------------------------------------------------------------------


def test_form_creates_one_manual_run_carrying_exactly_the_chosen_dates_and_cities(
    form_backfill: FormBackfill,
) -> None:
    manual = [run for run in form_backfill.runs_when_finished if run["run_type"] == "manual"]
    assert [run["dag_run_id"] for run in manual] == [form_backfill.run_id], form_backfill.runs_when_finished
    run = form_backfill.run
    assert run["state"] == "success", run
    assert run["triggered_by"] == "ui", run
    conf = run["conf"]
    assert sorted(conf) == ["city", "end_date", "reprocess", "start_date"], conf
    assert conf["start_date"] == form_backfill.first.isoformat(), conf
    assert conf["end_date"] == form_backfill.last.isoformat(), conf
    assert len(conf["city"]) == len(form_backfill.cities), conf
    assert sorted(conf["city"]) == sorted(form_backfill.cities), conf
    assert conf["reprocess"] == "missing", conf


def test_every_city_day_key_is_one_successful_mapped_instance_that_committed_24_rows(
    city_stack: AirflowStack, form_backfill: FormBackfill
) -> None:
    run_id = form_backfill.run_id
    tis = _task_instances(city_stack, run_id, MAPPED_TASK)
    expected = form_backfill.expected_keys
    assert len(expected) == 9
    assert len(tis) == len(expected), [(ti["map_index"], ti["rendered_map_index"]) for ti in tis]
    listed = city_stack.api("GET", f"{_run_path(run_id)}/taskInstances/{MAPPED_TASK}/listMapped")
    assert listed["total_entries"] == len(expected), listed
    assert sorted(ti["map_index"] for ti in tis) == list(range(len(expected)))
    assert [ti["state"] for ti in tis] == ["success"] * len(expected), [
        (ti["rendered_map_index"], ti["state"]) for ti in tis
    ]
    assert {ti["rendered_map_index"] for ti in tis} == expected
    assert {ti["pool"] for ti in tis} == {"training_backfill"}

    for ti in tis:
        value = _return_value(city_stack, run_id, MAPPED_TASK, ti["map_index"])
        assert value["partition_key"] == ti["rendered_map_index"], value
        assert value["status"] == "committed", value
        assert value["row_count"] == ROWS_PER_KEY, value


def test_ledger_holds_each_chosen_key_committed_exactly_once_with_its_24_rows(
    ledger: PartitionLedger, form_backfill: FormBackfill
) -> None:
    entries = ledger.entries()
    assert {entry.partition_key for entry in entries} == form_backfill.expected_keys
    assert len(entries) == len(form_backfill.expected_keys)
    for entry in entries:
        assert (entry.state, entry.commits, entry.row_count) == ("committed", 1, ROWS_PER_KEY), entry
        city, day = entry.partition_key.split("|")
        rows = ledger.read_rows(entry.partition_key)
        assert [(row["city"], row["date"]) for row in rows] == [(city, day)] * ROWS_PER_KEY
        assert [row["hour"] for row in rows] == list(range(ROWS_PER_KEY))


def test_same_backfill_again_in_missing_mode_maps_nothing_and_commits_nothing(
    city_stack: AirflowStack, ledger: PartitionLedger, form_backfill: FormBackfill
) -> None:
    """Second trigger through the REST API, with the conf the form produced and reprocess "missing".

    The package drops committed keys in ``validate_request`` (its ledger plan), before mapping: so
    this run has no mapped ``train_partition`` instance at all (the task is skipped as a whole), rather
    than 9 instances returning "skipped" (that path only serves a key committed between plan and claim).
    """
    before = ledger.entries()
    assert {entry.partition_key for entry in before} == form_backfill.expected_keys
    conf = {**form_backfill.run["conf"], "reprocess": "missing"}

    run_id = _trigger_by_api(city_stack, conf)
    run = _wait_finished(city_stack, run_id)

    assert run["state"] == "success", run
    [validate] = _task_instances(city_stack, run_id, VALIDATE_TASK)
    assert validate["state"] == "success", validate
    assert _return_value(city_stack, run_id, VALIDATE_TASK, -1) == []
    tis = _task_instances(city_stack, run_id, MAPPED_TASK)
    assert [(ti["map_index"], ti["state"]) for ti in tis] == [(-1, "skipped")], tis
    after = ledger.entries()
    # Not even claimed: same fencing tokens, same commit times, one commit per key.
    assert after == before
    assert [entry.commits for entry in after] == [1] * len(form_backfill.expected_keys)


def test_reversed_date_range_fails_in_validate_request_and_trains_no_partition(
    city_stack: AirflowStack, ledger: PartitionLedger, form_backfill: FormBackfill
) -> None:
    first, last = form_backfill.first.isoformat(), form_backfill.last.isoformat()
    keys_before = [entry.partition_key for entry in ledger.entries()]
    conf = {**form_backfill.run["conf"], "start_date": last, "end_date": first}

    run_id = _trigger_by_api(city_stack, conf)
    run = _wait_finished(city_stack, run_id)

    assert run["state"] == "failed", run
    [validate] = _task_instances(city_stack, run_id, VALIDATE_TASK)
    assert validate["state"] == "failed", validate
    log = city_stack.api(
        "GET", f"{_run_path(run_id)}/taskInstances/{VALIDATE_TASK}/logs/{validate['try_number']}"
    )
    assert f"start_date {last} is after end_date {first}" in json.dumps(log), log
    tis = _task_instances(city_stack, run_id, MAPPED_TASK)
    assert [(ti["map_index"], ti["state"], ti["try_number"]) for ti in tis] == [(-1, "upstream_failed", 0)]
    assert [entry.partition_key for entry in ledger.entries()] == keys_before


def test_run_graph_shows_the_mapped_task_with_one_successful_instance_per_key(
    city_stack: AirflowStack, form_backfill: FormBackfill, page: Any, artifacts_dir: Path
) -> None:
    from playwright.sync_api import expect

    page.set_default_timeout(UI_TIMEOUT_MS)
    page.goto(f"{city_stack.base_url}/dags/{DAG_ID}/runs/{form_backfill.run_id}")
    page.get_by_role("button", name="Show Graph").first.click()

    header = page.get_by_test_id("header-card").first
    expect(header).to_contain_text(form_backfill.run_id)
    expect(header).to_contain_text("Success")
    expect(header).to_contain_text("Manual")
    node = page.get_by_test_id(f"rf__node-{MAPPED_TASK}")
    expect(node).to_contain_text(f"{MAPPED_TASK} [{len(form_backfill.expected_keys)}]")
    expect(node.get_by_test_id("state-badge")).to_contain_text("success")
    expect(page.get_by_test_id(f"rf__edge-{VALIDATE_TASK}-{MAPPED_TASK}")).to_have_count(1)
    page.screenshot(path=str(artifacts_dir / f"{DAG_ID}-run-graph.png"), full_page=True)

    # The mapped instances are listed by their keys (the map index template).
    node.click()
    page.wait_for_url(f"**/tasks/{MAPPED_TASK}/mapped*")
    for key in sorted(form_backfill.expected_keys):
        expect(page.get_by_role("link", name=key, exact=True)).to_be_visible()
    page.screenshot(path=str(artifacts_dir / f"{DAG_ID}-mapped-instances.png"), full_page=True)
