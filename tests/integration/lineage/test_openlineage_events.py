"""OpenLineage events of a real train -> promote run, captured by the client's file transport.

The provider's listener calls the operators' ``get_openlineage_facets_on_*`` methods; these tests
read the events it emitted and check that a lineage backend could follow a production model back to
its data digest, base model commit and program, and forward to the production pointer.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from airflow_training_guard.lineage import FACET_MODEL_ARTIFACT, FACET_PRODUCTION_POINTER, FACET_RUN

pytest.importorskip("airflow.providers.openlineage", reason="needs the [openlineage] extra")

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
sys.path.insert(0, str(REPO / "examples" / "training"))
from sample_data import write_day  # noqa: E402

from tests.integration.lineage.lineage_run import BASE_MODEL, BASE_MODEL_SHA  # noqa: E402

DAG_ID = "tg_lineage_run"


@pytest.fixture(scope="module")
def run(
    tmp_path_factory: pytest.TempPathFactory, airflow_env: dict[str, str], airflow_db: Path
) -> dict[str, Any]:
    from airflow_training_guard.preflight.data import content_digest, open_location

    root = tmp_path_factory.mktemp("lineage")
    data = root / "data"
    write_day(data, "2026-11-01", rows_per_hour=60)
    day_dir = str(data / "date=2026-11-01")
    pin = content_digest(open_location(day_dir)).digest
    events_file = root / "events.ndjson"
    env = {
        **airflow_env,
        "PYTHONPATH": str(REPO),
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(
            {"type": "file", "log_file_path": str(events_file), "append": True}
        ),
        "AIRFLOW__OPENLINEAGE__NAMESPACE": "training-guard-tests",
    }
    registry = f"sqlite:///{root / 'registry.db'}"
    models = root / "models"
    proc = subprocess.run(
        [
            sys.executable,
            str(HERE / "lineage_run.py"),
            DAG_ID,
            str(data),
            day_dir,
            pin,
            str(root / "ckpt"),
            str(models),
            registry,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert events_file.is_file(), f"no OpenLineage events were written\n{proc.stderr[-4000:]}"
    events = [json.loads(line) for line in events_file.read_text().splitlines() if line.strip()]
    return {"events": events, "day_dir": day_dir, "pin": pin, "models": models, "registry": registry}


def _event(run: dict[str, Any], task_id: str, event_type: str) -> dict[str, Any]:
    found = [
        e
        for e in run["events"]
        if e.get("eventType") == event_type and e.get("job", {}).get("name") == f"{DAG_ID}.{task_id}"
    ]
    assert found, (
        f"no {event_type} event of {task_id}: {[(e.get('eventType'), e.get('job', {}).get('name')) for e in run['events']]}"
    )
    return found[-1]


def _by_name(datasets: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(d["namespace"], d["name"]): d for d in datasets}


def test_training_start_reports_the_pinned_data_and_base_model(run: dict[str, Any]) -> None:
    inputs = _by_name(_event(run, "train", "START")["inputs"])
    assert inputs[("file", run["day_dir"])]["facets"]["version"]["datasetVersion"] == run["pin"]
    assert (
        inputs[("https://huggingface.co", BASE_MODEL)]["facets"]["version"]["datasetVersion"]
        == BASE_MODEL_SHA
    )


def test_training_completion_reports_inputs_and_the_model_artifact_with_its_sha256(
    run: dict[str, Any],
) -> None:
    import hashlib

    event = _event(run, "train", "COMPLETE")
    inputs = _by_name(event["inputs"])
    assert inputs[("file", run["day_dir"])]["facets"]["version"]["datasetVersion"] == run["pin"]
    assert (
        inputs[("https://huggingface.co", BASE_MODEL)]["facets"]["version"]["datasetVersion"]
        == BASE_MODEL_SHA
    )
    [model] = event["outputs"]
    assert (model["namespace"], model["name"]) == ("file", str(run["models"]))
    expected = "sha256:" + hashlib.sha256((run["models"] / "model.npy").read_bytes()).hexdigest()
    assert model["facets"]["version"]["datasetVersion"] == expected
    assert model["facets"][FACET_MODEL_ARTIFACT]["details"]["files"] == {"model.npy": expected}
    details = event["run"]["facets"][FACET_RUN]["details"]
    assert details["partition_key"] == "2026-11-01"
    assert details["metrics"]["accuracy"] > 0.5
    assert details["python_env"]["python"].startswith("3.")


def test_promotion_reads_the_same_model_artifact_and_writes_the_production_pointer(
    run: dict[str, Any],
) -> None:
    trained = _event(run, "train", "COMPLETE")["outputs"][0]
    event = _event(run, "promote", "COMPLETE")
    [candidate] = event["inputs"]
    assert (candidate["namespace"], candidate["name"]) == (trained["namespace"], trained["name"])
    assert candidate["facets"]["version"] == trained["facets"]["version"]
    [pointer] = event["outputs"]
    assert pointer["name"] == "click-model"
    assert pointer["namespace"] == run["registry"]
    assert pointer["facets"]["version"]["datasetVersion"] == "1"
    assert pointer["facets"][FACET_PRODUCTION_POINTER]["details"]["artifact_uri"] == str(run["models"])
