"""The pre-flight checklist model: concurrency, bounded time, all failures reported at once."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest

from airflow_training_guard.exceptions import GuardConfigError
from airflow_training_guard.policies.gpus import GpuRequest, NodeShape
from airflow_training_guard.policies.hub_repos import (
    HubRepoNotFoundError,
    HubUnreachableError,
    RepoSpec,
    ResolvedRepo,
    closest_names,
    format_suggestions,
    validate_repo_id,
)
from airflow_training_guard.preflight.checklist import Check, CheckResult, run_checks
from airflow_training_guard.preflight.checks import (
    cost_check,
    exists_check,
    gpu_fit_check,
    hub_repo_check,
    model_fit_check,
    timeout_check,
    writable_check,
)
from airflow_training_guard.preflight.estimates import estimate_memory, gpu_memory_gib

SHA = "f" * 40


class FakeHub:
    def __init__(
        self, errors: dict[str, Exception] | None = None, parameters: int | None = 7_000_000_000
    ) -> None:
        self.errors = errors or {}
        self.parameters = parameters

    def resolve(self, spec: RepoSpec) -> ResolvedRepo:
        if spec.repo_id in self.errors:
            raise self.errors[spec.repo_id]
        missing = tuple(f for f in spec.files if f != "config.json")
        return ResolvedRepo(spec=spec, sha=SHA, missing_files=missing, parameters=self.parameters)


def test_checks_run_concurrently() -> None:
    barrier = threading.Barrier(3, timeout=5)

    def waiting() -> CheckResult:
        barrier.wait()
        return CheckResult.ok("x", "met")

    report = run_checks([Check(f"c{i}", waiting) for i in range(3)], total_timeout=10)
    assert report.passed


def test_total_time_is_bounded() -> None:
    start = time.monotonic()
    report = run_checks(
        [
            Check("slow", lambda: (time.sleep(3), CheckResult.ok("slow", ""))[1]),
            Check("fast", lambda: CheckResult.ok("fast", "ok")),
        ],
        total_timeout=0.5,
    )
    assert time.monotonic() - start < 2
    assert [r.passed for r in report.results] == [False, True]
    assert "did not finish within the pre-flight time limit of 0.5s" in (report.results[0].problem or "")


def test_exception_in_check_is_a_failure() -> None:
    def boom() -> CheckResult:
        raise RuntimeError("bug")

    report = run_checks([Check("boom", boom)])
    assert "raised RuntimeError: bug" in report.failure_message()


def test_five_problems_reported_at_once(tmp_path) -> None:
    """Problems found one per retry cost hours of GPU queueing each: all must be reported in one failure."""
    blocked = tmp_path / "file"
    blocked.write_text("")
    hub = FakeHub(
        errors={
            "org/typo": HubRepoNotFoundError(
                "dataset 'org/typo' not found; did you mean 'org/type'?", "fix the repo id"
            )
        }
    )
    checks = [
        hub_repo_check(hub, RepoSpec("org/typo", repo_type="dataset")),
        hub_repo_check(hub, RepoSpec("org/model", files=("config.json",))),
        exists_check("connection", "wandb", lambda _: False, fix="create it"),
        timeout_check(expected_runtime=timedelta(hours=2), timeout=timedelta(hours=2)),
        gpu_fit_check(GpuRequest(gpus=16), lambda: [NodeShape("gpu-a", 8, 8)]),
        writable_check(blocked / "sub"),
        cost_check(gpus=8, duration=timedelta(hours=10), price_per_gpu_hour=4.0, limit=100),
    ]
    report = run_checks(checks)
    assert [r.name for r in report.failures] == [
        "dataset org/typo",
        "connection wandb",
        "timeout",
        "gpu fit",
        "checkpoint location",
        "cost",
    ]
    message = report.failure_message()
    assert "6 of 7 checks failed" in message
    assert "did you mean 'org/type'?" in message
    assert "timeout 2h is shorter than expected_runtime 2h + 30% (2h36m)" in message
    assert "estimated cost 320.00 USD is over the limit" in message
    assert report.pins() == {
        "image_digest": None,
        "image": None,
        "datasets": {},
        "models": {"org/model": SHA},
    }


def test_unreachable_hub_is_not_reported_missing() -> None:
    hub = FakeHub(errors={"org/d": HubUnreachableError("the Hub at x was unreachable", "retry later")})
    result = run_checks([hub_repo_check(hub, RepoSpec("org/d", repo_type="dataset"))]).results[0]
    assert "unreachable" in (result.problem or "") and "not found" not in (result.problem or "")


def test_missing_files_fail() -> None:
    result = run_checks(
        [hub_repo_check(FakeHub(), RepoSpec("org/m", files=("config.json", "x.bin")))]
    ).results[0]
    assert not result.passed and "has no file(s) 'x.bin'" in (result.problem or "")


def test_model_fit_from_hub_parameters() -> None:
    ok = model_fit_check(mode="qlora", gpus=1, gpu_memory=24, hub=FakeHub(), model=RepoSpec("org/m"))
    too_big = model_fit_check(mode="mixed", gpus=1, gpu_memory=80, hub=FakeHub(), model=RepoSpec("org/m"))
    report = run_checks([ok, Check("other", too_big.run)])
    assert report.results[0].passed
    assert "7.0B-parameter model in mode 'mixed' needs ~142 GiB" in (report.results[1].problem or "")


def test_memory_estimates() -> None:
    assert estimate_memory(1_000_000_000, "full", gpus=1, gpu_memory=80).needed_gib == pytest.approx(
        1e9 * 16 * 1.2 / 2**30 + 1
    )
    assert estimate_memory(8_000_000_000, "lora", gpus=1, gpu_memory=24).fits
    assert gpu_memory_gib("A100-80GB") == 80
    with pytest.raises(GuardConfigError, match="pass gpu_memory_gib"):
        gpu_memory_gib("mystery")
    with pytest.raises(GuardConfigError, match="training mode 'huge'"):
        estimate_memory(1, "huge", gpus=1, gpu_memory=1)


@pytest.mark.parametrize(
    ("repo_id", "match"),
    [
        ("", "non-empty"),
        ("a/b/c", "exactly one"),
        ("org/na me", "whitespace"),
        ("org/-bad", "not valid"),
        ("org/a--b", "not valid"),
        ("https://huggingface.co/org/x", "URL"),
    ],
)
def test_malformed_repo_ids(repo_id: str, match: str) -> None:
    with pytest.raises(GuardConfigError, match=match):
        validate_repo_id(repo_id, repo_type="dataset")


def test_repo_spec_coerce_and_suggestions() -> None:
    spec = RepoSpec.coerce("org/name@v1", repo_type="model")
    assert (spec.repo_id, spec.revision) == ("org/name", "v1")
    assert closest_names("org/ultrafedback", ["org/ultrafeedback", "org/zzz"]) == ["org/ultrafeedback"]
    assert format_suggestions(["a", "b"]) == "did you mean 'a' or 'b'?"


def test_server_text_quoted_by_a_check_is_redacted_in_the_report() -> None:
    """Regression (issue 14): a check's exception text quoting ``Authorization: Bearer ...`` went into
    the pre-flight report, the task's exception and the log unredacted."""

    def echoing() -> CheckResult:
        raise RuntimeError("HTTP 502 from proxy; request headers: Authorization: Bearer sk9-unknown-token")

    def failing() -> CheckResult:
        return CheckResult.fail("registry", "denied: Bearer sk9-other-token99", "fix it")

    report = run_checks([Check("hub", echoing), Check("registry", failing)])
    message = report.failure_message()
    assert "sk9-unknown-token" not in message and "sk9-other-token99" not in message
    assert "request headers: Authorization: ***" in message
    assert "denied: Bearer ***" in message
