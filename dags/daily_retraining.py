"""Daily retraining of the example click model: complete data, verified inputs, guarded training.

Every day at 02:00 UTC: wait until all 24 of yesterday's hourly partitions are present and
finalized; pre-flight: pin those partitions by content digest and check the checkpoint location
and the timeout (and, on Kubernetes, the image digest in its registry and the GPU shape against
the nodes); train on exactly the pinned data with checkpoint/resume, deadline and stall
detection; evaluate the model and refuse one below the accuracy bar; promote it with a
compare-and-swap on the production pointer if it beats production.

**The launcher switch.** ``train`` runs the example program as a guarded local subprocess
(``LocalTrainingOperator``) unless ``TRAINING_GUARD_KUBERNETES_CONN_ID`` names a Kubernetes
connection; then it runs as a pod (``GuardedTrainingPodOperator``) through that connection, and
these must be set too (the DAG fails to import, naming the missing one, otherwise):

- ``TRAINING_GUARD_TRAINING_IMAGE``: the training image pinned by digest, ``repo@sha256:...``
  (``examples/training/Dockerfile``; ``crane digest <repo:tag>`` gives the digest);
- ``TRAINING_GUARD_SHARED_CLAIM``: a ReadWriteMany PersistentVolumeClaim holding data,
  checkpoints and models, mounted on the Airflow workers at ``TRAINING_GUARD_ROOT``; the pod mounts
  it at the same path, so every path means the same file on both sides;
- optional: ``TRAINING_GUARD_NAMESPACE`` (default ``training``), ``TRAINING_GUARD_GPUS`` (default
  0: the example model trains on CPU), ``TRAINING_GUARD_REGISTRY_CONN_ID`` (registry credentials).

**The program switch** (local launcher): ``TRAINING_GUARD_TRAINING_PROGRAM`` picks the example
program: ``numpy`` (default, ``examples/training/train.py``) or ``pytorch-ddp``
(``examples/training/train_ddp.py``: 2 ranks with ``torchrun``, gloo on CPU; needs the ``torch``
extra). Any other value fails the DAG import, naming the choices.

``TRAINING_GUARD_AIRFLOW_API_CONN_ID`` (optional, both launchers) names a connection to the Airflow
REST API; pre-flight then also checks that the pool ``training_sla`` exists.

Paths come from the environment so the same file runs in the demo, in tests and in docker-compose:
``TRAINING_GUARD_ROOT`` (default ``$AIRFLOW_HOME/training-guard``), and under it, unless set,
``TRAINING_GUARD_DATA_ROOT`` (``data``), ``TRAINING_GUARD_CHECKPOINT_ROOT`` (``checkpoints``) and
``TRAINING_GUARD_OUTPUT_ROOT`` (``models``). See docs/daily-retraining.md.

**The SLA.** With ``TRAINING_GUARD_SLA`` set (``6h`` in docker-compose), a run not finished that long
after it was queued fires a deadline alert (Airflow 3 ``DeadlineAlert``); its callback logs the miss
in the triggerer's log. Route it to Slack or e-mail as docs/daily-retraining.md shows. Unset (the
demo), the DAG has no deadline: Airflow 3.3's ``dag.test()`` / ``airflow dags test`` fails at the end
of every successful run of a DAG with a deadline alert (docs/daily-retraining.md#the-sla).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pendulum
from airflow.sdk import DAG, task
from airflow.sdk.exceptions import AirflowFailException

from airflow_training_guard.exceptions import GuardConfigError
from airflow_training_guard.manifest import file_sha256
from airflow_training_guard.operators.preflight import PreflightOperator
from airflow_training_guard.operators.promotion import PromoteModelOperator
from airflow_training_guard.partitions import HoursOfDay, ObjectStorageSource
from airflow_training_guard.sensors.completeness import PartitionCompletenessSensor
from airflow_training_guard.sla import sla_deadline_alert

GUARD_ROOT = Path(
    os.environ.get("TRAINING_GUARD_ROOT")
    or Path(os.environ.get("AIRFLOW_HOME", "~/airflow")).expanduser() / "training-guard"
)
DATA_ROOT = os.environ.get("TRAINING_GUARD_DATA_ROOT") or str(GUARD_ROOT / "data")
CHECKPOINT_ROOT = os.environ.get("TRAINING_GUARD_CHECKPOINT_ROOT") or str(GUARD_ROOT / "checkpoints")
OUTPUT_ROOT = os.environ.get("TRAINING_GUARD_OUTPUT_ROOT") or str(GUARD_ROOT / "models")
EXAMPLES = Path(
    os.environ.get("TRAINING_GUARD_EXAMPLES_DIR", Path(__file__).resolve().parent.parent / "examples")
)
# The model registry: SQL compare-and-swap on the embedded SQLite by default; set
# TRAINING_GUARD_REGISTRY_URL to postgresql+psycopg://... or hf://... in production.
REGISTRY_URL = os.environ.get("TRAINING_GUARD_REGISTRY_URL") or f"sqlite:///{GUARD_ROOT / 'registry.db'}"
# The one switch: name a Kubernetes connection and `train` runs as a pod through it.
KUBERNETES_CONN_ID = os.environ.get("TRAINING_GUARD_KUBERNETES_CONN_ID", "").strip()
LAUNCHER = "kubernetes" if KUBERNETES_CONN_ID else "local"

SLA_POOL = "training_sla"  # created by `airflow training-guard pools sync` (make demo does it)
# Tasks cannot read pools from the database in Airflow 3: pre-flight checks the pool through the
# REST API when this names a connection to the API server (docs/preflight.md).
AIRFLOW_API_CONN_ID = os.environ.get("TRAINING_GUARD_AIRFLOW_API_CONN_ID", "").strip() or None
MIN_ACCURACY = 0.70
# The daily model must be in production this long after the run was queued (02:00 plus waiting for
# data; the sensor's grace period is 6h too). A later run fires the SLA deadline alert. Opt-in: see
# the module docstring for why the demo's `airflow dags test` runs without it.
SLA = os.environ.get("TRAINING_GUARD_SLA", "").strip() or None
EXPECTED_RUNTIME = "10m"
TRAINING_DAY = "{{ macros.ds_add(ds, -1) }}"  # the run at 02:00 on day D trains on the 24 hours of D-1
DAY_DATA = f"{DATA_ROOT}/date={TRAINING_DAY}"
MODEL_DIR = f"{OUTPUT_ROOT}/daily_retraining/train/{TRAINING_DAY}"
TRAIN_ARGS = ["--data-dir", DATA_ROOT, "--steps", "300"]
# The example program of the local launcher: (script, ranks, model file); docs/daily-retraining.md.
PROGRAMS = {
    "numpy": ("train.py", 1, "model.npy"),
    "pytorch-ddp": ("train_ddp.py", 2, "model.safetensors"),
}
PROGRAM = os.environ.get("TRAINING_GUARD_TRAINING_PROGRAM", "").strip() or "numpy"
if PROGRAM not in PROGRAMS:
    raise GuardConfigError(
        f"TRAINING_GUARD_TRAINING_PROGRAM={PROGRAM!r} is not an example program; use one of "
        f"{', '.join(sorted(PROGRAMS))} (or unset it for numpy)"
    )
PROGRAM_SCRIPT, PROGRAM_RANKS, MODEL_FILE = PROGRAMS[PROGRAM] if LAUNCHER == "local" else PROGRAMS["numpy"]
PINS = "{{ ti.xcom_pull(task_ids='preflight', key='pins') }}"


def _required(name: str, fix: str) -> str:
    value = os.environ.get(name, "").strip()
    if not value:
        raise GuardConfigError(
            f"TRAINING_GUARD_KUBERNETES_CONN_ID={KUBERNETES_CONN_ID!r} selects the Kubernetes launcher, but "
            f"{name} is not set; {fix}, or unset TRAINING_GUARD_KUBERNETES_CONN_ID to train locally"
        )
    return value


def _gpus() -> int:
    raw = os.environ.get("TRAINING_GUARD_GPUS", "0").strip()
    if not raw.isdigit():
        raise GuardConfigError(f"TRAINING_GUARD_GPUS={raw!r} must be a whole number of GPUs per pod, e.g. 1")
    return int(raw)


with DAG(
    dag_id="daily_retraining",
    description=f"Train yesterday's click model ({LAUNCHER} launcher), checkpointed and time-boxed, then promote it",
    schedule="0 2 * * *",
    start_date=pendulum.datetime(2026, 11, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    deadline=sla_deadline_alert(SLA) if SLA else None,
    tags=["training-guard", "example", LAUNCHER],
    doc_md=__doc__,
) as dag:
    wait_for_partitions = PartitionCompletenessSensor(
        task_id="wait_for_partitions",
        # Yesterday's 24 hourly partitions (UTC): the same day `train` reads.
        expected=HoursOfDay(TRAINING_DAY, timezone="UTC"),
        # The layout examples/training/sample_data.py writes: date=YYYY-MM-DD/hour=HH/part-0.csv + _SUCCESS.
        source=ObjectStorageSource(DATA_ROOT + "/date={date}/hour={hour}"),
        poke_interval="5m",
        mode="reschedule",
        grace_period="6h",
        timeout="12h",
        doc_md=(
            "Blocks training until all of yesterday's hourly partitions are present and finalized "
            "(`_SUCCESS` and non-empty data); the log and the failure list the missing hours. "
            "See docs/partition-completeness.md."
        ),
    )

    if LAUNCHER == "local":
        from airflow_training_guard.operators.local import LocalTrainingOperator

        train = LocalTrainingOperator(
            task_id="train",
            partition_key=TRAINING_DAY,
            command=[sys.executable, str(EXAMPLES / "training" / PROGRAM_SCRIPT), *TRAIN_ARGS],
            nproc_per_node=PROGRAM_RANKS,
            checkpoint_root=CHECKPOINT_ROOT,
            output_dir=MODEL_DIR,
            expected_runtime=EXPECTED_RUNTIME,
            stall_after="2m",
            startup_timeout="2m",
            poll_interval="1s",
            profile="safe",
            pins=PINS,
            pool=SLA_POOL,
            doc_md=(
                "Runs `examples/training/train.py` as a guarded subprocess on the data pre-flight pinned "
                "(re-verified first): resumes from the newest valid checkpoint on retry, killed at "
                "expected_runtime + 30% or after 2 minutes without progress. See docs/local-training-operator.md."
            ),
        )
        preflight_launcher_checks: dict[str, object] = {}
    else:
        from airflow_training_guard.operators.training_pod import GuardedTrainingPodOperator
        from airflow_training_guard.policies.gpus import GpuRequest

        image = _required(
            "TRAINING_GUARD_TRAINING_IMAGE",
            "set it to the training image pinned by digest, e.g. registry.example.com/click-trainer@sha256:<64 hex>",
        )
        claim = _required(
            "TRAINING_GUARD_SHARED_CLAIM",
            "set it to a ReadWriteMany PersistentVolumeClaim mounted on the workers at "
            f"TRAINING_GUARD_ROOT ({GUARD_ROOT})",
        )
        for name, path in (("DATA", DATA_ROOT), ("CHECKPOINT", CHECKPOINT_ROOT), ("OUTPUT", OUTPUT_ROOT)):
            if not Path(path).is_relative_to(GUARD_ROOT):
                raise GuardConfigError(
                    f"TRAINING_GUARD_{name}_ROOT={path!r} is outside TRAINING_GUARD_ROOT={str(GUARD_ROOT)!r}, "
                    f"where the shared claim {claim!r} is mounted; the pod would not see it. Unset it or "
                    "move it under TRAINING_GUARD_ROOT"
                )
        gpus = _gpus()
        from kubernetes.client import models as k8s

        train = GuardedTrainingPodOperator(
            task_id="train",
            kubernetes_conn_id=KUBERNETES_CONN_ID,
            namespace=os.environ.get("TRAINING_GUARD_NAMESPACE", "training"),
            image=image,
            arguments=TRAIN_ARGS,
            partition_key=TRAINING_DAY,
            gpus=gpus,
            expected_runtime=EXPECTED_RUNTIME,
            stall_after="2m",
            profile="safe",
            checkpoint_claim_name=claim,
            checkpoint_path_template=(
                str(Path(CHECKPOINT_ROOT).relative_to(GUARD_ROOT)) + "/{dag_id}/{task_id}/{partition_key}"
            ),
            # The claim at the same path as on the workers: data in, model out, same file names.
            volumes=[
                k8s.V1Volume(
                    name="training-guard-shared",
                    persistent_volume_claim=k8s.V1PersistentVolumeClaimVolumeSource(claim_name=claim),
                )
            ],
            volume_mounts=[k8s.V1VolumeMount(name="training-guard-shared", mount_path=str(GUARD_ROOT))],
            output_dir=MODEL_DIR,
            worker_output_dir=MODEL_DIR,
            pins=PINS,
            pool=SLA_POOL,
            doc_md=(
                "Runs the digest-pinned training image as a pod on the data pre-flight pinned (re-verified "
                "first), with checkpoints on the shared claim, a hard deadline and stall detection; a failure "
                "ends with the reason, pod events and a hint. See docs/training-pod-operator.md."
            ),
        )
        preflight_launcher_checks = {
            "image": image,
            "registry_conn_id": os.environ.get("TRAINING_GUARD_REGISTRY_CONN_ID") or None,
            "connections": [KUBERNETES_CONN_ID],
            "kubernetes_conn_id": KUBERNETES_CONN_ID,
            "gpu_request": GpuRequest(gpus=gpus) if gpus else None,
        }

    preflight = PreflightOperator(
        task_id="preflight",
        # Pin exactly the data the sensor found complete: train re-verifies this digest before it starts.
        data_paths=[DAY_DATA],
        checkpoint_dir=CHECKPOINT_ROOT,
        pools=[SLA_POOL] if AIRFLOW_API_CONN_ID else [],
        api_conn_id=AIRFLOW_API_CONN_ID,
        expected_runtime=EXPECTED_RUNTIME,
        training_timeout=train.timeout_policy.hard_deadline,
        hub_conn_id=None,
        **preflight_launcher_checks,  # type: ignore[arg-type]
        doc_md=(
            "Checks everything training needs before it starts and pins the inputs: yesterday's partitions "
            "by content digest (`sha256:...`), the checkpoint location, the timeout against the "
            "expected runtime; on Kubernetes also the image digest in its registry, the connection and the "
            "GPU shape; with an API connection, the pool. Fails once, listing every problem with its fix. "
            "See docs/preflight.md."
        ),
    )

    @task(
        doc_md="Read the model's metrics, fail the run if accuracy is below the bar, record the model's SHA-256."
    )
    def evaluate(result: dict) -> dict:
        output_dir = Path(result["output_dir"])
        metrics_file = output_dir / "metrics.json"
        metrics = json.loads(metrics_file.read_text())
        if metrics["accuracy"] < MIN_ACCURACY:
            raise AirflowFailException(
                f"model for partition_key={result['partition_key']} has accuracy {metrics['accuracy']:.3f} "
                f"< {MIN_ACCURACY}; not promoting it. Metrics: {metrics_file}"
            )
        return {
            "partition_key": result["partition_key"],
            "model_sha256": "sha256:" + file_sha256(output_dir / MODEL_FILE),
            **metrics,
        }

    promote = PromoteModelOperator(
        task_id="promote",
        model_name="click-model",
        registry=REGISTRY_URL,
        # The manifest the train task wrote next to the model: the candidate, its metrics, its provenance.
        manifest_path="{{ ti.xcom_pull(task_ids='train')['manifest_path'] }}",
        artifact_commit="{{ ti.xcom_pull(task_ids='evaluate')['model_sha256'] }}",
        metric="accuracy",
        direction="max",
        doc_md=(
            "Compare-and-swap the production pointer to this model if it beats production on accuracy "
            "and its run manifest is complete. See docs/model-promotion.md."
        ),
    )

    wait_for_partitions >> preflight >> train
    evaluate(train.output) >> promote
