"""Data without a commit SHA is pinned by content at pre-flight and re-verified before training."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from airflow.sdk.exceptions import AirflowFailException

from airflow_training_guard.operators.common import verify_content_pins
from airflow_training_guard.preflight.checklist import run_checks
from airflow_training_guard.preflight.checks import data_check
from airflow_training_guard.preflight.data import (
    DataPinError,
    content_digest,
    is_content_digest,
    open_location,
    verify_content_digest,
)


def write_day(root: Path, hours: int = 3) -> Path:
    day = root / "date=2026-11-20"
    for hour in range(hours):
        folder = day / f"hour={hour:02d}"
        folder.mkdir(parents=True)
        (folder / "part-0.csv").write_text(f"x,y\n{hour},1\n")
        (folder / "_SUCCESS").write_text("")
    return day


def test_digest_is_sha256_over_path_size_and_content_of_every_file(tmp_path: Path) -> None:
    day = write_day(tmp_path, hours=2)
    expected_lines = ""
    for relative in ("hour=00/_SUCCESS", "hour=00/part-0.csv", "hour=01/_SUCCESS", "hour=01/part-0.csv"):
        data = (day / relative).read_bytes()
        expected_lines += f"{hashlib.sha256(data).hexdigest()} {len(data)} {relative}\n"
    digest = content_digest(day)
    assert digest.digest == "sha256:" + hashlib.sha256(expected_lines.encode()).hexdigest()
    assert (digest.files, digest.size) == (4, 16)
    assert is_content_digest(digest.digest)
    assert digest.describe() == f"4 files, 16 bytes -> {digest.digest}"


def test_same_bytes_at_another_location_give_the_same_digest(tmp_path: Path) -> None:
    first = write_day(tmp_path / "a")
    second = write_day(tmp_path / "b")
    assert content_digest(first).digest == content_digest(second).digest


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda day: (day / "hour=01" / "part-0.csv").write_text("x,y\n1,0\n"), id="edited"),
        pytest.param(lambda day: (day / "hour=01" / "part-0.csv").unlink(), id="removed"),
        pytest.param(lambda day: (day / "hour=01" / "part-1.csv").write_text("late"), id="added"),
        pytest.param(
            lambda day: (day / "hour=01" / "part-0.csv").rename(day / "hour=02" / "part-9.csv"), id="moved"
        ),
    ],
)
def test_any_edit_addition_removal_or_move_changes_the_digest(tmp_path: Path, change: object) -> None:
    day = write_day(tmp_path)
    before = content_digest(day).digest
    change(day)  # type: ignore[operator]
    assert content_digest(day).digest != before


def test_hidden_files_such_as_in_progress_writes_do_not_change_the_digest(tmp_path: Path) -> None:
    day = write_day(tmp_path)
    before = content_digest(day).digest
    (day / "hour=00" / ".part-1.csv.tmp").write_text("half written")
    (day / ".cache").mkdir()
    (day / ".cache" / "x").write_text("y")
    assert content_digest(day).digest == before


def test_missing_or_empty_location_is_an_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(DataPinError, match=r"data location '.*nowhere' does not exist; check the path"):
        content_digest(tmp_path / "nowhere")
    (tmp_path / "empty" / "hour=00").mkdir(parents=True)
    with pytest.raises(DataPinError, match=r"data location '.*empty' holds no files"):
        content_digest(tmp_path / "empty")


def test_a_single_file_can_be_pinned(tmp_path: Path) -> None:
    path = tmp_path / "labels.parquet"
    path.write_bytes(b"PAR1")
    assert content_digest(path).files == 1


def test_verify_names_both_digests_and_how_to_repin_when_data_changed(tmp_path: Path) -> None:
    day = write_day(tmp_path)
    pinned = content_digest(day).digest
    assert verify_content_digest(day, pinned).digest == pinned
    (day / "hour=02" / "part-0.csv").write_text("rewritten\n")
    with pytest.raises(DataPinError) as err:
        verify_content_digest(day, pinned)
    message = str(err.value)
    assert f"changed since pre-flight pinned it: pinned {pinned}, now sha256:" in message
    assert "clear the run from its pre-flight task" in message


def test_file_urls_and_plain_paths_open_as_local_paths(tmp_path: Path) -> None:
    assert open_location(f"file://{tmp_path}") == tmp_path
    assert open_location(str(tmp_path)) == tmp_path


def test_data_check_pins_the_location_as_a_dataset(tmp_path: Path) -> None:
    day = write_day(tmp_path)
    report = run_checks([data_check(str(day)), data_check(str(tmp_path / "date=2026-11-21"))])
    passed, failed = report.results
    assert passed.passed and passed.pin == ("datasets", str(day), content_digest(day).digest)
    assert passed.evidence.startswith("6 files, ")
    assert not failed.passed and "does not exist" in (failed.problem or "")
    assert report.pins()["datasets"] == {str(day): content_digest(day).digest}


def test_training_refuses_data_that_changed_since_preflight_and_ignores_commit_shas(tmp_path: Path) -> None:
    day = write_day(tmp_path)
    pins = {"datasets": {str(day): content_digest(day).digest, "org/hub-data": "0" * 40}}
    lines = verify_content_pins(pins, task_id="train")
    assert lines == [f"{day}: {content_digest(day).describe()} (matches the pre-flight pin)"]
    (day / "hour=00" / "part-0.csv").write_text("x,y\n9,9\n")
    with pytest.raises(AirflowFailException, match=r"task 'train' will not train: data '.*' changed since"):
        verify_content_pins(pins, task_id="train")


def test_a_url_scheme_no_provider_handles_is_an_error_naming_the_provider_to_install() -> None:
    with pytest.raises(
        DataPinError, match=r"cannot open data location 'nosuch://bucket/day'.*install the Airflow provider"
    ):
        open_location("nosuch://bucket/day")
    report = run_checks([data_check("nosuch://bucket/day")])
    assert not report.passed and "install the Airflow provider" in report.failure_message()
