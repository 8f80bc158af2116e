"""LocalTrainingOperator: run a training program as a subprocess on the worker, guarded.

The embedded default launcher: no cluster needed. It applies the same policies as the Kubernetes
launcher (checkpoint location per partition, resume from the newest valid checkpoint, hard
deadline, stall detection, smoke run) and speaks the same environment contract
(:mod:`airflow_training_guard.runtime.contract`), so one training program runs under both.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import shutil
import sys
import tempfile
from collections.abc import Collection, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from airflow_training_guard import __version__, telemetry
from airflow_training_guard.exceptions import GuardConfigError
from airflow_training_guard.launchers.process import (
    CANCELLED_DETAIL,
    Outcome,
    ProcessSupervisor,
    SupervisionLimits,
    describe_returncode,
    torchrun_command,
)
from airflow_training_guard.manifest import (
    MANIFEST_FILE_NAME,
    RunManifest,
    file_sha256,
    model_artifact_digests,
    python_environment,
    utc_now_iso,
)
from airflow_training_guard.operators.common import (
    check_partition_key,
    parse_pins,
    read_metrics_file,
    resolve_partition_key,
    timeout_policy_for,
    verify_content_pins,
)
from airflow_training_guard.policies.checkpoints import CheckpointPolicy
from airflow_training_guard.policies.diagnostics import DEFAULT_NON_RETRYABLE_EXIT_CODES, failure_message
from airflow_training_guard.policies.durations import DurationLike, format_duration, parse_duration
from airflow_training_guard.policies.paths import path_segment
from airflow_training_guard.policies.profiles import GuardProfile, get_profile
from airflow_training_guard.policies.stragglers import StragglerPolicy, coerce_straggler_policy
from airflow_training_guard.runtime.checkpoint import Checkpoint, Checkpointer
from airflow_training_guard.runtime.contract import TrainingEnvironment
from airflow_training_guard.secrets import redact
from airflow_training_guard.settings import ENV_CHECKPOINT_ROOT, ENV_OUTPUT_ROOT, default_root, is_templated

if TYPE_CHECKING:
    from airflow.sdk import Context

# Stands in for the root at parse time; the worker's environment decides the real one in execute().
_PLACEHOLDER_ROOT = "/checkpoint-root"


class LocalTrainingOperator(BaseOperator):
    """Run a training command on the worker with checkpoint/resume, deadline and stall policies.

    The program receives the environment contract (``TRAINING_GUARD_PARTITION_KEY``,
    ``TRAINING_GUARD_CHECKPOINT_DIR``, ``TRAINING_GUARD_RESUME_FROM`` ...; see
    ``docs/checkpoint-contract.md``). Each attempt resumes from the newest checkpoint whose checksums
    verify. Exit code 75 means "preempted, checkpoint saved" and is retried; exit code 78 means "bad
    configuration" and fails without retry.

    :param command: argv list (or a shell-like string, split with :func:`shlex.split`). Templated.
    :param expected_runtime: how long the full job normally takes ("2h", "90m", seconds, timedelta).
    :param partition_key: the partition this task trains on. Templated. Default: the run's
        ``partition_key`` when the DAG run has one, else its ``ds``.
    :param profile: ``"safe"`` (default, reliability first) or ``"fast"``; see
        ``docs/timeouts-and-profiles.md``. Explicit parameters below override the profile.
    :param timeout_buffer: fraction added to ``expected_runtime`` for the hard deadline (default
        from the profile: 0.30).
    :param deadline: explicit hard deadline; must be >= expected_runtime * (1 + buffer).
    :param startup_timeout: time allowed until the program's first heartbeat. Default: 10 minutes,
        or ``expected_runtime`` when the job is shorter than that.
    :param stall_after: no heartbeat progress for this long kills the attempt (retryable).
    :param poll_interval: how often the heartbeat and the process are checked.
    :param termination_grace: time between SIGTERM and SIGKILL when the launcher stops the program.
    :param watch_heartbeat: False for programs that do not write heartbeats (disables stall and
        startup detection; the deadline still applies).
    :param checkpoint_root: absolute directory under which every checkpoint lives. Default:
        ``$TRAINING_GUARD_CHECKPOINT_ROOT`` or ``$AIRFLOW_HOME/training-guard/checkpoints``.
    :param checkpoint_path_template: layout under the root; must contain ``{partition_key}``.
    :param checkpoint_every_steps: how often the program is asked to save.
    :param checkpoint_keep_last: how many newest valid checkpoints the program keeps.
    :param on_corrupt_checkpoints: ``"fail"`` or ``"restart"`` when checkpoints exist but none
        verifies.
    :param smoke_run_steps: run the program this many steps on a small sample first (fresh starts
        only); 0 disables.
    :param output_dir: where the program writes its model. Templated. Default: under
        ``$TRAINING_GUARD_OUTPUT_ROOT`` keyed by DAG, task and partition_key.
    :param env: extra environment variables for the program. Templated.
    :param cwd: working directory of the program.
    :param non_retryable_exit_codes: exit codes that fail the task without retry (default 78 and
        2, the usual "bad command line" code).
    :param pins: dataset/model revisions resolved by ``PreflightOperator`` (templated, e.g.
        ``"{{ ti.xcom_pull(task_ids='preflight', key='pins') }}"``); passed to the program as
        ``TRAINING_GUARD_PINS`` and recorded in the run manifest.
    :param nproc_per_node: run the program as this many ranks with ``torchrun`` on the worker
        (CPU: the program uses the gloo backend); needs the ``torch`` extra. Each rank writes its
        own heartbeat; the job's progress is its slowest rank's. Default 1 (a plain subprocess).
    :param straggler_policy: for ``nproc_per_node > 1``: a
        :class:`~airflow_training_guard.policies.stragglers.StragglerPolicy` or its keyword
        arguments (``{"fraction": 0.5, "window": "2m", "action": "restart"}``); ``None`` disables.
    """

    template_fields: Sequence[str] = ("command", "partition_key", "output_dir", "env", "cwd", "pins")
    template_fields_renderers = {"env": "json", "command": "py"}
    ui_color = "#e8f4ea"

    def __init__(
        self,
        *,
        command: Sequence[str] | str,
        expected_runtime: DurationLike,
        partition_key: str | None = None,
        profile: str | GuardProfile = "safe",
        timeout_buffer: float | None = None,
        deadline: DurationLike | None = None,
        startup_timeout: DurationLike | None = None,
        stall_after: DurationLike | bool | None = True,
        poll_interval: DurationLike = "5s",
        termination_grace: DurationLike = "30s",
        watch_heartbeat: bool = True,
        checkpoint_root: str | None = None,
        checkpoint_path_template: str = "{dag_id}/{task_id}/{partition_key}",
        checkpoint_every_steps: int | None = None,
        checkpoint_keep_last: int | None = None,
        on_corrupt_checkpoints: str | None = None,
        smoke_run_steps: int | None = None,
        output_dir: str | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        non_retryable_exit_codes: Collection[int] = DEFAULT_NON_RETRYABLE_EXIT_CODES,
        pins: Mapping[str, Any] | str | None = None,
        nproc_per_node: int = 1,
        straggler_policy: StragglerPolicy | Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self.guard_profile = get_profile(profile)
        if "retries" not in kwargs:
            kwargs["retries"] = self.guard_profile.retries
        super().__init__(**kwargs)
        if isinstance(command, str):
            command = shlex.split(command)
        if not command or not all(isinstance(part, str) for part in command):
            raise GuardConfigError(
                f"command {command!r} must be a non-empty list of strings, e.g. "
                "['python', 'train.py', '--epochs', '3']"
            )
        self.command = list(command)
        if not is_templated(self.command[0]):
            self._resolve_executable(self.command[0])
        if partition_key is not None and not (isinstance(partition_key, str) and is_templated(partition_key)):
            check_partition_key(partition_key, task_id=self.task_id)  # templated: after rendering
        self.partition_key = partition_key

        self.timeout_policy = timeout_policy_for(
            self.guard_profile,
            expected_runtime=expected_runtime,
            timeout_buffer=timeout_buffer,
            deadline=deadline,
            startup_timeout=startup_timeout,
            stall_after=stall_after,
            poll_interval=poll_interval,
        )
        self.termination_grace = parse_duration(termination_grace, name="termination_grace")
        self.watch_heartbeat = watch_heartbeat
        # Airflow's own timeout is the safety net behind ours: our deadline kills the process
        # group cleanly first; Airflow's fires only if the launcher itself hangs.
        safety_net = self.timeout_policy.hard_deadline + self.termination_grace + timedelta(minutes=2)
        if self.execution_timeout is None:
            self.execution_timeout = safety_net
        elif self.execution_timeout < self.timeout_policy.hard_deadline:
            raise GuardConfigError(
                f"execution_timeout {format_duration(self.execution_timeout)} is shorter than the hard "
                f"deadline {format_duration(self.timeout_policy.hard_deadline)} of task {self.task_id!r}; "
                "drop execution_timeout (the launcher sets it) or set it >= "
                f"{format_duration(safety_net)}"
            )

        self.checkpoint_root = checkpoint_root
        every = checkpoint_every_steps or self.guard_profile.checkpoint_every_steps
        keep = checkpoint_keep_last or self.guard_profile.checkpoint_keep_last
        # Build the policy now so a bad template, root or count fails when the DAG is parsed;
        # the real root may come from the worker's environment, so it is resolved in execute().
        self.checkpoint_policy = CheckpointPolicy(
            root=checkpoint_root or _PLACEHOLDER_ROOT,
            path_template=checkpoint_path_template,
            keep_last=keep,
            every_steps=every,
        )
        self.on_corrupt_checkpoints = on_corrupt_checkpoints or self.guard_profile.on_corrupt_checkpoints
        if self.on_corrupt_checkpoints not in {"fail", "restart"}:
            raise GuardConfigError(
                f"on_corrupt_checkpoints {self.on_corrupt_checkpoints!r} is not valid; use 'fail' "
                "(stop and let a person look) or 'restart' (start from step 0)"
            )
        self.smoke_run_steps = (
            self.guard_profile.smoke_run_steps if smoke_run_steps is None else smoke_run_steps
        )
        if self.smoke_run_steps < 0:
            raise GuardConfigError(
                f"smoke_run_steps {self.smoke_run_steps} is negative; use 0 to disable the smoke run"
            )
        self.output_dir = output_dir
        self.env = dict(env or {})
        self.cwd = cwd
        self.non_retryable_exit_codes = frozenset(non_retryable_exit_codes)
        self.pins = pins
        if isinstance(nproc_per_node, bool) or not isinstance(nproc_per_node, int) or nproc_per_node < 1:
            raise GuardConfigError(
                f"nproc_per_node {nproc_per_node!r} of task {self.task_id!r} is invalid: use an integer >= 1 "
                "(the number of ranks torchrun starts on the worker; 1 runs a plain subprocess)"
            )
        self.nproc_per_node = nproc_per_node
        self.straggler_policy = coerce_straggler_policy(straggler_policy, task_id=self.task_id)
        if self.straggler_policy is not None:
            if nproc_per_node == 1:
                raise GuardConfigError(
                    f"straggler_policy of task {self.task_id!r} needs nproc_per_node > 1: a one-rank job has "
                    "no peers to compare with"
                )
            if self.straggler_policy.avoid_node:
                raise GuardConfigError(
                    f"straggler_policy avoid_node=True of task {self.task_id!r} cannot work here: "
                    "LocalTrainingOperator runs every rank on one worker; drop avoid_node, or use the "
                    "multi-node Kubernetes launcher"
                )
            if not watch_heartbeat:
                raise GuardConfigError(
                    f"straggler_policy of task {self.task_id!r} needs watch_heartbeat=True: stragglers "
                    "are found from the ranks' heartbeats"
                )
        self._supervisor: ProcessSupervisor | None = None

    # -- Airflow entry points -------------------------------------------------------------------

    def execute(self, context: Context) -> dict[str, Any]:
        try:
            executable = self._resolve_executable(self.command[0])
        except GuardConfigError as err:  # the same worker will not grow the program on a retry
            raise AirflowFailException(str(err)) from err
        command = [executable, *self.command[1:]]
        if self.nproc_per_node > 1:
            if importlib.util.find_spec("torch") is None:
                raise AirflowFailException(
                    f"task {self.task_id!r} runs {self.nproc_per_node} ranks with torchrun, but torch is not "
                    "installed on this worker; install airflow-training-guard[torch]"
                )
            command = torchrun_command(command, self.nproc_per_node, python=sys.executable)
        partition_key = resolve_partition_key(self.partition_key, context, task_id=self.task_id)
        policy = self._effective_checkpoint_policy()
        checkpoint_dir = Path(
            policy.checkpoint_dir(dag_id=self.dag_id, task_id=self.task_id, partition_key=partition_key)
        )
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
        output_dir = Path(self.output_dir) if self.output_dir else self._default_output_dir(partition_key)
        output_dir.mkdir(parents=True, exist_ok=True)
        attempt = int(getattr(context.get("ti"), "try_number", 1) or 1)

        checkpointer = Checkpointer(checkpoint_dir, keep_last=policy.keep_last, logger=self.log)
        scan = checkpointer.scan()
        for path, reason in scan.corrupt:
            self.log.warning("skipping corrupt checkpoint %s: %s", path, reason)
        resume = scan.newest_valid
        if resume is None and scan.corrupt:
            if self.on_corrupt_checkpoints == "fail":
                raise AirflowFailException(
                    f"all {len(scan.corrupt)} checkpoint(s) in {checkpoint_dir} are corrupt "
                    f"({scan.corrupt[0][1]}); resuming would lose their progress silently. "
                    f"Inspect them, then delete them (rm -r {checkpoint_dir}/step-*) to start over, "
                    "or set on_corrupt_checkpoints='restart'"
                )
            self.log.warning("no valid checkpoint in %s: restarting from step 0", checkpoint_dir)

        pins = parse_pins(self.pins, task_id=self.task_id)
        for line in verify_content_pins(pins, task_id=self.task_id):
            self.log.info("data pin verified: %s", line)
        heartbeat_file = checkpoint_dir / "heartbeat.json"
        heartbeat_file.unlink(missing_ok=True)
        for stale in checkpoint_dir.glob("heartbeat.rank-*.json"):
            # A previous attempt's rank files would look like progress (or a straggler) to this one.
            stale.unlink(missing_ok=True)
        training_env = TrainingEnvironment(
            partition_key=partition_key,
            checkpoint_dir=checkpoint_dir,
            checkpoint_every=policy.every_steps,
            checkpoint_keep=policy.keep_last,
            resume_from=resume.path if resume else None,
            resume_step=resume.step if resume else 0,
            heartbeat_file=heartbeat_file,
            output_dir=output_dir,
            attempt=attempt,
            pins=pins,
        )
        self._log_effective_configuration(command, training_env)

        if self.smoke_run_steps and resume is None:
            self._smoke_run(command, training_env)

        telemetry.checkpoint_resumed(self, resume)
        outcome = self._supervise(command, training_env, self._limits(self.timeout_policy.hard_deadline))
        diagnosis = outcome.diagnosis
        telemetry.attempt_ended(
            self,
            diagnosis.kind.value if diagnosis else None,
            exit_code=diagnosis.exit_code if diagnosis else None,
        )
        telemetry.stragglers_reported(self, outcome.stragglers, self.straggler_policy)
        # Verified once per attempt: the metric and the manifest share it.
        newest = checkpointer.latest()
        telemetry.checkpoint_saved(self, newest, since_step=training_env.resume_step)
        self._raise_for(outcome, training_env)
        manifest = self._write_manifest(context, command, training_env, outcome, newest)
        final_step = outcome.last_heartbeat.step if outcome.last_heartbeat else None
        self.log.info(
            "training finished in %s: partition_key=%s final_step=%s resumed_from_step=%s",
            format_duration(timedelta(seconds=round(outcome.duration))),
            partition_key,
            final_step,
            training_env.resume_step,
        )
        # XCom is stored as returned, unmasked: what came from rendered fields goes through redact.
        xcom = {
            "partition_key": partition_key,
            "checkpoint_dir": str(checkpoint_dir),
            "output_dir": str(output_dir),
            "resumed_from_step": training_env.resume_step,
            "final_step": final_step,
            "metrics": dict(outcome.last_heartbeat.metrics) if outcome.last_heartbeat else {},
            "attempt": attempt,
            "duration_seconds": round(outcome.duration, 3),
            "manifest_path": str(Path(manifest.artifact_uri or output_dir) / MANIFEST_FILE_NAME),
            "manifest": manifest.to_dict(),
            "stragglers": [report.to_dict() for report in outcome.stragglers],
        }
        return redact(xcom)

    def _write_manifest(
        self,
        context: Context,
        command: list[str],
        training_env: TrainingEnvironment,
        outcome: Outcome,
        newest: Checkpoint | None,
    ) -> RunManifest:
        """Record what this run used next to its model (docs/run-manifest.md).

        Metrics are the last heartbeat's, overlaid with the numbers of a ``metrics.json`` the
        program wrote into its output directory (the example program writes one).
        """
        output_dir = training_env.output_dir or Path(".")
        metrics = dict(outcome.last_heartbeat.metrics) if outcome.last_heartbeat else {}
        metrics.update(read_metrics_file(output_dir, self.log))
        checkpoints = tuple(
            dict.fromkeys(str(p) for p in (training_env.resume_from, newest.path if newest else None) if p)
        )
        dag_file = getattr(self.dag, "fileloc", None) if self.has_dag() else None  # type: ignore[no-untyped-call]
        manifest = RunManifest(
            dag_id=self.dag_id,
            run_id=str(context.get("run_id") or ""),
            task_id=self.task_id,
            partition_key=training_env.partition_key,
            image_digest=None,
            datasets=dict(training_env.pins.get("datasets", {})),
            models=dict(training_env.pins.get("models", {})),
            params={
                "command": command,
                # What `airflow training-guard runs reproduce` needs to re-run the same program.
                "command_files": _command_file_digests(command, self.cwd),
                "cwd": self.cwd,
                "nproc_per_node": self.nproc_per_node,
                "checkpoint_every_steps": training_env.checkpoint_every,
            },
            code={
                "package_version": __version__,
                "dag_file_sha256": file_sha256(dag_file) if dag_file and Path(dag_file).is_file() else "",
            },
            python_env=python_environment(),
            checkpoints=checkpoints,
            artifact_uri=str(output_dir),
            metrics=metrics,
            created_at=utc_now_iso(),
            artifacts=model_artifact_digests(output_dir),
        )
        if not manifest.is_complete:
            self.log.warning("run manifest is incomplete: missing %s", ", ".join(manifest.missing_fields()))
        path = manifest.write(output_dir)
        self.log.info("run manifest written to %s", path)
        return manifest

    def on_kill(self) -> None:
        if self._supervisor is not None:
            self.log.warning("task killed: terminating the training process group")
            self._supervisor.terminate()

    # -- helpers --------------------------------------------------------------------------------

    def _resolve_executable(self, name: str) -> str:
        found = shutil.which(name, path=os.environ.get("PATH")) if os.sep not in name else name
        if found is None or not os.access(found, os.X_OK) or os.path.isdir(found):
            raise GuardConfigError(
                f"command {name!r} of task {self.task_id!r} does not exist or is not executable on "
                f"this worker (PATH={os.environ.get('PATH', '')}); use an absolute path or install it"
            )
        return found

    def _effective_checkpoint_policy(self) -> CheckpointPolicy:
        root = self.checkpoint_root or default_root(ENV_CHECKPOINT_ROOT, "checkpoints")
        return CheckpointPolicy(
            root=root,
            path_template=self.checkpoint_policy.path_template,
            keep_last=self.checkpoint_policy.keep_last,
            every_steps=self.checkpoint_policy.every_steps,
        )

    def _default_output_dir(self, partition_key: str) -> Path:
        root = Path(default_root(ENV_OUTPUT_ROOT, "models"))
        return root / path_segment(self.dag_id) / path_segment(self.task_id) / path_segment(partition_key)

    def _limits(self, deadline: timedelta) -> SupervisionLimits:
        policy = self.timeout_policy
        return SupervisionLimits(
            deadline=deadline.total_seconds(),
            startup_timeout=policy.startup_timeout.total_seconds(),
            stall_after=policy.stall_after.total_seconds() if policy.stall_after else None,
            poll_interval=policy.poll_interval.total_seconds(),
            termination_grace=self.termination_grace.total_seconds(),
            watch_heartbeat=self.watch_heartbeat,
            straggler=self.straggler_policy,
        )

    def _child_env(self, training_env: TrainingEnvironment) -> dict[str, str]:
        env = dict(os.environ)
        env.update({str(k): str(v) for k, v in self.env.items()})
        env.update(training_env.to_env())
        env.setdefault("PYTHONUNBUFFERED", "1")  # live logs, not a burst at exit
        return env

    def _supervise(
        self, command: list[str], training_env: TrainingEnvironment, limits: SupervisionLimits
    ) -> Outcome:
        self._supervisor = ProcessSupervisor(
            command=command,
            env=self._child_env(training_env),
            limits=limits,
            heartbeat_file=training_env.heartbeat_file if self.watch_heartbeat else None,
            cwd=self.cwd,
            # Redacted here, not only by the log masker: Airflow 3.3's LocalExecutor also copies task
            # logs to the scheduler's stdout through a masker that never learns run-time secrets.
            on_line=lambda line: self.log.info("[train] %s", redact(line)),
            multi_rank=self.nproc_per_node > 1,
            non_retryable_exit_codes=self.non_retryable_exit_codes,
        )
        try:
            return self._supervisor.run()
        finally:
            self._supervisor = None

    def _smoke_run(self, command: list[str], training_env: TrainingEnvironment) -> None:
        """Run a few steps on a small sample first; a broken program fails in seconds, not hours."""
        with tempfile.TemporaryDirectory(prefix="training-guard-smoke-") as scratch:
            smoke_env = TrainingEnvironment(
                partition_key=training_env.partition_key,
                checkpoint_dir=Path(scratch) / "checkpoints",
                checkpoint_every=max(1, self.smoke_run_steps // 2),
                checkpoint_keep=1,
                heartbeat_file=Path(scratch) / "heartbeat.json",
                output_dir=Path(scratch) / "output",
                smoke_steps=self.smoke_run_steps,
                attempt=training_env.attempt,
            )
            smoke_env.checkpoint_dir.mkdir()
            smoke_env.output_dir.mkdir()  # type: ignore[union-attr]
            self.log.info("smoke run: %d steps on a sample before the full job", self.smoke_run_steps)
            limits = self._limits(
                min(self.timeout_policy.startup_timeout * 2, self.timeout_policy.hard_deadline)
            )
            outcome = self._supervise(command, smoke_env, limits)
        if not outcome.succeeded:
            raise AirflowFailException(
                "smoke run failed, so the full job was not started: "
                + self._failure_message(outcome, smoke_env)
            )
        self.log.info("smoke run passed in %.1fs", outcome.duration)

    def _raise_for(self, outcome: Outcome, training_env: TrainingEnvironment) -> None:
        """Fail the attempt as its diagnosis says: retryable failures raise AirflowException."""
        if outcome.succeeded:
            return
        message = self._failure_message(outcome, training_env)
        if outcome.retryable or outcome.cancelled:
            raise AirflowException(message)
        raise AirflowFailException(message)

    def _failure_message(self, outcome: Outcome, training_env: TrainingEnvironment) -> str:
        """The message the pod launcher writes too (``failure_message``), for a local process."""
        subject = f"training for partition_key={training_env.partition_key!r}"
        if outcome.diagnosis is None:  # cancelled: Airflow is stopping the task, no diagnosis to give
            return f"{subject} was cancelled after {outcome.duration:.1f}s: {CANCELLED_DETAIL}"
        ended = describe_returncode(outcome.returncode) if outcome.returncode is not None else "not started"
        step = outcome.last_heartbeat.step if outcome.last_heartbeat else "none"
        message = failure_message(
            outcome.diagnosis,
            subject=subject,
            facts=(f"process: {ended} after {outcome.duration:.1f}s; last heartbeat step: {step}",),
            last_log_lines=[redact(line) for line in outcome.last_lines],
        )
        return redact(message)

    def _log_effective_configuration(self, command: list[str], training_env: TrainingEnvironment) -> None:
        config = {
            "command": command,
            "profile": self.guard_profile.name,
            "partition_key": training_env.partition_key,
            "checkpoint_dir": str(training_env.checkpoint_dir),
            "resume_from": str(training_env.resume_from) if training_env.resume_from else None,
            "resume_step": training_env.resume_step,
            "checkpoint_every_steps": training_env.checkpoint_every,
            "checkpoint_keep_last": training_env.checkpoint_keep,
            "output_dir": str(training_env.output_dir),
            "smoke_run_steps": self.smoke_run_steps,
            "watch_heartbeat": self.watch_heartbeat,
            "nproc_per_node": self.nproc_per_node,
            "straggler_policy": self.straggler_policy.describe() if self.straggler_policy else None,
            "attempt": training_env.attempt,
            "timeouts": self.timeout_policy.describe(),
        }
        self.log.info("effective configuration: %s", json.dumps(redact(config), sort_keys=True))

    # -- OpenLineage (docs/lineage.md): called by the provider's listener when it is installed ----------

    def get_openlineage_facets_on_start(self) -> Any:
        from airflow_training_guard.lineage import training_lineage

        return training_lineage(None, pins=parse_pins(self.pins, task_id=self.task_id))

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """The pins in, the model artifact out, from the run manifest; on failure the pins only."""
        from airflow_training_guard.lineage import run_manifest_at, training_lineage

        output_dir = self.output_dir or self._default_output_dir(
            resolve_partition_key(
                self.partition_key, task_instance.get_template_context(), task_id=self.task_id
            )
        )
        manifest = run_manifest_at(output_dir, task_instance)
        return training_lineage(manifest, pins=parse_pins(self.pins, task_id=self.task_id))


def _command_file_digests(command: Sequence[str], cwd: str | None) -> dict[str, str]:
    """sha256 of the program files the command names (``train.py``), so a changed program is named."""
    digests: dict[str, str] = {}
    for part in command[1:]:
        path = Path(part) if os.path.isabs(part) else Path(cwd or os.getcwd()) / part
        if path.suffix in {".py", ".sh"} and path.is_file():
            digests[part] = "sha256:" + file_sha256(path)
    return digests
