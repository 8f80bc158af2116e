"""Every fix an image error suggests is itself a valid reference that keeps the registry and port.

Issue 13: ``" "`` was told to use ``''`` (empty, refused too), and ``localhost:5000`` (a registry
with a port and no repository) was told to write ``localhost/<repository>``, which drops the port
and points at another registry. The tests below check the class: for real-world shapes and for
generated ones, each suggestion (placeholders filled) parses and keeps the registry as written.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from airflow_training_guard.exceptions import GuardConfigError
from airflow_training_guard.policies.images import (
    ImageReferenceError,
    UnpinnedImageError,
    fill_placeholders,
    looks_like_registry,
    parse_image_reference,
    require_pinned,
)

pytestmark = pytest.mark.unit

HEX = "0123456789abcdef" * 4
_HOST_PORT = re.compile(r"(?:[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?")
_SUGGESTED = re.compile(r"(?:write|use|e\.g\.|as in|pin a digest:) '([^']+)'")


def registry_as_written(text: str) -> str | None:
    """The registry (host and port) the user wrote, if any: what a fix must keep."""
    name = "".join(text.split()).partition("@")[0]
    first, slash, _ = name.partition("/")
    if not slash:
        host, _, port = first.partition(":") if not first.startswith("[") else first.partition("]:")
        if first.startswith("["):
            host, port = host + "]", port
        if not looks_like_registry(host):
            return None  # 'myhost:5000' is the Docker Hub repository 'myhost', tag '5000'
        first = f"{host}:{port}" if port.isdigit() else host
    if (
        looks_like_registry(first)
        and _HOST_PORT.fullmatch(first)
        and not re.fullmatch(r"[a-f0-9]{64}", first)
    ):
        return first
    return None


def check_suggestions(err: GuardConfigError, text: str) -> None:
    message = str(err)
    suggestions = getattr(err, "suggestions", ())
    for suggestion in suggestions:
        assert repr(suggestion) in message, f"{suggestion!r} is not in {message!r}"
    quoted = _SUGGESTED.findall(message)
    kept = registry_as_written(text)
    for fix in (*suggestions, *quoted):
        if fix.startswith("@") or (fix.startswith("sha256:") and "/" not in fix and "<" not in fix):
            continue  # a digest fragment in the grammar help, not a reference
        try:
            fixed = parse_image_reference(fill_placeholders(fix))
        except ImageReferenceError as refused:
            pytest.fail(f"{text!r}: the suggested fix {fix!r} is refused: {refused}")
        if kept is not None:
            assert fixed.registry == kept, f"{text!r}: fix {fix!r} drops the registry {kept!r}: {message!r}"


def parse_and_pin(text: object) -> None:
    try:
        require_pinned(text)  # type: ignore[arg-type]
    except (ImageReferenceError, UnpinnedImageError) as err:
        check_suggestions(err, text if isinstance(text, str) else "")


REAL_WORLD = [
    " ",
    "\t\n",
    "localhost:5000",
    "localhost:5000/",
    "localhost:5000@sha256:" + HEX,
    "registry.example.com:5000",
    "registry.example.com:443:v1",
    "[::1]:5000",
    "[::1]:5000/",
    "10.0.0.7:5000",
    "ghcr.io",
    "ghcr.io:latest",
    "localhost",
    "localhost:5000//ml/train",
    "localhost:5000/ml/Train:v1",
    "localhost:5000/ml/train:",
    "localhost:5000/ml/train@",
    "localhost:5000/ml/train@@sha256:" + HEX,
    "localhost:5000/ml/train@sha256:abc",
    "localhost:5000/ml/train@sha256:" + HEX.upper(),
    "localhost:5000/ml/train@sha512:" + HEX + HEX,
    "localhost:5000/ml/train@" + HEX,
    "localhost:5000/ml/train:-bad",
    "localhost:5000/ml/train:v1",
    "registry.example.com:5000/team/model :latest",
    " docker.io/library/python:3.11",
    "ghcr.io/Acme/Train",
    "ghcr.io:/acme/train",
    "sha256:" + HEX,
    HEX,
    ":latest",
    "acme/train",
    "python:3.11",
]


@pytest.mark.parametrize("text", REAL_WORLD)
def test_real_world_mistakes_get_fixes_that_parse_and_keep_the_registry(text: str) -> None:
    parse_and_pin(text)


def test_whitespace_only_is_not_told_to_use_an_empty_reference() -> None:
    """' ' was told "use ''", which is refused as empty."""
    with pytest.raises(
        ImageReferenceError,
        match=r"^image ' ' contains whitespace; an image reference has none; write e\.g\. 'ghcr\.io/acme/train@sha256:<digest>'$",
    ):
        parse_image_reference(" ")


@pytest.mark.parametrize(
    ("text", "fix"),
    [
        ("localhost:5000", "localhost:5000/<repository>"),
        ("[::1]:5000", "[::1]:5000/<repository>"),
        ("registry.example.com:5000", "registry.example.com:5000/<repository>"),
        ("localhost:5000@sha256:" + HEX, "localhost:5000/<repository>@sha256:" + HEX),
        ("ghcr.io:v1", "ghcr.io/<repository>:v1"),
    ],
)
def test_a_registry_with_a_port_and_no_repository_keeps_its_port_in_the_fix(text: str, fix: str) -> None:
    """'localhost:5000' was told to write 'localhost/<repository>': another registry, port dropped."""
    with pytest.raises(
        ImageReferenceError,
        match=rf"looks like a registry without a repository; write {re.escape(repr(fix))}",
    ) as raised:
        parse_image_reference(text)
    assert raised.value.suggestions == (fix,)


_REGISTRIES = st.sampled_from(
    [
        "",
        "localhost",
        "localhost:5000",
        "ghcr.io",
        "registry.example.com:5000",
        "[::1]:5000",
        "10.0.0.7:5000",
        "Registry.Example.com",
        "docker.io",
    ]
)
_COMPONENT = st.one_of(
    st.from_regex(r"\A[a-z0-9]{1,6}([._-][a-z0-9]{1,4})?\Z"),
    st.sampled_from(["", "Train", "ML", "-x", "x_", "a..b", "tr$in", "tr\u00e4n", "a b", "ghcr.io", HEX]),
)
_TAGS = st.one_of(st.none(), st.sampled_from(["", "v1", "latest", "5000", "-bad", "1.2.3", "a" * 129, "v 1"]))
_DIGESTS = st.one_of(
    st.none(),
    st.sampled_from(
        [
            "",
            "sha256:" + HEX,
            "sha256:abc",
            "sha256:" + HEX.upper(),
            "sha512:" + HEX,
            "md5",
            HEX,
            "sha256:" + HEX + "@x",
        ]
    ),
)


@st.composite
def image_like(draw: st.DrawFn) -> str:
    registry = draw(_REGISTRIES)
    repository = "/".join(draw(st.lists(_COMPONENT, min_size=0, max_size=3)))
    tag, digest = draw(_TAGS), draw(_DIGESTS)
    text = (f"{registry}/" if registry else "") + repository
    text += f":{tag}" if tag is not None else ""
    text += f"@{digest}" if digest is not None else ""
    if draw(st.booleans()) and text:
        at = draw(st.integers(min_value=0, max_value=len(text)))
        text = text[:at] + draw(st.sampled_from([" ", "\t", "  "])) + text[at:]
    return text


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(image_like(), st.text(max_size=40), st.text(alphabet="lochst:5[]1/@ABsha256:.-_", max_size=30))
)
@example("localhost:5000")
@example(" ")
@example(None)
def test_every_suggested_fix_parses_and_keeps_the_registry(text: object) -> None:
    parse_and_pin(text)
