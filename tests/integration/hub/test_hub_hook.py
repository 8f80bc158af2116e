"""HubHook against a local Hub server, through the real ``huggingface_hub`` client."""

from __future__ import annotations

import re

import pytest

from airflow_training_guard.hooks.hub import HubHook
from airflow_training_guard.policies.hub_repos import (
    HubAccessError,
    HubRepoNotFoundError,
    HubRevisionNotFoundError,
    HubUnreachableError,
    RepoSpec,
)
from tests.integration.hub.hub_server import LocalHub


def make_hook(hub: LocalHub, *, token: str | None = None, retries: int = 2) -> HubHook:
    return HubHook(hub_conn_id=None, endpoint=hub.url, token=token, timeout=2, retries=retries, backoff=0.01)


def test_resolves_branch_to_sha_and_reads_parameters(hub: LocalHub) -> None:
    resolved = make_hook(hub).resolve(RepoSpec("Qwen/Qwen2-0.5B", files=("config.json",)))
    assert resolved.sha == hub.repos[("model", "Qwen/Qwen2-0.5B")].branches["main"]
    assert re.fullmatch(r"[0-9a-f]{40}", resolved.sha)
    assert resolved.parameters == 494_032_768
    assert resolved.missing_files == ()


def test_dataset_missing_files(hub: LocalHub) -> None:
    spec = RepoSpec("trl-lib/tldr", repo_type="dataset", files=("data/train.parquet", "data/test.parquet"))
    assert make_hook(hub).resolve(spec).missing_files == ("data/test.parquet",)


def test_tag_and_sha_revisions(hub: LocalHub) -> None:
    hook = make_hook(hub)
    sha = hook.resolve_revision("Qwen/Qwen2-0.5B", "v1.0")
    assert hook.resolve_revision("Qwen/Qwen2-0.5B", sha) == sha


def test_typo_suggests_closest_name(hub: LocalHub) -> None:
    """A typo in a dataset name must fail at pre-flight with the name that was meant."""
    spec = RepoSpec("trl-lib/argilla-dpo-mix-7k", repo_type="dataset")
    with pytest.raises(
        HubRepoNotFoundError,
        match=r"dataset 'trl-lib/argilla-dpo-mix-7k' not found; did you mean 'trl-lib/argilla-dpo-mix-7k-v2'",
    ):
        make_hook(hub).resolve(spec)
    assert any(path.startswith("/api/datasets?") and "author=trl-lib" in path for path in hub.requests)


def test_unknown_revision_lists_refs(hub: LocalHub) -> None:
    with pytest.raises(
        HubRevisionNotFoundError, match=r"revision 'mian' not found; did you mean 'main'\?.*v1\.0"
    ):
        make_hook(hub).resolve(RepoSpec("Qwen/Qwen2-0.5B", revision="mian"))


def test_gated_without_token_has_its_own_message(hub: LocalHub) -> None:
    with pytest.raises(HubAccessError, match="is gated and no token is configured"):
        make_hook(hub).resolve(RepoSpec("meta-llama/Llama-3.1-8B"))
    assert (
        make_hook(hub, token=hub.token).resolve(RepoSpec("meta-llama/Llama-3.1-8B")).parameters
        == 8_030_261_248
    )


def test_private_without_token_says_so(hub: LocalHub) -> None:
    with pytest.raises(
        HubRepoNotFoundError, match="no token is configured, so a private repository also looks missing"
    ):
        make_hook(hub).resolve(RepoSpec("acme/private-model"))
    assert make_hook(hub, token=hub.token).resolve(RepoSpec("acme/private-model")).sha


def test_5xx_is_retried_then_succeeds(hub: LocalHub) -> None:
    hub.fail_next(2, 503)
    assert make_hook(hub, retries=2).resolve(RepoSpec("trl-lib/tldr", repo_type="dataset")).sha


def test_hub_down_is_unreachable_not_missing(hub: LocalHub) -> None:
    """A Hub outage must never read as 'dataset not found'."""
    hub.fail_next(10, 502)
    with pytest.raises(
        HubUnreachableError, match=r"was unreachable .*HTTP 502 after 3 attempts.*not a naming problem"
    ):
        make_hook(hub).resolve(RepoSpec("trl-lib/tldr", repo_type="dataset"))


def test_timeout_is_unreachable(hub: LocalHub) -> None:
    hub.delay = 1.0
    hook = HubHook(hub_conn_id=None, endpoint=hub.url, timeout=0.2, retries=1, backoff=0.01)
    with pytest.raises(HubUnreachableError, match="Timeout"):
        hook.resolve(RepoSpec("trl-lib/tldr", repo_type="dataset"))


def test_token_from_connection_is_masked(hub: LocalHub, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    monkeypatch.setenv(
        "AIRFLOW_CONN_HUB_TEST",
        json.dumps(
            {"conn_type": "huggingface_hub", "host": hub.url, "password": hub.token, "extra": {"retries": 0}}
        ),
    )
    masked: list[str] = []
    monkeypatch.setattr("airflow.sdk.log.mask_secret", lambda secret, name=None: masked.append(secret))
    hook = HubHook("hub_test")
    assert hook.resolve(RepoSpec("acme/private-model")).sha
    assert hub.token in masked
    assert hook.settings["retries"] == 0


def test_hub_error_echoing_the_authorization_header_is_redacted(hub: LocalHub) -> None:
    """Regression (issue 14): a Hub error page quoting ``Authorization: Bearer hf_...`` put the token
    into pre-flight's exception text and report."""
    import traceback

    from airflow_training_guard.preflight.checklist import run_checks
    from airflow_training_guard.preflight.checks import hub_repo_check

    hub.token = "hf_preflight" + "Xy9" * 10
    hub.echo_authorization = True
    hub.fail_next(10, 400, path_contains="/api/")
    hook = make_hook(hub, token=hub.token, retries=0)
    with pytest.raises(
        HubRepoNotFoundError, match=r"(?s)the Hub answered HTTP 400: .*Authorization: \*\*\*"
    ) as caught:
        hook.resolve(RepoSpec("acme/private-model"))
    assert hub.token not in "".join(traceback.format_exception(caught.value))
    hub.fail_next(10, 400, path_contains="/api/")
    report = run_checks([hub_repo_check(hook, RepoSpec("acme/private-model"))])
    assert "Authorization: ***" in report.failure_message()
    assert hub.token not in report.failure_message()
