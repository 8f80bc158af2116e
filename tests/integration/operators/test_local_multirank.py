"""LocalTrainingOperator running a real 2-rank gloo DDP job under torchrun (dag.test()), then reproducing it."""

from __future__ import annotations

import json
import sys
import textwrap
from datetime import timedelta
from pathlib import Path

import pendulum
import pytest

pytest.importorskip("torch")

from tests.helpers import xcom_value

REPO = Path(__file__).resolve().parents[3]
TRAIN_DDP = REPO / "examples" / "training" / "train_ddp.py"
DATE = "2026-11-01"


def _dag(dag_id: str, **operator_kwargs):
    from airflow.sdk import DAG

    from airflow_training_guard.operators.local import LocalTrainingOperator

    with DAG(dag_id=dag_id, schedule=None, start_date=pendulum.datetime(2026, 11, 1, tz="UTC")) as dag:
        LocalTrainingOperator(task_id="train", **operator_kwargs)
    return dag


def test_two_rank_ddp_job_killed_mid_run_resumes_and_reproduces_byte_identical(
    run_dag, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A rank lost mid-run (SIGKILL, node loss) restarted the whole DDP job from step 0."""
    marker = tmp_path / "killed-once"
    wrapper = tmp_path / "kill_rank1_once.py"
    wrapper.write_text(
        textwrap.dedent(
            f"""
            import os, runpy, signal, sys, threading, time
            from pathlib import Path
            rank = int(os.environ["RANK"])
            with open({str(tmp_path / "attempts.log")!r}, "a") as log:
                log.write(f"{{os.environ['TRAINING_GUARD_ATTEMPT']}} rank={{rank}}\\n")
            marker = Path({str(marker)!r})
            if rank == 1 and not marker.exists():
                # Rank 1 dies by SIGKILL once step 25 is done: no chance to save anything.
                from airflow_training_guard.runtime import read_heartbeat
                def watch():
                    path = Path(os.environ["TRAINING_GUARD_HEARTBEAT_FILE"]).with_name("heartbeat.rank-00001.json")
                    while True:
                        record = read_heartbeat(path)
                        if record and record.step >= 25:
                            marker.touch()
                            os.kill(os.getpid(), signal.SIGKILL)
                        time.sleep(0.005)
                threading.Thread(target=watch, daemon=True).start()
            sys.argv = [{str(TRAIN_DDP)!r}] + sys.argv[1:]
            runpy.run_path({str(TRAIN_DDP)!r}, run_name="__main__")
            """
        )
    )
    dag = _dag(
        "tg_local_ddp_kill",
        command=[sys.executable, str(wrapper), "--steps", "40", "--step-seconds", "0.02"],
        partition_key=DATE,
        nproc_per_node=2,
        expected_runtime="10m",  # two cores shared with other jobs: torch takes a while to import
        poll_interval="0.5s",
        checkpoint_root=str(tmp_path / "ckpt"),
        output_dir=str(tmp_path / "model"),
        checkpoint_every_steps=10,
        smoke_run_steps=0,
        retries=1,
        retry_delay=timedelta(seconds=0),
    )
    assert run_dag(dag, logical_date=pendulum.datetime(2026, 11, 2, tz="UTC")) == {"train": "success"}
    assert marker.exists(), "rank 1 was never killed: the test did not test a failure"
    attempts = (tmp_path / "attempts.log").read_text().split()
    assert attempts.count("1") == 2 and attempts.count("2") == 2, attempts  # two ranks, two attempts

    result = xcom_value("tg_local_ddp_kill", "train")
    assert result["resumed_from_step"] in (20, 30)  # the newest checkpoint before the kill, not step 0
    assert result["final_step"] == 40
    manifest = result["manifest"]
    assert "torch.distributed.run" in manifest["params"]["command"]
    assert manifest["params"]["nproc_per_node"] == 2
    assert set(manifest["artifacts"]) == {"model.safetensors"}
    ckpt_dir = Path(result["checkpoint_dir"])
    assert sorted(p.name for p in ckpt_dir.glob("heartbeat.rank-*.json")) == [
        "heartbeat.rank-00000.json",
        "heartbeat.rank-00001.json",
    ]

    # The same checkpoints cannot be resumed by a job of another world size: a clear error first.
    import torch

    from airflow_training_guard.exceptions import CheckpointError
    from airflow_training_guard.runtime.integrations.torch import TorchCheckpointer

    sys.path.insert(0, str(TRAIN_DDP.parent))
    from train_ddp import MLP

    with pytest.raises(CheckpointError, match=r"world size 2 .* this job has world size 1"):
        TorchCheckpointer(ckpt_dir).load(
            model=MLP(8, 64, 2), optimizer=torch.optim.Adam(MLP(8, 64, 2).parameters())
        )

    # A fault-free re-run from the manifest gives the same bytes: the resume lost nothing.
    from airflow_training_guard.cli.reproduce import reproduce

    report = reproduce(Path(result["manifest_path"]), work_dir=tmp_path / "reproduce", timeout=600)
    assert report.problems == []
    assert report.verdict == "identical", json.dumps(report.to_dict(), indent=2)
    assert report.files["model.safetensors"]["equal"] is True


def test_a_rank_reporting_bad_configuration_fails_the_task_without_retry(
    run_dag, tmp_path: Path, capfd
) -> None:
    """torchrun exits 1 for any failed rank; a rank's exit 78 (bad input) was retried three times."""
    program = tmp_path / "bad_config_on_rank1.py"
    program.write_text(
        textwrap.dedent(
            f"""
            import os, sys
            with open({str(tmp_path / "starts.log")!r}, "a") as log:
                log.write(os.environ["RANK"] + "\\n")
            sys.exit(78 if os.environ["RANK"] == "1" else 0)
            """
        )
    )
    dag = _dag(
        "tg_local_ddp_config_error",
        command=[sys.executable, str(program)],
        partition_key=DATE,
        nproc_per_node=2,
        expected_runtime="5m",
        poll_interval="0.5s",
        watch_heartbeat=False,
        checkpoint_root=str(tmp_path / "ckpt"),
        output_dir=str(tmp_path / "model"),
        smoke_run_steps=0,
        retries=2,
        retry_delay=timedelta(seconds=0),
    )
    assert run_dag(dag, logical_date=pendulum.datetime(2026, 11, 2, tz="UTC")) == {"train": "failed"}
    assert sorted((tmp_path / "starts.log").read_text().split()) == ["0", "1"]  # one attempt only
    assert "rank 1: exit code 78" in capfd.readouterr().out
