"""Where checkpoints live: one private directory per (DAG, task, partition_key), always under a root.

Production failures this prevents:

- Two partitions writing to the same directory, so a backfill of ``2026-11-01`` resumes from the
  checkpoint of ``2026-11-02`` (or prunes it). The path template must contain ``{partition_key}``
  and every value is encoded injectively: different inputs never share a directory.
- A partition key such as ``../../etc`` or ``berlin/2026-11-01`` escaping the checkpoint root or
  splitting into nested directories. Each value becomes exactly one safe path segment.

Pure Python, no Airflow import.
"""

from __future__ import annotations

import os
import posixpath
import string
from dataclasses import dataclass

from airflow_training_guard.exceptions import GuardConfigError
from airflow_training_guard.policies.paths import MAX_SEGMENT_LENGTH, path_segment

#: The placeholders a path template may use.
TEMPLATE_FIELDS = frozenset({"dag_id", "task_id", "partition_key"})

# path_segment lives in policies.paths (the ledger uses it too); still exported from here for
# callers that import it with CheckpointPolicy.
__all__ = ["MAX_SEGMENT_LENGTH", "TEMPLATE_FIELDS", "CheckpointPolicy", "path_segment"]


@dataclass(frozen=True)
class CheckpointPolicy:
    """Layout and retention of checkpoints.

    ``checkpoint_dir(dag_id=..., task_id=..., partition_key=...)`` is
    ``root/<path_template with each value encoded by path_segment>``, always inside ``root``.

    :param root: absolute local directory under which every checkpoint lives.
    :param path_template: layout under ``root``; may use ``{dag_id}``, ``{task_id}`` and
        ``{partition_key}``, must use ``{partition_key}``, each placeholder in a path segment of its
        own (literal text around it is allowed: ``run-{partition_key}``). No ``..``, not absolute.
    :param keep_last: how many newest valid checkpoints the program keeps (>= 1).
    :param every_steps: save a checkpoint every this many steps (>= 1).
    """

    root: str
    path_template: str = "{dag_id}/{task_id}/{partition_key}"
    keep_last: int = 3
    every_steps: int = 100

    def __post_init__(self) -> None:
        if isinstance(self.root, os.PathLike):
            object.__setattr__(self, "root", os.fspath(self.root))
        if not isinstance(self.root, str) or not os.path.isabs(self.root) or "\x00" in self.root:
            raise GuardConfigError(
                f"checkpoint root {self.root!r} is not an absolute path; use an absolute directory such as "
                "'/var/lib/training-guard/checkpoints' (relative paths depend on the worker's current "
                "directory, so a retry on another worker would not find the checkpoints)"
            )
        _check_template(self.path_template, self.root)
        for name in ("keep_last", "every_steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise GuardConfigError(
                    f"{name} {value!r} must be an integer >= 1; e.g. keep_last=3 keeps the three newest "
                    "checkpoints, every_steps=100 saves every 100 steps"
                )

    def relative_dir(self, *, dag_id: str, task_id: str, partition_key: str) -> str:
        """The checkpoint directory relative to ``root`` (``a/b/c``, no empty, ``.`` or ``..`` segment).

        Built from the template's segments, never by cutting an absolute path: a Kubernetes volume's
        ``subPath`` must name the same directory as :meth:`checkpoint_dir` whatever spelling ``root``
        has (``/mnt//checkpoints`` once cut two DAGs' sub-paths to the same folder).

        :raises GuardConfigError: when a value is not a string or encodes to an over-long segment.
        """
        values = {
            "dag_id": path_segment(dag_id),
            "task_id": path_segment(task_id),
            "partition_key": path_segment(partition_key),
        }
        segments = [segment.format_map(values) for segment in self.path_template.split("/") if segment]
        for segment in segments:
            if len(segment) > MAX_SEGMENT_LENGTH:
                raise GuardConfigError(
                    f"checkpoint path segment {segment[:60]!r}... is {len(segment)} characters long; file "
                    f"systems accept at most {MAX_SEGMENT_LENGTH}. Shorten the literal text in path_template "
                    f"{self.path_template!r} or the value"
                )
            if segment in (".", ".."):  # unreachable by construction (path_segment encodes both)
                raise GuardConfigError(
                    f"checkpoint path segment {segment!r} from path_template {self.path_template!r} would "
                    "leave its folder; remove it from the template"
                )
        return "/".join(segments)

    def checkpoint_dir(self, *, dag_id: str, task_id: str, partition_key: str) -> str:
        """The absolute, normalised directory for one (DAG, task, partition_key); inside ``root``.

        :param dag_id: the DAG's id.
        :param task_id: the task's id.
        :param partition_key: the partition the task trains on, e.g. ``berlin|2026-11-01``.
        :raises GuardConfigError: when a value is not a string or encodes to an over-long segment.
        """
        relative = self.relative_dir(dag_id=dag_id, task_id=task_id, partition_key=partition_key)
        root = os.path.normpath(self.root)
        result = os.path.normpath(os.path.join(root, relative))
        if not _is_inside(result, root) or os.path.relpath(result, root) != relative:
            # unreachable by construction; defence in depth
            raise GuardConfigError(
                f"checkpoint directory {result!r} would be outside the root {root!r}; check path_template "
                f"{self.path_template!r}"
            )
        return result


def _is_inside(path: str, root: str) -> bool:
    return path != root and os.path.commonpath([path, root]) == root


def _check_template(template: object, root: str) -> None:
    if not isinstance(template, str) or not template.strip():
        raise GuardConfigError(
            f"path_template {template!r} is empty; use e.g. '{{dag_id}}/{{task_id}}/{{partition_key}}'"
        )
    if "\x00" in template:
        raise GuardConfigError(f"path_template {template!r} contains a NUL character; remove it")
    if os.path.isabs(template) or posixpath.isabs(template):
        raise GuardConfigError(
            f"path_template {template!r} is absolute, so checkpoints would not be under the root {root!r}; "
            "make it relative to the root, e.g. '{dag_id}/{task_id}/{partition_key}'"
        )
    formatter = string.Formatter()
    used: list[str] = []
    for segment in template.split("/"):
        try:
            parsed = list(formatter.parse(segment))
        except ValueError as err:
            raise GuardConfigError(
                f"path_template {template!r} is not a valid template ({err}); write placeholders as "
                "{dag_id}, {task_id} or {partition_key} and a literal brace as {{ or }}"
            ) from None
        fields = [field for _, field, _, _ in parsed if field is not None]
        if not fields and "".join(text for text, _, _, _ in parsed) == "..":
            raise GuardConfigError(
                f"path_template {template!r} contains '..', which could put checkpoints outside the "
                f"root {root!r}; remove the '..' segment and point checkpoint_root where you want them"
            )
        for _, field, spec, conversion in parsed:
            if field is None:
                continue
            if field not in TEMPLATE_FIELDS:
                raise GuardConfigError(
                    f"path_template {template!r} uses the placeholder {{{field}}}; only {{dag_id}}, "
                    "{task_id} and {partition_key} are available"
                )
            if spec or conversion:
                raise GuardConfigError(
                    f"path_template {template!r} formats the placeholder {{{field}}} with a conversion or "
                    f"format spec; write plain {{{field}}} (values are encoded by the policy itself)"
                )
        if len(fields) > 1:
            raise GuardConfigError(
                f"path_template {template!r} puts {len(fields)} placeholders in the same path segment "
                f"{segment!r}; values may contain any character, so two different combinations could give "
                "the same directory. Put each placeholder in its own segment, e.g. "
                "'{dag_id}/{task_id}/{partition_key}'"
            )
        used.extend(fields)
    if "partition_key" not in used:
        raise GuardConfigError(
            f"path_template {template!r} does not contain {{partition_key}}, so every partition would share "
            "one checkpoint directory: a run for one partition would resume from, or overwrite, another "
            "partition's checkpoints. Add it, e.g. '{dag_id}/{task_id}/{partition_key}'"
        )
