"""Atomic, checksummed checkpoints that a preempted or crashed training job can always resume from.

The failure this module prevents: a job is killed (preemption, OOM, node loss) while it writes a
checkpoint, the half-written checkpoint looks like the newest one, and the retry either crashes
on it or silently restarts from step 0. Here a checkpoint only becomes visible once it is complete:

- every file is written into a temporary directory ``<dir>/.tmp-new-step-...`` and fsynced;
- ``MANIFEST.json`` (step, sha256 of every file, metadata, time, format version) is written last;
- the temporary directory is renamed to ``<dir>/step-<12 digits>`` in one ``rename(2)``, and the
  parent directory is fsynced so the rename survives a power loss.

Readers (:meth:`Checkpointer.latest`, :meth:`Checkpointer.scan`) recompute every checksum, so a
checkpoint that was damaged later (a flipped byte, a missing file, a truncated copy) is reported
and skipped instead of being loaded. The on-disk format is described in
``docs/checkpoint-contract.md``.

This module is imported inside training containers: standard library only, no Airflow.
"""

from __future__ import annotations

import contextlib
import errno
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

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_FORMAT_VERSION",
    "Checkpoint",
    "CheckpointScan",
    "Checkpointer",
    "UnknownCheckpointFileError",
]

#: Written into every manifest so a stray ``MANIFEST.json`` from another tool is never mistaken for ours.
CHECKPOINT_FORMAT = "airflow-training-guard-checkpoint"
#: Bumped when the manifest layout changes incompatibly; readers refuse versions they do not know.
CHECKPOINT_FORMAT_VERSION = 1

# Only names of this exact form are checkpoints; everything else in the directory is ignored
# (the heartbeat file, temporary directories, files a user left there).
_STEP_DIR_RE = re.compile(r"^step-([0-9]+)$")
_TEMP_PREFIX = ".tmp-"
# Temporary directories record who made them: kind (new = a save in progress, old = a checkpoint
# moved aside while the same step is replaced, del = a checkpoint being deleted), step, writer pid,
# a random token and the writer's host name. prune() uses pid and host to tell a live writer's
# directory from a dead one's without guessing from ages alone.
_TEMP_RE = re.compile(r"^\.tmp-(new|old|del)-step-([0-9]+)-([0-9]+)-([0-9a-f]{8})-(.+)$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")

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
    :param path: the step directory, e.g. ``<dir>/step-000000000120``.
    :param files: relative file name (``/``-separated) -> sha256 hex digest, from the manifest.
    :param metadata: the JSON metadata given to :meth:`Checkpointer.save`.
    :param created_at: unix time the manifest was written.
    """

    step: int
    path: Path
    files: Mapping[str, str]
    metadata: Mapping[str, Any]
    created_at: float

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

    def step_path(self, step: int) -> Path:
        """The directory a checkpoint of ``step`` is saved to."""
        return self.checkpoint_dir / f"step-{_validate_step(step):012d}"

    # --- saving --------------------------------------------------------------------------------------

    def save(
        self,
        step: int,
        files: Mapping[str, bytes] | Callable[[Path], None],
        *,
        metadata: Mapping[str, Any] | None = None,
    ) -> Checkpoint:
        """Save a checkpoint of ``step`` atomically, then :meth:`prune` old ones.

        :param step: training step, an integer >= 0. Saving a step that exists replaces it.
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
        target = self.step_path(step)
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
                _write_file(temp / self.MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode())
                _fsync_dir(temp)
                self._publish(temp, target, step)
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

    def _publish(self, temp: Path, target: Path, step: int) -> None:
        """Rename the complete ``temp`` directory to ``target``, replacing an existing checkpoint."""
        if not os.path.lexists(target):
            os.rename(temp, target)
            _fsync_dir(self.checkpoint_dir)
            return
        # rename(2) cannot replace a non-empty directory, so the old checkpoint is moved aside first.
        # The two renames run back to back; if the process dies between them, the old checkpoint is
        # still complete in the aside directory and prune() renames it back (see _clean_temp_dirs).
        aside = self.checkpoint_dir / _temp_name("old", step)
        with _claimed(aside):
            os.rename(target, aside)
            try:
                os.rename(temp, target)
            except BaseException:
                os.rename(aside, target)
                raise
            _fsync_dir(self.checkpoint_dir)
            _remove_tree(aside)

    # --- reading -------------------------------------------------------------------------------------

    def scan(self) -> CheckpointScan:
        """Verify every checkpoint in the directory (all checksums are recomputed).

        Only directories named ``step-<digits>`` count. A missing or unparsable manifest, a missing
        file or a checksum mismatch makes a checkpoint corrupt, with a reason; corruption never
        raises. A directory that does not exist yet holds no checkpoints.
        """
        valid: list[Checkpoint] = []
        corrupt: list[tuple[Path, str]] = []
        for step, path in self._step_entries():
            result = self._verify(path, step)
            if isinstance(result, Checkpoint):
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
        skipped = 0
        for step, path in self._step_entries():
            result = self._verify(path, step)
            if isinstance(result, Checkpoint):
                return result
            skipped += 1
            self.log.warning("skipping corrupt checkpoint %s: %s", path, result)
        if skipped:
            self.log.warning(
                "no valid checkpoint in %s: all %d checkpoint(s) are corrupt", self.checkpoint_dir, skipped
            )
        return None

    def _step_entries(self) -> list[tuple[int, Path]]:
        """``(step, path)`` of every ``step-<digits>`` entry, newest first."""
        entries = [(int(match.group(1)), name) for name, match in self._matching(_STEP_DIR_RE)]
        entries.sort(reverse=True)
        return [(step, self.checkpoint_dir / name) for step, name in entries]

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
        try:
            manifest = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as err:
            return f"{self.MANIFEST} is not valid JSON ({err})"
        if not isinstance(manifest, dict):
            return f"{self.MANIFEST} is not a JSON object"
        if manifest.get("format") != CHECKPOINT_FORMAT:
            return f"{self.MANIFEST} has format {manifest.get('format')!r}, expected {CHECKPOINT_FORMAT!r}"
        version = manifest.get("format_version")
        if version != CHECKPOINT_FORMAT_VERSION:
            return (
                f"{self.MANIFEST} has format_version {version!r}; this runtime reads version "
                f"{CHECKPOINT_FORMAT_VERSION} (use the airflow-training-guard version that wrote it)"
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
        )

    # --- pruning -------------------------------------------------------------------------------------

    def prune(self) -> list[Path]:
        """Delete old checkpoints and leftovers of crashed saves; return the paths removed.

        - Keeps the ``keep_last`` newest valid checkpoints; older ones are deleted, valid or not.
        - The newest valid checkpoint is never deleted. Corrupt checkpoints newer than it are kept
          (they are evidence of what went wrong, and a later save of that step replaces them);
          corrupt ones older than it are deleted.
        - ``.tmp-*`` directories are deleted when their writer is gone: on this host, when the pid
          in the name is no longer running; otherwise when older than :attr:`STALE_TEMP_AFTER`.
          A checkpoint that was moved aside to be replaced, and whose replacement never arrived,
          is renamed back instead of deleted.

        Checkpoints are verified newest first only until ``keep_last`` valid ones are found, so the
        cost is about ``keep_last`` checkpoints' worth of reading. Deletion first renames the
        checkpoint to a ``.tmp-del-*`` name, so an interrupted delete never leaves a torn
        ``step-*`` directory behind.
        """
        removed = self._clean_temp_dirs()
        found_valid = 0
        doomed: list[Path] = []
        for step, path in self._step_entries():
            if found_valid >= self.keep_last:
                doomed.append(path)
                continue
            result = self._verify(path, step)
            if isinstance(result, Checkpoint):
                found_valid += 1
            elif found_valid > 0:
                doomed.append(path)
        for path in doomed:
            match = _STEP_DIR_RE.match(path.name)
            assert match is not None
            trash = self.checkpoint_dir / _temp_name("del", int(match.group(1)))
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
            _fsync_dir(self.checkpoint_dir)
        return removed

    def _clean_temp_dirs(self) -> list[Path]:
        removed: list[Path] = []
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
            if not abandoned:
                continue
            if parsed is not None and parsed.group(1) == "old":
                target = self.checkpoint_dir / f"step-{int(parsed.group(2)):012d}"
                if not os.path.lexists(target):
                    # The writer died between moving the old checkpoint aside and renaming the new
                    # one into place: put the old one back rather than lose it.
                    try:
                        os.rename(path, target)
                    except OSError as err:
                        self.log.warning("cannot restore checkpoint %s to %s: %s", path, target, err)
                    else:
                        self.log.warning("restored checkpoint %s from interrupted replace %s", target, path)
                    continue
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
        _fsync_dir(directory)
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
            with open(path, "rb") as handle:
                # fsync through a read-only descriptor is enough on POSIX: it flushes the file's
                # dirty pages however they were written (numpy, torch, a subprocess...).
                os.fsync(handle.fileno())
                digests[name] = hashlib.file_digest(handle, "sha256").hexdigest()
    for directory in sorted(subdirectories, key=lambda p: len(p.parts), reverse=True):
        _fsync_dir(directory)
    return digests


def _fsync_dir(path: Path) -> None:
    """Make the entries of ``path`` (new files, renames) durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as err:
        # Some filesystems (certain network mounts) do not support fsync on a directory; the
        # rename is still atomic for readers there, just not guaranteed across a power loss.
        if err.errno not in {errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EBADF}:
            raise
    finally:
        os.close(fd)


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
