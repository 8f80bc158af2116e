"""A small training program the runtime tests run as a real subprocess (and kill).

Usage: ``python training_program.py MODE`` with the training-guard environment variables set
(``TrainingEnvironment.from_env()``) plus ``TEST_READY_FILE``: the program creates that file once
it reached the state the test wants to interrupt, so the test signals it at a known moment instead
of after a guessed sleep.

Modes:

- ``hang-in-save``: saves steps 10 and 20, then starts saving step 30 with a writer that writes one
  file completely and a second, large one slowly, forever. The test SIGKILLs it mid-write.
- ``save-loop``: saves step 1, 2, 3 ... as fast as it can (two 256 KiB files each) and prints each
  step once its save returned. The test SIGKILLs it at arbitrary moments.
- ``replace-loop``: saves step 1 again and again (the periodic and the SIGTERM save of one step),
  prints each completed save, and creates the ready file after the third. The test SIGKILLs it at
  arbitrary moments: with ``keep_last=1`` a kill inside a replace must never lose step 1.
- ``train``: a training loop under PreemptionGuard that resumes from the newest valid checkpoint,
  writes a heartbeat every step, checkpoints every ``TRAINING_GUARD_CHECKPOINT_EVERY`` steps, and
  on SIGTERM saves and exits 75. The "weights" are the step count, so a test can check that a
  resumed run continued from the checkpoint, not from step 0. ``TEST_TOTAL_STEPS`` sets the length.
- ``wait-in-guard``: enters PreemptionGuard and waits in one endless "step" (for the double Ctrl-C).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from airflow_training_guard.runtime import (
    Checkpointer,
    Heartbeat,
    PreemptionGuard,
    TrainingEnvironment,
    exit_preempted,
)


def ready() -> None:
    Path(os.environ["TEST_READY_FILE"]).touch()


def hang_in_save(env: TrainingEnvironment) -> int:
    checkpointer = Checkpointer(env.checkpoint_dir, keep_last=env.checkpoint_keep)
    for step in (10, 20):
        checkpointer.save(step, {"weights.bin": bytes([step]) * 100_000}, metadata={"loss": 1.0 / step})

    def slow_writer(directory: Path) -> None:
        (directory / "weights.bin").write_bytes(b"\x1e" * 100_000)
        with open(directory / "optimizer.bin", "wb") as handle:
            handle.write(b"\x00" * 1_000_000)
            handle.flush()
            ready()
            while True:  # a huge file that takes longer than the grace period to write
                handle.write(b"\x00" * 65_536)
                handle.flush()
                time.sleep(0.01)

    checkpointer.save(30, slow_writer)
    return 0


def save_loop(env: TrainingEnvironment) -> int:
    checkpointer = Checkpointer(env.checkpoint_dir, keep_last=env.checkpoint_keep)
    step = 0
    while True:
        step += 1
        payload = step.to_bytes(8, "big") * 32_768  # 256 KiB
        checkpointer.save(step, {"model/weights.bin": payload, "optimizer.bin": payload[::-1]})
        print(step, flush=True)
        if step == 3:
            ready()


def replace_loop(env: TrainingEnvironment) -> int:
    checkpointer = Checkpointer(env.checkpoint_dir, keep_last=env.checkpoint_keep)
    version = 0
    while True:
        version += 1
        payload = version.to_bytes(8, "big") * 32_768  # 256 KiB
        checkpointer.save(1, {"model/weights.bin": payload}, metadata={"version": version})
        print(version, flush=True)
        if version == 3:
            ready()


def train(env: TrainingEnvironment) -> int:
    total = int(os.environ.get("TEST_TOTAL_STEPS", "1000000"))
    checkpointer = Checkpointer(env.checkpoint_dir, keep_last=env.checkpoint_keep)
    heartbeat = Heartbeat(env.heartbeat_file)
    start = 0
    latest = checkpointer.latest()
    if latest is not None:
        start = json.loads(latest.read_bytes("state.json"))["steps_done"]
        print(f"resumed from step {latest.step}", flush=True)
    heartbeat.beat(start, force=True)

    def state(step: int) -> dict[str, bytes]:
        return {"state.json": json.dumps({"steps_done": step}).encode()}

    with PreemptionGuard() as preemption:
        for step in range(start + 1, total + 1):
            time.sleep(0.01)  # the "work" of one step
            heartbeat.beat(step, {"loss": 1.0 / step})
            if step % env.checkpoint_every == 0 or step == total:
                checkpointer.save(step, state(step), metadata={"reason": "periodic"})
            if step == start + 3:
                ready()
            if preemption.requested:
                checkpointer.save(step, state(step), metadata={"reason": "preempted"})
                exit_preempted(f"preempted at step {step}: checkpoint saved")
    print(f"done at step {total}", flush=True)
    return 0


def wait_in_guard() -> int:
    with PreemptionGuard():
        ready()
        while True:
            time.sleep(0.05)


def main() -> int:
    mode = sys.argv[1]
    if mode == "wait-in-guard":
        return wait_in_guard()
    env = TrainingEnvironment.from_env()
    modes = {
        "hang-in-save": hang_in_save,
        "save-loop": save_loop,
        "replace-loop": replace_loop,
        "train": train,
    }
    return modes[mode](env)


if __name__ == "__main__":
    sys.exit(main())
