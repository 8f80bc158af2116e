"""The redaction helper: what it removes, what it keeps, with and without Airflow importable."""

from __future__ import annotations

import sys
import uuid

import pytest

from airflow_training_guard import secrets
from airflow_training_guard.secrets import REPLACEMENT, mask, redact


def _token() -> str:
    return f"hf_{uuid.uuid4().hex}"


@pytest.fixture
def without_airflow(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``airflow.sdk`` unimportable, as in a training container."""
    for name in ("airflow.sdk.log", "airflow.sdk._shared.secrets_masker"):
        monkeypatch.setitem(sys.modules, name, None)


def test_masked_secret_is_redacted_in_nested_lists_dicts_and_tuples() -> None:
    secret = f"pw-{uuid.uuid4().hex}"
    mask(secret)
    value = {"params": {"command": ["train", "--pw", secret, f"--url=x?{secret}"]}, "t": (secret, 3)}
    assert redact(value) == {
        "params": {"command": ["train", "--pw", REPLACEMENT, f"--url=x?{REPLACEMENT}"]},
        "t": (REPLACEMENT, 3),
    }


def test_mask_registers_the_secret_with_airflows_masker() -> None:
    from airflow.sdk._shared.secrets_masker import redact as airflow_redact

    secret = f"pw-{uuid.uuid4().hex}"
    mask(secret)
    assert airflow_redact(f"x {secret} y") == "x *** y"


def test_redact_keeps_keys_numbers_and_none_and_does_not_modify_the_input() -> None:
    secret = f"pw-{uuid.uuid4().hex}"
    mask(secret)
    original = {"steps": 3, "loss": 0.25, "resume": None, "ok": True, "arg": secret}
    assert redact(original) == {"steps": 3, "loss": 0.25, "resume": None, "ok": True, "arg": REPLACEMENT}
    assert original["arg"] == secret


def test_values_under_sensitive_keys_are_hidden_even_when_never_masked() -> None:
    assert redact({"password": "plain-never-masked", "user": "alice"}) == {
        "password": REPLACEMENT,
        "user": "alice",
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"Authorization": "Bearer zz9-secret-x"}', '{"Authorization": "***"}'),
        ("authorization: Basic dXNlcjpwYXNz\nnext", "authorization: ***\nnext"),
        ("echo: Bearer eyJhbGciOi.eyJzdWIi.c2lnbmF0dXJl9", "echo: Bearer ***"),
        ("use git clone https://bob:s3cret@host/repo.git", "use git clone https://bob:***@host/repo.git"),
        ("token hf_AbCdEfGhIjKlMnOpQrStUvWx12 leaked", "token *** leaked"),
    ],
)
def test_credential_shapes_are_stripped_even_when_the_masker_does_not_know_them(
    text: str, expected: str
) -> None:
    """Regression: a Hub that echoed the Authorization header put ``Bearer hf_...`` into exceptions."""
    assert redact(text) == expected


def test_prose_about_bearer_tokens_stays_readable() -> None:
    text = "the registry sent a bearer challenge; the Bearer realm is on another host"
    assert redact(text) == text


def test_short_values_are_not_registered() -> None:
    mask("abc")
    assert redact("abc abcd") == "abc abcd"


def test_none_and_empty_secrets_are_ignored() -> None:
    mask(None)
    mask("")
    assert redact("nothing to hide") == "nothing to hide"


def test_redact_works_without_airflow(without_airflow: None) -> None:
    secret = f"pw-{uuid.uuid4().hex}"
    mask(secret)
    assert redact({"command": ["train", secret]}) == {"command": ["train", REPLACEMENT]}
    assert secret in secrets._local_secrets


def test_redact_fails_closed_when_the_masker_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(value: object) -> object:
        raise RuntimeError("masker broke")

    monkeypatch.setattr(secrets, "_airflow_redact", boom)
    assert redact({"token": "x"}) == "<redaction-failed>"
