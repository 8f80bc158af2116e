"""The Airflow UI, in a real headless Chromium, shows ``daily_retraining``, its tasks and its run.

The browser talks to the same real stack the scheduler test uses; all-admins mode skips the login.
The screenshot of the run's graph is saved to ``test-artifacts/`` (git-ignored) for CI to keep.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.e2e.airflow_stack import AirflowStack
from tests.e2e.conftest import DAILY_DAG_ID, ScheduledRun

TASK_IDS = ("wait_for_partitions", "preflight", "train", "evaluate", "promote")
UI_TIMEOUT_MS = 30_000


def test_dag_page_shows_the_schedule_and_the_tasks_in_the_grid(
    airflow_stack: AirflowStack, daily_retraining_run: ScheduledRun, page: Any, artifacts_dir: Path
) -> None:
    from playwright.sync_api import expect

    page.set_default_timeout(UI_TIMEOUT_MS)
    page.goto(f"{airflow_stack.base_url}/dags/{DAILY_DAG_ID}")

    expect(page.get_by_test_id("header-card").first).to_contain_text(DAILY_DAG_ID)
    expect(page.get_by_text("0 2 * * *").first).to_be_visible()
    for task_id in TASK_IDS:
        # The grid's task column links every task of the DAG.
        expect(page.get_by_role("link", name=task_id, exact=True)).to_be_visible()
    page.screenshot(path=str(artifacts_dir / "daily_retraining-dag-grid.png"), full_page=True)


def test_run_page_shows_the_scheduled_run_succeeded_in_the_graph(
    airflow_stack: AirflowStack, daily_retraining_run: ScheduledRun, page: Any, artifacts_dir: Path
) -> None:
    from playwright.sync_api import expect

    page.set_default_timeout(UI_TIMEOUT_MS)
    page.goto(f"{airflow_stack.base_url}/dags/{DAILY_DAG_ID}")
    # Reach the run the way a person does: from the DAG page's "Latest Run" link.
    page.locator(f'a[href$="/runs/{daily_retraining_run.run_id}"]').first.click()
    page.wait_for_url(f"**/runs/{daily_retraining_run.run_id}*")
    page.get_by_role("button", name="Show Graph").first.click()

    header = page.get_by_test_id("header-card").first
    expect(header).to_contain_text(daily_retraining_run.run_id)
    expect(header).to_contain_text("Success")
    expect(header).to_contain_text("Scheduled")
    for task_id in TASK_IDS:
        node = page.get_by_test_id(f"rf__node-{task_id}")
        expect(node).to_be_visible()
        expect(node).to_contain_text(task_id)
        expect(node.get_by_test_id("state-badge")).to_contain_text("success")
    expect(page.get_by_test_id("rf__edge-wait_for_partitions-preflight")).to_have_count(1)
    expect(page.get_by_test_id("rf__edge-preflight-train")).to_have_count(1)
    expect(page.get_by_test_id("rf__edge-evaluate-promote")).to_have_count(1)
    page.screenshot(path=str(artifacts_dir / "daily_retraining-run-graph.png"), full_page=True)
