"""Publish a directory or a file atomically and durably: the one folder-swap helper of the package.

Checkpoints (:mod:`~airflow_training_guard.runtime.checkpoint`), the run manifest
(:mod:`~airflow_training_guard.manifest`) and the partition ledger's version directories
(:mod:`~airflow_training_guard.partitions.ledger`) all publish the same way:

1. write everything into a temporary *sibling* of the target (same directory or a staging area
   under the same root, so the rename below stays on one file system, where ``rename(2)`` is
   atomic): the checkpointer's ``.tmp-new-step-*`` directory, the ledger's staging directory,
   :func:`publish_file`'s ``.tmp-*`` file;
2. fsync every file and every directory of it, the temporary directory itself last, so its content
   is on disk before any name points at it;
3. rename it to the target in one ``rename(2)``: a reader sees the old state or the complete new
   one, never a half-written one;
4. fsync the parent directory, so the rename itself survives a power loss.

A crash before step 3 leaves only the temporary sibling (a hidden name, which readers ignore and
the owners' clean-up removes); the target is never half there. The ledger used
to skip step 2: after a power loss its commit could point at a version directory whose files were
empty (issue 15).

This module runs inside training containers (it is part of ``runtime``): standard library only.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from pathlib import Path

#: Prefix of the temporary siblings this module creates; readers skip names starting with ``.``.
TEMP_PREFIX = ".tmp-"

#: errnos of file systems that cannot fsync a directory (some network mounts). The rename is still
#: atomic for readers there, only not guaranteed to survive a power loss.
_DIR_FSYNC_UNSUPPORTED = frozenset({errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EBADF})


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Make the entries of directory ``path`` (new files, renames, deletions) durable.

    Tolerates file systems that cannot fsync a directory; any other error (``EIO``) propagates,
    because it means the data may not be on disk.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as err:
        if err.errno not in _DIR_FSYNC_UNSUPPORTED:
            raise
    finally:
        os.close(fd)


def fsync_file(path: str | os.PathLike[str]) -> None:
    """Flush a regular file's data to disk, however it was written (numpy, torch, a subprocess).

    An fsync through a read-only descriptor is enough on POSIX: it flushes the file's dirty pages.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_tree(root: str | os.PathLike[str]) -> None:
    """fsync every regular file and every directory under ``root``, deepest first, ``root`` last.

    Symbolic links are not followed (their targets are outside the tree being published).
    """
    root_path = Path(root)
    directories: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root_path):
        current = Path(dirpath)
        directories.extend(current / name for name in dirnames if not (current / name).is_symlink())
        for name in filenames:
            path = current / name
            if stat.S_ISREG(path.lstat().st_mode):
                fsync_file(path)
    for directory in sorted(directories, key=lambda p: len(p.parts), reverse=True):
        fsync_dir(directory)
    fsync_dir(root_path)


def publish_dir(
    staging: str | os.PathLike[str], target: str | os.PathLike[str], *, synced: bool = False
) -> Path:
    """Rename the complete directory ``staging`` to ``target``, durably; return ``target``.

    :param staging: a fully written directory on the same file system as ``target`` (a sibling, or
        a staging area under the same root).
    :param target: the name to publish under. It must not exist: ``rename(2)`` refuses a non-empty
        directory there (``OSError``), so a second publish to one name cannot replace the first.
    :param synced: True when the caller already fsynced every file *and* subdirectory of
        ``staging`` (the checkpointer does it while hashing); then only ``staging`` itself is
        fsynced before the rename.
    :raises OSError: the fsync or the rename failed; nothing was published then.
    """
    staging_path, target_path = Path(staging), Path(target)
    if synced:
        fsync_dir(staging_path)
    else:
        sync_tree(staging_path)
    os.rename(staging_path, target_path)
    fsync_dir(target_path.parent)
    return target_path


def publish_file(target: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``target`` atomically and durably, replacing a previous file; return it.

    Temporary sibling, write, fsync, ``os.replace``, fsync the parent: a reader sees the previous
    file or the new one, never half of one, and a crash leaves at most a hidden ``.tmp-*`` file.
    """
    target_path = Path(target)
    target_path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(
        prefix=f"{TEMP_PREFIX}{target_path.name}-", suffix=".tmp", dir=target_path.parent
    )
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_name, target_path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    fsync_dir(target_path.parent)
    return target_path
