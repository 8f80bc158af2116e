"""CheckpointPolicy: one private directory per (dag, task, partition_key), injective and under the root."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from urllib.parse import unquote_to_bytes

import pytest
from hypothesis import given
from hypothesis import strategies as st

from airflow_training_guard.exceptions import GuardConfigError
from airflow_training_guard.policies.checkpoints import CheckpointPolicy
from airflow_training_guard.policies.paths import MAX_SEGMENT_LENGTH, path_segment

pytestmark = pytest.mark.unit

ROOT = "/srv/checkpoints"

# Values whose encoding fits one path segment: 20 characters of at most 12 encoded characters each.
short_text = st.text(max_size=20)


def under_root(path: str, root: str = ROOT) -> bool:
    return path != root and os.path.commonpath([path, root]) == root


# -- path_segment ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-01", "2026-11-01"),
        ("train_model.v2", "train_model.v2"),
        ("berlin|2026-11-01", "berlin%7C2026-11-01"),
        ("a/b", "a%2Fb"),
        ("a\\b", "a%5Cb"),
        ("100%", "100%25"),
        ("with space", "with%20space"),
        ("~home", "%7Ehome"),
        ("über", "%C3%BCber"),
        (".hidden", ".hidden"),
        (".", "%2E"),
        ("..", "%2E%2E"),
        ("", "%EMPTY"),
        ("%2E", "%252E"),
        ("%EMPTY", "%25EMPTY"),
        ("../../etc", "..%2F..%2Fetc"),
    ],
)
def test_path_segment_encodes_everything_outside_the_safe_set(value: str, expected: str) -> None:
    assert path_segment(value) == expected


@pytest.mark.parametrize("value", [".", "..", ""])
def test_dot_segments_and_empty_values_can_never_escape(value: str) -> None:
    """partition_key='..' once wrote checkpoints into the task's parent directory, next to other tasks."""
    segment = path_segment(value)
    assert segment not in {".", "..", ""}
    assert os.path.normpath(os.path.join(ROOT, segment)) == os.path.join(ROOT, segment)


def encoded_length(value: str) -> int:
    """Length of the percent-encoding of ``value``, computed independently of the implementation."""
    safe = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")
    return sum(1 if char in safe else 3 * len(char.encode("utf-8", "surrogatepass")) for char in value)


@given(st.text())
def test_path_segment_is_always_one_safe_segment(value: str) -> None:
    if encoded_length(value) > MAX_SEGMENT_LENGTH:
        with pytest.raises(GuardConfigError, match="file systems accept at most"):
            path_segment(value)
        return
    segment = path_segment(value)
    assert segment not in {"", ".", ".."}
    assert "/" not in segment
    assert "\x00" not in segment
    assert all(char.isascii() and (char.isalnum() or char in "._-%") for char in segment)


def decode_segment(segment: str) -> str:
    """Inverse of path_segment, written independently: its existence proves path_segment injective."""
    special = {"%EMPTY": "", "%2E": ".", "%2E%2E": ".."}
    if segment in special:
        return special[segment]
    return unquote_to_bytes(segment).decode("utf-8", "surrogatepass")


@given(st.text())
def test_path_segment_is_reversible(value: str) -> None:
    if encoded_length(value) <= MAX_SEGMENT_LENGTH:
        assert decode_segment(path_segment(value)) == value


@given(short_text, short_text)
def test_path_segment_is_injective(first: str, second: str) -> None:
    if first != second:
        assert path_segment(first) != path_segment(second)


def test_too_long_segment_is_rejected_with_the_limit() -> None:
    """A 300-character partition key failed deep in mkdir with 'File name too long' after the data loaded."""
    with pytest.raises(
        GuardConfigError,
        match=rf"300-character path segment; file systems accept at most {MAX_SEGMENT_LENGTH}",
    ):
        path_segment("x" * 300)
    assert path_segment("x" * MAX_SEGMENT_LENGTH) == "x" * MAX_SEGMENT_LENGTH


def test_path_segment_rejects_non_strings() -> None:
    with pytest.raises(GuardConfigError, match=r"20261101 is a int, not a str; convert it with str\(\)"):
        path_segment(20261101)  # type: ignore[arg-type]


# -- CheckpointPolicy.checkpoint_dir -----------------------------------------------------------------


def test_default_layout_is_dag_task_partition_under_root() -> None:
    policy = CheckpointPolicy(root=ROOT)
    path = policy.checkpoint_dir(dag_id="daily_retraining", task_id="train", partition_key="2026-11-01")
    assert path == "/srv/checkpoints/daily_retraining/train/2026-11-01"


def test_partition_key_with_separators_stays_one_directory() -> None:
    policy = CheckpointPolicy(root=ROOT)
    path = policy.checkpoint_dir(dag_id="d", task_id="t", partition_key="berlin|2026-11-01")
    assert path == "/srv/checkpoints/d/t/berlin%7C2026-11-01"
    nested = policy.checkpoint_dir(dag_id="d", task_id="t", partition_key="berlin/2026-11-01")
    assert nested == "/srv/checkpoints/d/t/berlin%2F2026-11-01"


def test_traversal_in_values_cannot_leave_the_root() -> None:
    """partition_key='../../../etc' must not make a retry write checkpoints outside the root."""
    policy = CheckpointPolicy(root=ROOT)
    path = policy.checkpoint_dir(dag_id="..", task_id="..", partition_key="../../../etc")
    assert path == "/srv/checkpoints/%2E%2E/%2E%2E/..%2F..%2F..%2Fetc"
    assert under_root(path)


def test_different_partitions_get_different_directories() -> None:
    """Backfilling 2026-11-01 resumed from 2026-11-02's checkpoint because both shared one directory."""
    policy = CheckpointPolicy(root=ROOT)
    first = policy.checkpoint_dir(dag_id="d", task_id="t", partition_key="2026-11-01")
    second = policy.checkpoint_dir(dag_id="d", task_id="t", partition_key="2026-11-02")
    assert first != second


def test_literal_text_around_a_placeholder_is_allowed() -> None:
    policy = CheckpointPolicy(root=ROOT, path_template="ckpt/{dag_id}/run-{partition_key}.d")
    path = policy.checkpoint_dir(dag_id="d", task_id="t", partition_key="p|1")
    assert path == "/srv/checkpoints/ckpt/d/run-p%7C1.d"


def test_root_is_normalised_and_may_be_a_path_object(tmp_path: Path) -> None:
    policy = CheckpointPolicy(root=str(tmp_path) + "/x/../ckpt/")
    assert policy.checkpoint_dir(dag_id="d", task_id="t", partition_key="p") == str(
        tmp_path / "ckpt" / "d" / "t" / "p"
    )
    from_path = CheckpointPolicy(root=tmp_path)  # type: ignore[arg-type]
    assert from_path.root == str(tmp_path)


def test_template_literal_making_a_segment_too_long_is_rejected() -> None:
    policy = CheckpointPolicy(root=ROOT, path_template="x" * 250 + "{partition_key}")
    with pytest.raises(GuardConfigError, match=r"is 260 characters long; file systems accept at most 255"):
        policy.checkpoint_dir(dag_id="d", task_id="t", partition_key="0123456789")


@given(dag_id=short_text, task_id=short_text, partition_key=short_text)
def test_checkpoint_dir_is_always_under_root(dag_id: str, task_id: str, partition_key: str) -> None:
    path = CheckpointPolicy(root=ROOT).checkpoint_dir(
        dag_id=dag_id, task_id=task_id, partition_key=partition_key
    )
    assert under_root(path)
    assert os.path.normpath(path) == path
    assert len(Path(path).relative_to(ROOT).parts) == 3


@given(dag_id=st.text(), task_id=st.text(), partition_key=st.text())
def test_checkpoint_dir_is_under_root_or_rejected_for_any_text(
    dag_id: str, task_id: str, partition_key: str
) -> None:
    policy = CheckpointPolicy(root=ROOT)
    if max(map(encoded_length, (dag_id, task_id, partition_key))) > MAX_SEGMENT_LENGTH:
        with pytest.raises(GuardConfigError, match="file systems accept at most"):
            policy.checkpoint_dir(dag_id=dag_id, task_id=task_id, partition_key=partition_key)
        return
    path = policy.checkpoint_dir(dag_id=dag_id, task_id=task_id, partition_key=partition_key)
    assert under_root(path)


@given(dag_id=short_text, task_id=short_text, partition_key=short_text)
def test_checkpoint_dir_decodes_back_to_its_triple(dag_id: str, task_id: str, partition_key: str) -> None:
    """The directory determines (dag_id, task_id, partition_key), so no two triples can share it."""
    path = CheckpointPolicy(root=ROOT).checkpoint_dir(
        dag_id=dag_id, task_id=task_id, partition_key=partition_key
    )
    parts = Path(path).relative_to(ROOT).parts
    assert tuple(decode_segment(part) for part in parts) == (dag_id, task_id, partition_key)


@given(
    first=st.tuples(short_text, short_text, short_text),
    second=st.tuples(short_text, short_text, short_text),
)
def test_different_triples_never_share_a_checkpoint_dir(
    first: tuple[str, str, str], second: tuple[str, str, str]
) -> None:
    policy = CheckpointPolicy(root=ROOT)

    def directory(triple: tuple[str, str, str]) -> str:
        return policy.checkpoint_dir(dag_id=triple[0], task_id=triple[1], partition_key=triple[2])

    if first != second:
        assert directory(first) != directory(second)


@given(
    base=st.tuples(short_text, short_text, short_text),
    alphabet_heavy=st.text(alphabet="./%-_|", max_size=8),
)
def test_separator_heavy_values_never_collide(base: tuple[str, str, str], alphabet_heavy: str) -> None:
    """Values built from '/', '.', '%' are where naive encodings collide; shift them between fields."""
    policy = CheckpointPolicy(root=ROOT)
    dag_id, task_id, partition_key = base
    one = policy.checkpoint_dir(dag_id=dag_id + alphabet_heavy, task_id=task_id, partition_key=partition_key)
    other = policy.checkpoint_dir(
        dag_id=dag_id, task_id=alphabet_heavy + task_id, partition_key=partition_key
    )
    if alphabet_heavy:
        assert one != other


# -- CheckpointPolicy validation ---------------------------------------------------------------------


def test_template_without_partition_key_is_rejected() -> None:
    """Two partitions shared one checkpoint directory and overwrote each other's checkpoints."""
    with pytest.raises(
        GuardConfigError,
        match=(
            r"path_template '\{dag_id\}/\{task_id\}' does not contain \{partition_key\}, so every partition "
            r"would share one checkpoint directory"
        ),
    ):
        CheckpointPolicy(root=ROOT, path_template="{dag_id}/{task_id}")


@pytest.mark.parametrize(
    "template", ["../{partition_key}", "{dag_id}/../../{partition_key}", "{partition_key}/.."]
)
def test_template_with_parent_segment_is_rejected(template: str) -> None:
    with pytest.raises(
        GuardConfigError, match=rf"path_template '.*' contains '\.\.'.*outside the root '{ROOT}'"
    ):
        CheckpointPolicy(root=ROOT, path_template=template)


def test_absolute_template_is_rejected() -> None:
    with pytest.raises(
        GuardConfigError,
        match=rf"path_template '/tmp/\{{partition_key\}}' is absolute, so checkpoints would not be under the root '{ROOT}'",
    ):
        CheckpointPolicy(root=ROOT, path_template="/tmp/{partition_key}")


@pytest.mark.parametrize(
    ("template", "match"),
    [
        (
            "{dag}/{partition_key}",
            r"uses the placeholder \{dag\}; only \{dag_id\}, \{task_id\} and \{partition_key\}",
        ),
        ("{}/{partition_key}", r"uses the placeholder \{\}"),
        ("{partition_key.upper}", r"uses the placeholder \{partition_key.upper\}"),
        ("{partition_key!r}", r"with a conversion or format spec"),
        ("{partition_key:>10}", r"with a conversion or format spec"),
        ("{partition_key", r"is not a valid template"),
        ("", r"path_template '' is empty"),
        ("{dag_id}-{partition_key}", r"puts 2 placeholders in the same path segment"),
    ],
)
def test_bad_templates_are_rejected(template: str, match: str) -> None:
    with pytest.raises(GuardConfigError, match=match):
        CheckpointPolicy(root=ROOT, path_template=template)


def test_two_placeholders_in_one_segment_would_collide() -> None:
    """Why the rule exists: with '{dag_id}-{partition_key}', ('a-b', 'c') and ('a', 'b-c') share 'a-b-c'."""
    assert f"{path_segment('a-b')}-{path_segment('c')}" == f"{path_segment('a')}-{path_segment('b-c')}"
    with pytest.raises(GuardConfigError, match="Put each placeholder in its own segment"):
        CheckpointPolicy(root=ROOT, path_template="{dag_id}-{partition_key}")


@pytest.mark.parametrize("root", ["checkpoints", "./checkpoints", "", "~/checkpoints"])
def test_relative_root_is_rejected(root: str) -> None:
    with pytest.raises(
        GuardConfigError,
        match=rf"checkpoint root '{root}' is not an absolute path; use an absolute directory such as",
    ):
        CheckpointPolicy(root=root)


@pytest.mark.parametrize(
    ("field", "value"),
    [("keep_last", 0), ("keep_last", -1), ("every_steps", 0), ("every_steps", True), ("every_steps", 1.5)],
)
def test_counts_below_one_are_rejected(field: str, value: object) -> None:
    with pytest.raises(GuardConfigError, match=rf"{field} {value!r} must be an integer >= 1"):
        CheckpointPolicy(root=ROOT, **{field: value})  # type: ignore[arg-type]


def test_defaults_match_the_contract() -> None:
    policy = CheckpointPolicy(root=ROOT)
    assert policy.path_template == "{dag_id}/{task_id}/{partition_key}"
    assert policy.keep_last == 3
    assert policy.every_steps == 100
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.root = "/elsewhere"  # type: ignore[misc]
