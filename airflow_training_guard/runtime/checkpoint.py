"""Atomic, checksummed checkpoints that a preempted or crashed training job can always resume from.

The failure this module prevents: a job is killed (preemption, OOM, node loss) while it writes a
checkpoint, the half-written checkpoint looks like the newest one, and the retry either crashes
on it or silently restarts from step 0. Here a checkpoint only becomes visible once it is complete:

- every file is written into a temporary directory ``<dir>/.tmp-new-step-...`` and fsynced;
- ``MANIFEST.json`` (step, sha256 of every file, metadata, time, format version) is written last,
  and begins with the sha256 of the rest of itself, so no byte a resume reads goes unverified;
- the temporary directory is renamed to ``<dir>/step-<12 digits>`` in one ``rename(2)``, and the
  parent directory is fsynced so the rename survives a power loss (the package's one publish
  helper, :func:`~airflow_training_guard.runtime.publish.publish_dir`).

Saving a step that already exists never moves the old checkpoint away first: the new one is
renamed into place under a new revision name (``step-<12 digits>.r<n>``), which readers prefer,
and only then is the old one deleted. A kill -9 at any instant therefore leaves the old checkpoint,
the new one, or both, and never neither (issue 13: with ``keep_last=1`` a kill between the two
renames of the former move-aside-then-rename replace resumed the retry from step 0).

Readers (:meth:`Checkpointer.latest`, :meth:`Checkpointer.scan`) recompute every checksum, so a
checkpoint that was damaged later (a flipped byte, a missing file, a truncated copy) is reported
and skipped instead of being loaded. The on-disk format is described in
``docs/checkpoint-contract.md``.

This module is imported inside training containers: standard library only, no Airflow.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import re
import secrets
import shutil
import socket
import stat
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from airflow_training_guard.exceptions import CheckpointError
from airflow_training_guard.runtime.publish import fsync_dir, fsync_file, publish_dir

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_FORMAT_VERSION",
    "Checkpoint",
    "CheckpointScan",
    "Checkpointer",
    "UnknownCheckpointFileError",
    "encode_manifest",
]

#: Written into every manifest so a stray ``MANIFEST.json`` from another tool is never mistaken for ours.
CHECKPOINT_FORMAT = "airflow-training-guard-checkpoint"
#: The manifest layout this runtime writes. Version 2 added ``manifest_sha256``. Readers load
#: versions 1 and 2 (version 1 has no manifest checksum: its files are verified, its metadata cannot
#: be; see docs/checkpoint-contract.md) and refuse versions they do not know.
CHECKPOINT_FORMAT_VERSION = 2
_LEGACY_FORMAT_VERSION = 1

# Only names of this exact form are checkpoints; everything else in the directory is ignored
# (the heartbeat file, temporary directories, files a user left there). The optional ".r<n>" is the
# revision of a step that was saved again: the highest revision of a step is its checkpoint.
_STEP_DIR_RE = re.compile(r"^step-([0-9]+)(?:\.r([0-9]+))?$")
_TEMP_PREFIX = ".tmp-"
# Temporary directories record who made them: kind (new = a save in progress, del = a checkpoint
# being deleted; old = a checkpoint that format version 1 runtimes moved aside while replacing the
# same step, still recognised so such a leftover is restored), step, writer pid,
# a random token and the writer's host name. prune() uses pid and host to tell a live writer's
# directory from a dead one's without guessing from ages alone.
_TEMP_RE = re.compile(r"^\.tmp-(new|old|del)-step-([0-9]+)-([0-9]+)-([0-9a-f]{8})-(.+)$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
# MANIFEST.json (version 2) starts with exactly these bytes, the 64 hex digits of the sha256 of
# everything after the checksum line, and _CHECKSUM_END.
_CHECKSUM_START = b'{\n  "manifest_sha256": "'
_CHECKSUM_END = b'",\n'

# Temporary directories of saves that are running in this process right now, across every
# Checkpointer instance, so a prune() in one thread never removes another thread's save.
_IN_FLIGHT: set[Path] = set()
_IN_FLIGHT_LOCK = threading.Lock()


class UnknownCheckpointFileError(CheckpointError, KeyError):
    """A file name was asked for that the checkpoint's manifest does not list.

    It is a :class:`KeyError` too, so ``except KeyError`` around mapping-style lookups keeps working.
    """

    def __str__(self) -> str:
        # KeyError.__str__ quotes its argument as a repr; this message is a sentence.
        return str(self.args[0]) if self.args else ""


class LoggerLike(Protocol):
    """What the checkpointer needs of a logger: a stdlib logger or Airflow's task logger."""

    def info(self, msg: str, /, *args: Any) -> Any: ...

    def warning(self, msg: str, /, *args: Any) -> Any: ...


@dataclass(frozen=True)
class Checkpoint:
    """One complete checkpoint whose checksums verified when it was found.

    :param step: training step the checkpoint was saved at.
    :param path: the step directory, e.g. ``<dir>/step-000000000120`` (``...120.r1`` when the step
        was saved again).
    :param files: relative file name (``/``-separated) -> sha256 hex digest, from the manifest.
    :param metadata: the JSON metadata given to :meth:`Checkpointer.save`.
    :param created_at: unix time the manifest was written.
    :param format_version: the manifest's format version; 1 means its metadata was not verified
        (version 1 manifests carry no checksum of their own).
    """

    step: int
    path: Path
    files: Mapping[str, str]
    metadata: Mapping[str, Any]
    created_at: float
    format_version: int = CHECKPOINT_FORMAT_VERSION

    def file(self, name: str) -> Path:
        """Path of the file ``name`` inside this checkpoint.

        Raises :class:`UnknownCheckpointFileError` (a :class:`KeyError`) naming the file and
        listing what the checkpoint holds when ``name`` is not in the manifest: loading a file
        that was never checksummed would defeat the verification.
        """
        key = name if name in self.files else _canonical_name_or_none(name)
        if key is None or key not in self.files:
            held = ", ".join(sorted(self.files)) or "no files"
            raise UnknownCheckpointFileError(
                f"file {name!r} is not in checkpoint step {self.step} ({self.path}); it holds: {held}. "
                "Use one of those names, or save the file with Checkpointer.save() first"
            )
        return self.path.joinpath(*PurePosixPath(key).parts)

    def read_bytes(self, name: str) -> bytes:
        """Contents of the file ``name``, checked against its sha256 from the manifest.

        The checksum is verified again on read because the file may have been damaged after the
        checkpoint was scanned; loading silently damaged weights is the failure this module exists
        to prevent. Raises :class:`CheckpointError` on a mismatch or a missing file.
        """
        path = self.file(name)
        key = name if name in self.files else _canonical_name_or_none(name)
        assert key is not None  # file() raised otherwise
        try:
            data = path.read_bytes()
        except OSError as err:
            raise CheckpointError(
                f"cannot read file {key!r} of checkpoint step {self.step} ({path}): {err}. The checkpoint "
                "changed after it was verified; call Checkpointer.latest() again to pick a valid one"
            ) from err
        digest = hashlib.sha256(data).hexdigest()
        if digest != self.files[key]:
            raise CheckpointError(
                f"file {key!r} of checkpoint step {self.step} ({path}) has sha256 {digest} but its "
                f"manifest says {self.files[key]}: it was damaged after the checkpoint was verified. "
                "Call Checkpointer.latest() again to pick a valid one"
            )
        return data


@dataclass(frozen=True)
class CheckpointScan:
    """Every checkpoint in a directory, verified.

    :param valid: checkpoints whose manifest and checksums verify, newest (highest step) first.
    :param corrupt: ``(step directory, reason)`` of every checkpoint that does not, newest first.
    """

    valid: list[Checkpoint]
    corrupt: list[tuple[Path, str]]

    @property
    def newest_valid(self) -> Checkpoint | None:
        """The checkpoint to resume from, or ``None`` when there is no valid one."""
        return self.valid[0] if self.valid else None


class Checkpointer:
    """Saves, finds and prunes checkpoints in one directory.

    One directory belongs to one training job (one dag, task and partition); two processes must not
    save into the same directory at the same time. Reading (:meth:`scan`, :meth:`latest`) is safe
    from any number of processes while a save runs, because a save only becomes visible by a rename.

    :param checkpoint_dir: directory of the checkpoints; created by the first :meth:`save`.
    :param keep_last: how many newest valid checkpoints :meth:`prune` keeps (>= 1).
    :param logger: where skipped corrupt checkpoints and pruning are reported.
    """

    MANIFEST = "MANIFEST.json"
    #: A temporary directory whose writer cannot be checked (another host, or a name this version
    #: did not write) is removed only when it is older than this many seconds. A save is expected
    #: to take far less; a live writer on another host must not lose its half-written checkpoint.
    STALE_TEMP_AFTER: float = 3600.0

    def __init__(
        self,
        checkpoint_dir: str | os.PathLike[str],
        *,
        keep_last: int = 3,
        logger: LoggerLike | None = None,
    ) -> None:
        if isinstance(keep_last, bool) or not isinstance(keep_last, int) or keep_last < 1:
            raise ValueError(
                f"keep_last={keep_last!r} is invalid: keep at least 1 checkpoint (an integer >= 1), "
                "or the job could not resume after a preemption"
            )
        self.checkpoint_dir = Path(os.fspath(checkpoint_dir))
        self.keep_last = keep_last
        self.log: LoggerLike = logger if logger is not None else logging.getLogger(__name__)

    def __repr__(self) -> str:
        return f"Checkpointer({str(self.checkpoint_dir)!r}, keep_last={self.keep_last})"

    def step_path(self, step: int, revision: int = 0) -> Path:
        """The directory of ``step``'s checkpoint: ``step-<12 digits>``, then ``.r<revision>`` when
        the step was saved again (revision 1, 2, ...)."""
        name = f"step-{_validate_step(step):012d}"
        return self.checkpoint_dir / (f"{name}.r{revision}" if revision else name)

    # --- saving --------------------------------------------------------------------------------------

    def save(
        self,
        step: int,
        files: Mapping[str, bytes] | Callable[[Path], None],
        *,
        metadata: Mapping[str, Any] | None = None,
    ) -> Checkpoint:
        """Save a checkpoint of ``step`` atomically, then :meth:`prune` old ones.

        :param step: training step, an integer >= 0. Saving a step that exists replaces it: the new
            checkpoint appears under the next revision name, then the old one is pruned.
        :param files: either ``{relative name: bytes}``, or a callable that writes the files into
            the (temporary) directory it is given, e.g. ``lambda d: torch.save(state, d / "model.pt")``.
            Names are relative and ``/``-separated; ``..``, absolute paths and ``MANIFEST.json`` at
            the top level are refused.
        :param metadata: JSON-serializable data stored in the manifest (loss, data position, ...).
        :returns: the saved checkpoint, equal to what :meth:`latest` returns for it.

        Either the whole checkpoint becomes visible or none of it: a process killed at any moment
        leaves at most a ``.tmp-*`` directory, which readers ignore and a later prune removes.
        """
        step = _validate_step(step)
        # Validate everything before touching the disk, so bad input leaves no trace.
        metadata_dict = dict(metadata) if metadata is not None else {}
        try:
            metadata_json = json.dumps(metadata_dict, sort_keys=True)
        except (TypeError, ValueError) as err:
            raise ValueError(
                f"metadata of checkpoint step {step} is not JSON-serializable ({err}); pass only "
                "str, int, float, bool, None, lists and dicts with string keys"
            ) from None
        writer: Callable[[Path], None] | None = None
        contents: dict[str, bytes] = {}
        if callable(files) and not isinstance(files, Mapping):
            writer = files
        elif isinstance(files, Mapping):
            contents = _validate_contents(files)
        else:
            raise TypeError(
                f"files={files!r} is neither a mapping of name -> bytes nor a callable that writes "
                "into the directory it is given"
            )

        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        temp = self.checkpoint_dir / _temp_name("new", step)
        revisions = [revision for entry_step, revision, _ in self._step_entries() if entry_step == step]
        target = self.step_path(step, max(revisions) + 1 if revisions else 0)
        with _claimed(temp):
            try:
                temp.mkdir()
                if writer is None:
                    digests = _write_contents(temp, contents)
                else:
                    writer(temp)
                    digests = _hash_and_sync_tree(temp, self.MANIFEST)
                created_at = time.time()
                manifest = {
                    "format": CHECKPOINT_FORMAT,
                    "format_version": CHECKPOINT_FORMAT_VERSION,
                    "step": step,
                    "created_at": created_at,
                    "files": dict(sorted(digests.items())),
                    "metadata": json.loads(metadata_json),
                }
                # The manifest goes last: a step directory with a manifest is, by construction,
                # one whose every file was fully written and fsynced before it.
                _write_file(temp / self.MANIFEST, encode_manifest(manifest))
                # One rename(2) to a name that does not exist yet: an older checkpoint of the same
                # step stays in place until the new one is visible, and prune() then deletes it.
                # Every file and subdirectory is fsynced already (while writing and hashing).
                publish_dir(temp, target, synced=True)
            except BaseException:
                # Also on KeyboardInterrupt/SystemExit: never leave a half-written temp directory
                # behind when we still can clean it up. (After SIGKILL, prune() does it.)
                _remove_tree(temp)
                raise

        checkpoint = Checkpoint(
            step=step,
            path=target,
            files=dict(sorted(digests.items())),
            metadata=json.loads(metadata_json),
            created_at=created_at,
            format_version=CHECKPOINT_FORMAT_VERSION,
        )
        self.log.info("saved checkpoint step %d to %s", step, target)
        try:
            self.prune()
        except (OSError, CheckpointError) as err:
            # The checkpoint is saved and durable; failing the training step because old ones
            # could not be deleted would throw that progress away.
            self.log.warning(
                "saved checkpoint step %d, but pruning %s failed: %s", step, self.checkpoint_dir, err
            )
        return checkpoint

    # --- reading -------------------------------------------------------------------------------------

    def scan(self) -> CheckpointScan:
        """Verify every checkpoint in the directory (all checksums are recomputed).

        Only directories named ``step-<digits>`` (or ``step-<digits>.r<n>``) count. A missing or
        unparsable manifest, a manifest or file whose checksum does not match makes a checkpoint
        corrupt, with a reason; corruption never raises. A directory that does not exist yet holds
        no checkpoints. A valid checkpoint superseded by a newer valid revision of the same step (a
        replace killed before it deleted the old one) is not listed: the newer revision is.

        A checkpoint that an older runtime moved aside to replace it and never got back (its
        writer died between two renames) is renamed back first, so it counts (issue 13).
        """
        self._recover_interrupted_replaces()
        valid: list[Checkpoint] = []
        corrupt: list[tuple[Path, str]] = []
        for step, _, path in self._step_entries():
            result = self._verify(path, step)
            if isinstance(result, Checkpoint):
                if not any(checkpoint.step == step for checkpoint in valid):
                    valid.append(result)
            else:
                corrupt.append((path, result))
        return CheckpointScan(valid=valid, corrupt=corrupt)

    def latest(self) -> Checkpoint | None:
        """The newest checkpoint whose checksums verify, or ``None``.

        Newer corrupt or torn checkpoints are skipped with a warning, never raised: resuming from
        an older valid checkpoint loses a few steps, crashing on a damaged one loses the attempt.
        Stops at the first valid one, so only the checkpoints it passes over are read.
        """
        self._recover_interrupted_replaces()
        skipped = 0
        for step, _, path in self._step_entries():
            result = self._verify(path, step)
            if isinstance(result, Checkpoint):
                if result.format_version < CHECKPOINT_FORMAT_VERSION:
                    self.log.warning(
                        "checkpoint %s has format_version %d: its %s has no checksum, so its metadata "
                        "is not verified (its files are); the next save writes format_version %d",
                        path,
                        result.format_version,
                        self.MANIFEST,
                        CHECKPOINT_FORMAT_VERSION,
                    )
                return result
            skipped += 1
            self.log.warning("skipping corrupt checkpoint %s: %s", path, result)
        if skipped:
            self.log.warning(
                "no valid checkpoint in %s: all %d checkpoint(s) are corrupt", self.checkpoint_dir, skipped
            )
        return None

    def _step_entries(self) -> list[tuple[int, int, Path]]:
        """``(step, revision, path)`` of every ``step-<digits>[.r<n>]`` entry, newest first."""
        entries = [
            (int(match.group(1)), int(match.group(2) or 0), name)
            for name, match in self._matching(_STEP_DIR_RE)
        ]
        entries.sort(reverse=True)
        return [(step, revision, self.checkpoint_dir / name) for step, revision, name in entries]

    def _matching(self, pattern: re.Pattern[str]) -> Iterator[tuple[str, re.Match[str]]]:
        try:
            names = os.listdir(self.checkpoint_dir)
        except FileNotFoundError:
            return
        except NotADirectoryError:
            raise CheckpointError(
                f"checkpoint directory {self.checkpoint_dir} is a file, not a directory; point the job at "
                "a directory (or remove the file)"
            ) from None
        except OSError as err:
            raise CheckpointError(f"cannot list checkpoint directory {self.checkpoint_dir}: {err}") from err
        for name in names:
            match = pattern.match(name)
            if match is not None:
                yield name, match

    def _verify(self, path: Path, step: int) -> Checkpoint | str:
        """The checkpoint at ``path``, or the reason it is corrupt."""
        if not path.is_dir():
            return "is not a directory"
        manifest_path = path / self.MANIFEST
        try:
            raw = manifest_path.read_bytes()
        except FileNotFoundError:
            return f"{self.MANIFEST} is missing (the checkpoint is incomplete)"
        except OSError as err:
            return f"{self.MANIFEST} cannot be read: {err}"
        # The checksum goes first: a damaged manifest is reported as damaged, whatever byte changed.
        recorded: str | None = None
        digits_end = len(_CHECKSUM_START) + 64
        if raw.startswith(_CHECKSUM_START) and raw[digits_end : digits_end + 3] == _CHECKSUM_END:
            recorded = raw[len(_CHECKSUM_START) : digits_end].decode("ascii", "replace")
            actual = hashlib.sha256(raw[digits_end + 3 :]).hexdigest()
            if actual != recorded:
                return (
                    f"{self.MANIFEST} does not match its manifest_sha256 (its content has sha256 {actual}, "
                    f"it records {recorded}): it was damaged"
                )
        try:
            manifest = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as err:
            return f"{self.MANIFEST} is not valid JSON ({err})"
        if not isinstance(manifest, dict):
            return f"{self.MANIFEST} is not a JSON object"
        if manifest.get("format") != CHECKPOINT_FORMAT:
            return f"{self.MANIFEST} has format {manifest.get('format')!r}, expected {CHECKPOINT_FORMAT!r}"
        version = manifest.get("format_version")
        if type(version) is not int or version not in {_LEGACY_FORMAT_VERSION, CHECKPOINT_FORMAT_VERSION}:
            return (
                f"{self.MANIFEST} has format_version {version!r}; this runtime reads versions "
                f"{_LEGACY_FORMAT_VERSION} and {CHECKPOINT_FORMAT_VERSION} (use the airflow-training-guard "
                "version that wrote it)"
            )
        if version == CHECKPOINT_FORMAT_VERSION and (
            recorded is None or manifest.get("manifest_sha256") != recorded
        ):
            return (
                f"{self.MANIFEST} of format_version {version} does not begin with its manifest_sha256, "
                "so its content cannot be verified (damaged, or edited by hand)"
            )
        if version == _LEGACY_FORMAT_VERSION and (recorded is not None or "manifest_sha256" in manifest):
            return (
                f"{self.MANIFEST} of format_version {version} has a manifest_sha256, which version "
                f"{version} never wrote: it was damaged or edited"
            )
        manifest_step = manifest.get("step")
        if type(manifest_step) is not int or manifest_step != step:
            return f"{self.MANIFEST} says step {manifest_step!r} but the directory is step {step}"
        created_at = manifest.get("created_at")
        if (
            isinstance(created_at, bool)
            or not isinstance(created_at, int | float)
            or not math.isfinite(created_at)
        ):
            return f"{self.MANIFEST} has an invalid created_at {created_at!r}"
        metadata = manifest.get("metadata")
        if not isinstance(metadata, dict):
            return f"{self.MANIFEST} has metadata that is not a JSON object"
        files = manifest.get("files")
        if not isinstance(files, dict):
            return f"{self.MANIFEST} has no 'files' object"
        for name, expected in sorted(files.items()):
            if _canonical_name_or_none(name) != name or name == self.MANIFEST:
                # A manifest must never make a reader open a file outside the checkpoint.
                return f"{self.MANIFEST} lists an invalid file name {name!r}"
            if not isinstance(expected, str) or not _SHA256_RE.match(expected):
                return f"{self.MANIFEST} has an invalid sha256 {expected!r} for file {name!r}"
            file_path = path.joinpath(*PurePosixPath(name).parts)
            try:
                with open(file_path, "rb") as handle:
                    if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                        return f"file {name!r} is not a regular file"
                    digest = hashlib.file_digest(handle, "sha256").hexdigest()
            except FileNotFoundError:
                return f"file {name!r} listed in {self.MANIFEST} is missing"
            except OSError as err:
                return f"file {name!r} cannot be read: {err}"
            if digest != expected:
                return f"file {name!r} has sha256 {digest} but {self.MANIFEST} says {expected} (damaged)"
        return Checkpoint(
            step=step,
            path=path,
            files=dict(files),
            metadata=metadata,
            created_at=float(created_at),
            format_version=version,
        )

    # --- pruning -------------------------------------------------------------------------------------

    def prune(self) -> list[Path]:
        """Delete old checkpoints and leftovers of crashed saves; return the paths removed.

        - Keeps the ``keep_last`` newest valid checkpoints; older ones are deleted, valid or not.
          A valid checkpoint superseded by a newer valid revision of the same step is deleted too
          (and does not count toward ``keep_last``).
        - The newest valid checkpoint is never deleted. Corrupt checkpoints newer than it are kept
          (they are evidence of what went wrong, and a later save of that step replaces them);
          corrupt ones older than it are deleted.
        - ``.tmp-*`` directories are deleted when their writer is gone: on this host, when the pid
          in the name is no longer running; otherwise when older than :attr:`STALE_TEMP_AFTER`.
          A checkpoint that an older runtime moved aside to be replaced, and whose replacement
          never arrived, is renamed back instead of deleted.

        Checkpoints are verified newest first only until ``keep_last`` valid ones are found, so the
        cost is about ``keep_last`` checkpoints' worth of reading. Deletion first renames the
        checkpoint to a ``.tmp-del-*`` name, so an interrupted delete never leaves a torn
        ``step-*`` directory behind.
        """
        removed = self._clean_temp_dirs()
        valid_steps: set[int] = set()
        doomed: list[tuple[int, Path]] = []
        for step, _, path in self._step_entries():
            if len(valid_steps) >= self.keep_last:
                doomed.append((step, path))
                continue
            result = self._verify(path, step)
            if isinstance(result, Checkpoint):
                if step in valid_steps:
                    doomed.append((step, path))  # superseded by a newer revision of its step
                valid_steps.add(step)
            elif valid_steps:
                doomed.append((step, path))
        for step, path in doomed:
            trash = self.checkpoint_dir / _temp_name("del", step)
            with _claimed(trash):
                try:
                    os.rename(path, trash)
                except OSError as err:
                    self.log.warning("cannot prune checkpoint %s: %s", path, err)
                    continue
                _remove_tree(trash)
            removed.append(path)
            self.log.info("pruned checkpoint %s", path)
        if doomed:
            fsync_dir(self.checkpoint_dir)
        return removed

    def _abandoned_temp_dirs(self) -> Iterator[tuple[Path, re.Match[str] | None]]:
        """Every ``.tmp-*`` directory whose writer is gone, with its parsed name (None if foreign)."""
        now = time.time()
        host = _host_label()
        with _IN_FLIGHT_LOCK:
            in_flight = set(_IN_FLIGHT)
        for name, _ in self._matching(re.compile(re.escape(_TEMP_PREFIX))):
            path = self.checkpoint_dir / name
            try:
                info = path.lstat()
            except FileNotFoundError:
                continue
            # Conservative: only real directories; a file or symlink named .tmp-* is not ours.
            if not stat.S_ISDIR(info.st_mode) or path in in_flight:
                continue
            parsed = _TEMP_RE.match(name)
            if parsed is not None and parsed.group(5) == host:
                pid = int(parsed.group(3))
                # Our own pid and not in flight: a save of this process that failed half-way.
                abandoned = pid == os.getpid() or not _pid_alive(pid)
            else:
                abandoned = now - info.st_mtime > self.STALE_TEMP_AFTER
            if abandoned:
                yield path, parsed

    def _recover_interrupted_replaces(self) -> None:
        """Rename back every checkpoint an older runtime moved aside and whose writer died.

        Format version 1 runtimes replaced a step by renaming the old checkpoint to
        ``.tmp-old-step-...`` and then the new one into place; a kill between the two renames left
        the step only in the aside directory, invisible to scan() and latest(). This runs in both
        (not only in prune()), because the operators call scan() before anything else. A step that
        has a checkpoint again is left alone (prune() deletes the aside directory then).
        """
        try:
            abandoned = list(self._abandoned_temp_dirs())
            if not abandoned:
                return
            steps = {step for step, _, _ in self._step_entries()}
        except CheckpointError:
            return  # listing the directory failed; the caller's own listing reports why
        for path, parsed in abandoned:
            if parsed is None or parsed.group(1) != "old" or int(parsed.group(2)) in steps:
                continue
            target = self.step_path(int(parsed.group(2)))
            try:
                os.rename(path, target)
                fsync_dir(self.checkpoint_dir)
            except OSError as err:
                self.log.warning("cannot restore checkpoint %s to %s: %s", path, target, err)
            else:
                steps.add(int(parsed.group(2)))
                self.log.warning("restored checkpoint %s from interrupted replace %s", target, path)

    def _clean_temp_dirs(self) -> list[Path]:
        self._recover_interrupted_replaces()
        steps = {step for step, _, _ in self._step_entries()}
        removed: list[Path] = []
        for path, parsed in self._abandoned_temp_dirs():
            if parsed is not None and parsed.group(1) == "old" and int(parsed.group(2)) not in steps:
                continue  # it could not be renamed back (logged): the only copy of its step
            _remove_tree(path)
            if not path.exists():
                removed.append(path)
                self.log.info("removed leftover temporary directory %s", path)
        return removed


# --- helpers -----------------------------------------------------------------------------------------


@contextlib.contextmanager
def _claimed(path: Path) -> Iterator[None]:
    """Mark ``path`` as in use by this process, so no prune() in another thread removes it."""
    with _IN_FLIGHT_LOCK:
        _IN_FLIGHT.add(path)
    try:
        yield
    finally:
        with _IN_FLIGHT_LOCK:
            _IN_FLIGHT.discard(path)


def encode_manifest(manifest: Mapping[str, Any]) -> bytes:
    """The bytes of ``MANIFEST.json`` for ``manifest`` (format version 2).

    The file is ordinary, indented JSON whose first field, alone on the second line, is
    ``"manifest_sha256"``: the sha256 of every byte after that line. Readers check it before they
    parse anything, so a flipped byte anywhere in the manifest makes the checkpoint corrupt.
    """
    if not manifest or "manifest_sha256" in manifest:
        raise ValueError("a checkpoint manifest must be non-empty and must not already hold manifest_sha256")
    text = json.dumps(dict(manifest), indent=2)
    body = (text[2:] + "\n").encode()  # everything after the opening "{\n"
    digest = hashlib.sha256(body).hexdigest()
    return _CHECKSUM_START + digest.encode() + _CHECKSUM_END + body


def _validate_step(step: object) -> int:
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(
            f"checkpoint step {step!r} is invalid: steps are integers >= 0 (the number of training "
            "steps completed)"
        )
    return step


def _canonical_name_or_none(name: object) -> str | None:
    """``name`` as a canonical relative ``/``-separated path, or ``None`` if it is not a safe one."""
    if not isinstance(name, str) or not name or "\x00" in name or "\\" in name:
        return None
    pure = PurePosixPath(name)
    if pure.is_absolute() or os.path.isabs(name) or any(part == ".." for part in pure.parts):
        return None
    canonical = pure.as_posix()
    if canonical in {"", "."}:
        return None
    return canonical


def _canonical_name(name: object, *, manifest: str = Checkpointer.MANIFEST) -> str:
    canonical = _canonical_name_or_none(name)
    if canonical is None:
        raise ValueError(
            f"checkpoint file name {name!r} is invalid: use a relative path inside the checkpoint "
            "('weights.npy', 'optimizer/state.bin') without '..', a leading '/', or backslashes"
        )
    if canonical == manifest:
        raise ValueError(
            f"checkpoint file name {name!r} is reserved for the checkpoint's own manifest; "
            "rename the file (e.g. 'metadata.json')"
        )
    return canonical


def _validate_contents(files: Mapping[str, bytes]) -> dict[str, bytes]:
    contents: dict[str, bytes] = {}
    for name, data in files.items():
        canonical = _canonical_name(name)
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(
                f"checkpoint file {name!r} is {type(data).__name__}, not bytes; serialize it first "
                "(e.g. .encode() for text), or pass a callable that writes the files itself"
            )
        if canonical in contents:
            raise ValueError(f"checkpoint file name {name!r} appears twice (as {canonical!r})")
        contents[canonical] = bytes(data)
    # A name cannot be both a file and a directory ('a' and 'a/b').
    for canonical in contents:
        for parent in PurePosixPath(canonical).parents:
            if parent.as_posix() in contents:
                raise ValueError(
                    f"checkpoint file name {canonical!r} needs {parent.as_posix()!r} to be a directory, "
                    "but that name is also a file; rename one of them"
                )
    return contents


def _temp_name(kind: str, step: int) -> str:
    return f"{_TEMP_PREFIX}{kind}-step-{step:012d}-{os.getpid()}-{secrets.token_hex(4)}-{_host_label()}"


def _host_label() -> str:
    """This host's name, made safe for a file name; pids are only comparable on the same host."""
    label = re.sub(r"[^A-Za-z0-9._-]", "_", socket.gethostname())[:64]
    return label or "unknown-host"


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        # PermissionError: it exists but belongs to someone else. Anything else: assume alive.
        return True
    return True


def _write_file(path: Path, data: bytes) -> None:
    # "xb": the temp directory is fresh, so an existing file here would mean a bug, not a retry.
    with open(path, "xb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _write_contents(root: Path, contents: Mapping[str, bytes]) -> dict[str, str]:
    digests: dict[str, str] = {}
    directories: set[Path] = set()
    for name, data in contents.items():
        path = root.joinpath(*PurePosixPath(name).parts)
        if path.parent != root:
            path.parent.mkdir(parents=True, exist_ok=True)
            directories.update(p for p in path.parents if p != root and root in p.parents)
        _write_file(path, data)
        digests[name] = hashlib.sha256(data).hexdigest()
    # Deepest first, so each directory entry is durable before its parent's.
    for directory in sorted(directories, key=lambda p: len(p.parts), reverse=True):
        fsync_dir(directory)
    return digests


def _hash_and_sync_tree(root: Path, manifest: str) -> dict[str, str]:
    """Checksum and fsync every file a writer callable put under ``root``."""
    digests: dict[str, str] = {}
    subdirectories: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        current = Path(dirpath)
        for dirname in dirnames:
            if (current / dirname).is_symlink():
                raise ValueError(
                    f"the checkpoint writer created a symlink {current / dirname}; write real files, "
                    "a checkpoint must not depend on files outside it"
                )
            subdirectories.append(current / dirname)
        for filename in filenames:
            path = current / filename
            name = path.relative_to(root).as_posix()
            if name == manifest:
                raise ValueError(
                    f"the checkpoint writer created {manifest!r}, which is reserved for the checkpoint's "
                    "own manifest; give the file another name"
                )
            info = path.lstat()
            if not stat.S_ISREG(info.st_mode):
                raise ValueError(
                    f"the checkpoint writer created {path}, which is not a regular file (symlink, fifo, "
                    "...); write real files, a checkpoint must be self-contained"
                )
            fsync_file(path)
            with open(path, "rb") as handle:
                digests[name] = hashlib.file_digest(handle, "sha256").hexdigest()
    for directory in sorted(subdirectories, key=lambda p: len(p.parts), reverse=True):
        fsync_dir(directory)
    return digests


def _remove_tree(path: Path) -> None:
    """Best-effort delete of a directory we created; a leftover is removed by a later prune()."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        return
    if stat.S_ISDIR(info.st_mode):
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink()
