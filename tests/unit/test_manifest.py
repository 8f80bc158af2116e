"""Unit tests of the run manifest (pure, no Airflow)."""

from __future__ import annotations

import json

import pytest

from airflow_training_guard.exceptions import GuardConfigError
from airflow_training_guard.manifest import (
    MANIFEST_FILE_NAME,
    MANIFEST_SCHEMA_VERSION,
    ManifestError,
    RunManifest,
    check_python_environment,
    file_sha256,
    python_environment,
    reproduce_config,
    utc_now_iso,
)

SHA_A = "a" * 40
SHA_B = "0123456789abcdef0123456789abcdef01234567"
DIGEST = "sha256:" + "b" * 64


def make(**overrides: object) -> RunManifest:
    values: dict[str, object] = {
        "dag_id": "retrain",
        "run_id": "scheduled__2026-11-01",
        "task_id": "train",
        "partition_key": "berlin|2026-11-01",
        "image_digest": DIGEST,
        "datasets": {"trl-lib/ultrafeedback_binarized": SHA_A},
        "models": {"Qwen/Qwen2-0.5B": SHA_B},
        "params": {"lr": 1e-5, "epochs": 3, "tags": ["a", "b"]},
        "code": {"package_version": "0.1.0", "dag_file_sha256": "c" * 64},
        "python_env": None,
        "checkpoints": ("/ckpt/step-100", "/ckpt/step-200"),
        "artifact_uri": "s3://models/retrain/berlin",
        "metrics": {"loss": 0.3},
        "created_at": "2026-11-21T09:30:00+00:00",
    }
    values.update(overrides)
    return RunManifest(**values)  # type: ignore[arg-type]


def test_round_trip_dict_and_json() -> None:
    manifest = make()
    assert RunManifest.from_dict(manifest.to_dict()) == manifest
    assert RunManifest.from_json(manifest.to_json()) == manifest
    data = json.loads(manifest.to_json())
    assert data["schema_version"] == MANIFEST_SCHEMA_VERSION
    assert data["checkpoints"] == ["/ckpt/step-100", "/ckpt/step-200"]


def test_to_json_is_deterministic() -> None:
    assert make().to_json() == make().to_json()


def test_write_and_read_atomic(tmp_path) -> None:
    manifest = make()
    path = manifest.write(tmp_path / "model")
    assert path.name == MANIFEST_FILE_NAME
    assert RunManifest.read(tmp_path / "model") == manifest
    assert RunManifest.read(path) == manifest
    assert [p.name for p in path.parent.iterdir()] == [MANIFEST_FILE_NAME]


def test_read_missing_names_the_path(tmp_path) -> None:
    with pytest.raises(ManifestError, match="no run manifest at"):
        RunManifest.read(tmp_path)


def test_complete_manifest() -> None:
    assert make().is_complete
    assert make().missing_fields() == []


def test_local_launcher_needs_python_env() -> None:
    manifest = make(image_digest=None)
    assert manifest.missing_fields() == ["image_digest or python_env"]
    local = make(image_digest=None, python_env={"python": "3.11.7", "distributions_sha256": "d" * 64})
    assert local.is_complete


def test_missing_fields_lists_all() -> None:
    manifest = make(artifact_uri=None, code={"package_version": "0.1.0"}, partition_key="")
    assert manifest.missing_fields() == ["partition_key", "artifact_uri", "code.dag_file_sha256"]
    assert not manifest.is_complete


def test_branch_name_instead_of_sha_is_rejected() -> None:
    """A manifest must never record a moving branch name: that is the irreproducibility it prevents."""
    with pytest.raises(
        ManifestError,
        match=r"datasets\['d/x'\] is 'main', neither a 40-hex commit SHA nor a 'sha256:<64 hex>'",
    ):
        make(datasets={"d/x": "main"})


def test_data_pinned_by_content_digest_is_recorded_next_to_hub_commit_shas() -> None:
    content = "sha256:" + "ab" * 32
    manifest = make(datasets={"d/x": "0" * 40, "/data/events/date=2026-11-20": content})
    assert manifest.datasets["/data/events/date=2026-11-20"] == content
    assert RunManifest.from_json(manifest.to_json()) == manifest
    with pytest.raises(ManifestError, match="neither a 40-hex commit SHA"):
        make(datasets={"/data/x": "sha256:" + "ab" * 31})


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ({"image_digest": "sha256:abc"}, "image_digest"),
        ({"created_at": "yesterday"}, "created_at"),
        ({"metrics": {"loss": float("nan")}}, "metrics"),
        ({"params": {"x": object()}}, "params"),
        ({"checkpoints": "/one/path"}, "checkpoints"),
        ({"schema_version": 99}, "upgrade the package"),
    ],
)
def test_bad_fields(override: dict[str, object], match: str) -> None:
    with pytest.raises(GuardConfigError, match=match):
        make(**override)


def test_from_dict_missing_and_unknown_fields() -> None:
    data = make().to_dict()
    del data["models"]
    with pytest.raises(ManifestError, match=r"missing the field.*'models'"):
        RunManifest.from_dict(data)
    data = make().to_dict()
    data["surprise"] = 1
    with pytest.raises(ManifestError, match=r"unknown field.*'surprise'"):
        RunManifest.from_dict(data)


def test_from_json_not_json() -> None:
    with pytest.raises(ManifestError, match="not valid JSON"):
        RunManifest.from_json("{nope")
    with pytest.raises(ManifestError, match="must be a JSON object"):
        RunManifest.from_json("[]")


def test_manifest_is_immutable() -> None:
    manifest = make()
    with pytest.raises(TypeError):
        manifest.datasets["x"] = SHA_A  # type: ignore[index]


def test_reproduce_config_pins_shas_and_digest() -> None:
    config = reproduce_config(make())
    assert config["image_digest"] == DIGEST
    assert config["datasets"] == {"trl-lib/ultrafeedback_binarized": SHA_A}
    assert config["models"] == {"Qwen/Qwen2-0.5B": SHA_B}
    assert config["resume_from"] == "/ckpt/step-200"
    assert config["params"]["tags"] == ["a", "b"]


def test_reproduce_config_refuses_incomplete() -> None:
    with pytest.raises(ManifestError, match="cannot re-create the run: missing artifact_uri"):
        reproduce_config(make(artifact_uri=None))


def test_python_environment_and_file_hash(tmp_path) -> None:
    env = python_environment()
    assert env["python"].count(".") == 2
    assert len(env["distributions_sha256"]) == 64
    assert python_environment() == env
    manifest = make(image_digest=None, python_env=env)
    assert check_python_environment(manifest) == []
    drifted = make(image_digest=None, python_env={**env, "python": "2.7.0"})
    assert check_python_environment(drifted)[0].startswith("python: recorded '2.7.0'")
    path = tmp_path / "dag.py"
    path.write_bytes(b"abc")
    assert file_sha256(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_utc_now_iso_parses() -> None:
    assert RunManifest.from_dict({**make().to_dict(), "created_at": utc_now_iso()}).created_at.endswith(
        "+00:00"
    )


def test_secrets_in_params_checkpoints_and_artifact_uri_are_recorded_masked(tmp_path) -> None:
    """Regression (issue 14): a token on the command line was written to run-manifest.json in clear."""
    from airflow_training_guard.secrets import mask

    token = "hf_" + "Zq8" * 12
    mask(token)
    manifest = make(
        params={"command": ["python", "train.py", "--hub-token", token], "lr": 1e-5},
        checkpoints=(f"/ckpt/{token}/step-1",),
        artifact_uri="s3://ak:sk-very-secret@models/retrain",
    )
    path = manifest.write(tmp_path)
    text = path.read_text()
    assert token not in text and "sk-very-secret" not in text
    assert manifest.params["command"] == ["python", "train.py", "--hub-token", "***"]
    assert manifest.params["lr"] == 1e-5
    assert manifest.checkpoints == ("/ckpt/***/step-1",)
    assert manifest.artifact_uri == "s3://ak:***@models/retrain"
    assert token not in json.dumps(reproduce_config(RunManifest.read(tmp_path)))
