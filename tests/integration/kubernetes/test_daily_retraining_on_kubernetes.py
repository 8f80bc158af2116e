"""``dags/daily_retraining.py`` with the launcher switch on Kubernetes, run end to end for real.

``TRAINING_GUARD_KUBERNETES_CONN_ID`` turns ``train`` into a ``GuardedTrainingPodOperator``. Here it
points at the Kubernetes API emulator; the training image is pushed to a real OCI registry
(Debian's docker-registry on loopback) so pre-flight verifies its digest over HTTP; and a
:class:`LocalKubelet` plays the node: when the operator creates the pod, it runs the container's
program (the real ``examples/training/train.py``, the image's entrypoint) as a local process with
the pod's environment and volume mounts, then reports its log and exit code to the API server, as
a kubelet does. The Airflow worker and the pod share the claim at the same path, as the DAG's
docstring requires, so evaluation and promotion read what the pod wrote.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pendulum
import pytest

from airflow_training_guard.exceptions import GuardConfigError
from tests.integration.kubernetes.k8s_api import K8sApi
from tests.integration.registry.conftest import LocalRegistry, oci_registry  # noqa: F401  (fixture)

REPO = Path(__file__).resolve().parents[3]
DAG_FILE = REPO / "dags" / "daily_retraining.py"
CLAIM = "training-guard-shared"
LOGICAL_DATE = pendulum.datetime(2026, 11, 21, 2, tz="UTC")
PARTITION = "2026-11-20"


class LocalKubelet:
    """Run each new pod's ``base`` container as a local process and report it to the API server.

    :param api: the emulator.
    :param claims: PersistentVolumeClaim name -> the host folder holding its files.
    :param entrypoint: the image's ENTRYPOINT as a local command; the pod's ``args`` follow it.
    """

    def __init__(self, api: K8sApi, claims: dict[str, Path], entrypoint: list[str]) -> None:
        self.api = api
        self.claims = claims
        self.entrypoint = entrypoint
        self.runs: list[dict[str, Any]] = []
        self._seen: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="local-kubelet", daemon=True)

    def __enter__(self) -> LocalKubelet:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _loop(self) -> None:
        while not self._stop.is_set():
            for pod in self.api.created_pods():
                name = pod["metadata"]["name"]
                if name not in self._seen:
                    self._seen.add(name)
                    self._run(pod)
            time.sleep(0.1)

    def _host_path(self, mounts: list[tuple[str, Path]], value: str) -> str:
        for mount_path, host in mounts:
            if value == mount_path or value.startswith(mount_path.rstrip("/") + "/"):
                return str(host) + value[len(mount_path) :]
        return value

    def _run(self, pod: dict[str, Any]) -> None:
        name, namespace = pod["metadata"]["name"], pod["metadata"]["namespace"]
        spec = pod["spec"]
        [container] = [c for c in spec["containers"] if c["name"] == "base"]
        claims = {
            v["name"]: v["persistentVolumeClaim"]["claimName"]
            for v in spec.get("volumes", [])
            if "persistentVolumeClaim" in v
        }
        mounts = sorted(
            (
                (m["mountPath"], self.claims[claims[m["name"]]] / m.get("subPath", ""))
                for m in container.get("volumeMounts", [])
                if m["name"] in claims
            ),
            key=lambda mount: -len(mount[0]),  # the most specific mount wins
        )
        env = {
            e["name"]: self._host_path(mounts, e["value"]) for e in container.get("env", []) if "value" in e
        }
        argv = [*self.entrypoint, *(self._host_path(mounts, a) for a in container.get("args", []))]
        for _, host in mounts:
            host.mkdir(parents=True, exist_ok=True)
        self.api.run_pod(name, namespace=namespace)
        proc = subprocess.run(
            argv,
            env={"PATH": os.environ["PATH"], "PYTHONUNBUFFERED": "1", **env},
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        self.runs.append({"pod": name, "argv": argv, "env": env, "returncode": proc.returncode})
        self.api.set_logs(name, proc.stdout + proc.stderr, namespace=namespace)
        if proc.returncode == 0:
            self.api.succeed_pod(name, namespace=namespace)
        else:
            self.api.fail_pod(name, exit_code=proc.returncode, namespace=namespace)


def load_daily_dag(monkeypatch: pytest.MonkeyPatch, **env: str) -> ModuleType:
    """Import ``dags/daily_retraining.py`` afresh with exactly ``env`` as its training-guard settings."""
    for name in list(os.environ):
        if name.startswith("TRAINING_GUARD_") and not name.startswith("TRAINING_GUARD_TEST_"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    spec = importlib.util.spec_from_file_location(f"daily_retraining_{time.monotonic_ns()}", DAG_FILE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def guard_root(tmp_path: Path) -> Path:
    root = tmp_path / "shared" / "training-guard"
    sys.path.insert(0, str(REPO / "examples" / "training"))
    try:
        from sample_data import write_day
    finally:
        sys.path.remove(str(REPO / "examples" / "training"))
    write_day(root / "data", PARTITION, rows_per_hour=200)
    return root


@pytest.fixture
def sla_pool(airflow_db: Path) -> None:
    """The pools a deployment has (`airflow training-guard pools sync`); train runs in training_sla."""
    from airflow_training_guard.backfill.pools import sync_pools

    sync_pools()


def test_switch_runs_train_as_a_pod_that_trains_on_the_pinned_data_and_gets_promoted(
    k8s_api: K8sApi,
    oci_registry: LocalRegistry,  # noqa: F811
    run_dag: Callable[..., dict[str, str]],
    guard_root: Path,
    sla_pool: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    from airflow_training_guard.manifest import RunManifest, file_sha256
    from airflow_training_guard.operators.training_pod import GuardedTrainingPodOperator
    from airflow_training_guard.preflight.data import content_digest

    digest = oci_registry.push_image("ml/click-trainer", "2026.11")
    image = f"{oci_registry.host}/ml/click-trainer@{digest}"
    module = load_daily_dag(
        monkeypatch,
        TRAINING_GUARD_ROOT=str(guard_root),
        TRAINING_GUARD_KUBERNETES_CONN_ID=k8s_api.airflow_conn_id,
        TRAINING_GUARD_TRAINING_IMAGE=image,
        TRAINING_GUARD_SHARED_CLAIM=CLAIM,
        TRAINING_GUARD_NAMESPACE="default",
    )
    dag = module.dag
    assert isinstance(dag.get_task("train"), GuardedTrainingPodOperator)
    entrypoint = [sys.executable, str(REPO / "examples" / "training" / "train.py")]
    with LocalKubelet(k8s_api, {CLAIM: guard_root}, entrypoint) as kubelet:
        states = run_dag(dag, logical_date=LOGICAL_DATE)
    assert states == dict.fromkeys(
        ("wait_for_partitions", "preflight", "train", "evaluate", "promote"), "success"
    ), kubelet.runs

    # The pod: the pinned image, the shared claim at the same path, checkpoints on their own sub-path.
    [pod] = k8s_api.created_pods()
    [container] = pod["spec"]["containers"]
    assert container["image"] == image
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts[str(guard_root)]["name"] == "training-guard-shared"
    assert mounts["/checkpoints"]["subPath"] == f"checkpoints/daily_retraining/train/{PARTITION}"
    assert [run["returncode"] for run in kubelet.runs] == [0]

    day = guard_root / "data" / f"date={PARTITION}"
    model_dir = guard_root / "models" / "daily_retraining" / "train" / PARTITION
    with create_session() as session:
        xcom = {
            (row.task_id, row.key): row.value
            for row in session.query(XComModel).filter(XComModel.dag_id == "daily_retraining")
        }
    pins = xcom[("preflight", "pins")]
    assert pins["image"] == image and pins["image_digest"] == digest
    assert pins["datasets"] == {str(day): content_digest(day).digest}
    # The program saw the pins and wrote its checkpoints into the claim's sub-path.
    assert sorted((guard_root / mounts["/checkpoints"]["subPath"]).glob("step-*"))
    manifest = RunManifest.read(model_dir)
    assert manifest.image_digest == digest and manifest.datasets == pins["datasets"]
    assert manifest.metrics["accuracy"] >= 0.70 and manifest.is_complete
    assert xcom[("train", "return_value")]["manifest_path"] == str(model_dir / "run-manifest.json")
    promotion = xcom[("promote", "return_value")]
    assert promotion["outcome"] == "promoted"
    assert promotion["current"]["artifact_uri"] == str(model_dir)
    assert promotion["current"]["commit"] == "sha256:" + file_sha256(model_dir / "model.npy")


def test_preflight_fails_before_any_pod_when_the_image_digest_is_not_in_the_registry(
    k8s_api: K8sApi,
    oci_registry: LocalRegistry,  # noqa: F811
    run_dag: Callable[..., dict[str, str]],
    guard_root: Path,
    sla_pool: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    oci_registry.push_image("ml/click-trainer", "2026.11")
    absent = f"{oci_registry.host}/ml/click-trainer@sha256:{'0' * 64}"
    module = load_daily_dag(
        monkeypatch,
        TRAINING_GUARD_ROOT=str(guard_root),
        TRAINING_GUARD_KUBERNETES_CONN_ID=k8s_api.airflow_conn_id,
        TRAINING_GUARD_TRAINING_IMAGE=absent,
        TRAINING_GUARD_SHARED_CLAIM=CLAIM,
        TRAINING_GUARD_NAMESPACE="default",
    )
    states = run_dag(module.dag, logical_date=LOGICAL_DATE)
    assert states["preflight"] == "failed"
    assert states["train"] == "upstream_failed"
    assert k8s_api.created_pods() == [], "no pod may be created when pre-flight fails"


PINNED_IMAGE = "registry.example.com/click-trainer@sha256:" + "a" * 64
# Complete Kubernetes settings; each case below breaks one (None removes it).
COMPLETE = {"TRAINING_GUARD_TRAINING_IMAGE": PINNED_IMAGE, "TRAINING_GUARD_SHARED_CLAIM": CLAIM}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param(
            {"TRAINING_GUARD_TRAINING_IMAGE": None},
            r"selects the Kubernetes launcher, but TRAINING_GUARD_TRAINING_IMAGE is not set; set it to the "
            r"training image pinned by digest",
            id="no-image",
        ),
        pytest.param(
            {"TRAINING_GUARD_SHARED_CLAIM": None},
            r"TRAINING_GUARD_SHARED_CLAIM is not set; set it to a ReadWriteMany PersistentVolumeClaim",
            id="no-claim",
        ),
        pytest.param(
            {"TRAINING_GUARD_TRAINING_IMAGE": "registry.example.com/click-trainer:latest"},
            r"registry.example.com/click-trainer:latest.*not pinned",
            id="tag-not-digest",
        ),
        pytest.param(
            {"TRAINING_GUARD_DATA_ROOT": "/elsewhere/data"},
            r"TRAINING_GUARD_DATA_ROOT='/elsewhere/data' is outside TRAINING_GUARD_ROOT",
            id="data-outside-claim",
        ),
        pytest.param(
            {"TRAINING_GUARD_GPUS": "two"},
            r"TRAINING_GUARD_GPUS='two' must be a whole number",
            id="gpus-not-a-number",
        ),
    ],
)
def test_kubernetes_switch_without_its_settings_fails_at_parse_time_naming_the_setting(
    change: dict[str, str | None], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {name: value for name, value in {**COMPLETE, **change}.items() if value is not None}
    with pytest.raises(GuardConfigError, match=message):
        load_daily_dag(
            monkeypatch,
            TRAINING_GUARD_ROOT=str(tmp_path),
            TRAINING_GUARD_KUBERNETES_CONN_ID="kubernetes_default",
            **env,
        )


def test_complete_kubernetes_settings_parse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The baseline of the cases above: with all settings the DAG parses (each case breaks just one)."""
    dag = load_daily_dag(
        monkeypatch,
        TRAINING_GUARD_ROOT=str(tmp_path),
        TRAINING_GUARD_KUBERNETES_CONN_ID="kubernetes_default",
        **COMPLETE,
    ).dag
    assert dag.get_task("preflight").image == PINNED_IMAGE
    assert dag.get_task("preflight").connections == ["kubernetes_default"]


def test_without_the_switch_train_runs_locally_and_preflight_checks_no_image(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_training_guard.operators.local import LocalTrainingOperator

    dag = load_daily_dag(monkeypatch, TRAINING_GUARD_ROOT=str(tmp_path)).dag
    assert isinstance(dag.get_task("train"), LocalTrainingOperator)
    preflight = dag.get_task("preflight")
    assert preflight.image is None and preflight.connections == []
    assert preflight.data_paths == [f"{tmp_path}/data/date={{{{ macros.ds_add(ds, -1) }}}}"]
    assert dag.get_task("train").pool == "training_sla"
    assert "local" in dag.tags
