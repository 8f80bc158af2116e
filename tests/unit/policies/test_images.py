"""Image references: the distribution/reference grammar, digest pinning, and the opt-out rules."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from airflow_training_guard.exceptions import GuardConfigError
from airflow_training_guard.policies.images import (
    ImageReference,
    ImageReferenceError,
    UnpinnedImageError,
    parse_image_reference,
    require_pinned,
)

pytestmark = pytest.mark.unit

HEX = "0123456789abcdef" * 4
DIGEST = f"sha256:{HEX}"
OTHER_DIGEST = "sha256:" + "f" * 64


# -- valid references ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "registry", "repository", "tag", "digest"),
    [
        ("python", None, "python", None, None),
        ("python:3.11-slim", None, "python", "3.11-slim", None),
        ("acme/train", None, "acme/train", None, None),
        ("acme/train:latest", None, "acme/train", "latest", None),
        ("ghcr.io/acme/train:v2", "ghcr.io", "acme/train", "v2", None),
        ("localhost:5000/ml/train:1", "localhost:5000", "ml/train", "1", None),
        ("localhost/ml/train", "localhost", "ml/train", None, None),
        (
            "registry.example.com:5000/team/ml/nested/train:2026.11.01",
            "registry.example.com:5000",
            "team/ml/nested/train",
            "2026.11.01",
            None,
        ),
        (f"acme/train@{DIGEST}", None, "acme/train", None, DIGEST),
        (f"acme/train:v2@{DIGEST}", None, "acme/train", "v2", DIGEST),
        (f"ghcr.io/acme/train@{DIGEST}", "ghcr.io", "acme/train", None, DIGEST),
        ("[::1]:5000/ml/train:1", "[::1]:5000", "ml/train", "1", None),
        ("[fe80::1]/train", "[fe80::1]", "train", None, None),
        ("127.0.0.1:5000/train", "127.0.0.1:5000", "train", None, None),
        ("docker.io/library/python:3.11", "docker.io", "library/python", "3.11", None),
        ("my-registry:5000/train", "my-registry:5000", "train", None, None),
        ("acme/my_train__v2.x--y:Tag_1.0-rc", None, "acme/my_train__v2.x--y", "Tag_1.0-rc", None),
        ("Registry.Example.COM/acme/train", "Registry.Example.COM", "acme/train", None, None),
        ("a/b/c/d/e/f", None, "a/b/c/d/e/f", None, None),
        ("acme/train:_", None, "acme/train", "_", None),
        ("acme/train:" + "t" * 128, None, "acme/train", "t" * 128, None),
        ("ghcr.io/" + "a" * 255, "ghcr.io", "a" * 255, None, None),
        (f"localhost:5000/ml/train:1@{DIGEST}", "localhost:5000", "ml/train", "1", DIGEST),
    ],
)
def test_valid_references_are_parsed_and_round_trip(
    text: str, registry: str | None, repository: str, tag: str | None, digest: str | None
) -> None:
    reference = parse_image_reference(text)
    assert reference == ImageReference(registry=registry, repository=repository, tag=tag, digest=digest)
    assert str(reference) == text
    assert reference.is_pinned is (digest is not None)


# -- invalid references ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", r"^image reference is empty; write e\.g\. 'ghcr\.io/acme/train@sha256:<digest>'$"),
        (" python", r"contains whitespace; an image reference has none: use 'python'$"),
        ("acme/train:latest\n", r"contains whitespace"),
        ("acme/ train", r"contains whitespace; an image reference has none: use 'acme/train'$"),
        (
            "Acme/train",
            r"^image 'Acme/train': repository 'Acme/train' contains uppercase letters; the reference "
            r"grammar allows only lowercase in repository names: use 'acme/train'$",
        ),
        (
            "ghcr.io/acme/Train:v1",
            r"repository 'acme/Train' contains uppercase letters.*use 'ghcr\.io/acme/train:v1'$",
        ),
        ("acme/train:", r"has a ':' but no tag after it; remove the ':' or add a tag"),
        ("acme/train@", r"ends with '@' but has no digest; a sha256 digest is 'sha256:' followed by 64"),
        (
            "acme/train@sha256:abc",
            r"^image 'acme/train@sha256:abc': digest 'sha256:abc' has 3 characters after 'sha256:'; "
            r"a sha256 digest is 'sha256:' followed by 64 lowercase hex characters\. Copy the full digest",
        ),
        (f"acme/train@sha256:{HEX[:63]}", r"has 63 characters after 'sha256:'; a sha256 digest is"),
        (f"acme/train@sha256:{HEX}0", r"has 65 characters after 'sha256:'"),
        (f"acme/train@sha256:{HEX.upper()}", rf"has uppercase hex; .* use 'acme/train@sha256:{HEX}'$"),
        (f"acme/train@sha256:{HEX[:60]}xyzw", r"has characters after 'sha256:' that are not hex digits; a"),
        (f"acme/train@sha512:{HEX}{HEX}", r"uses the algorithm 'sha512'; the guard pins by sha256"),
        ("acme/train@md5", r"digest 'md5' is not '<algorithm>:<hex>'"),
        (
            "acme//train",
            r"has an empty path component \(a leading, trailing or doubled '/'\); remove it: use 'acme/train'$",
        ),
        ("/acme/train", r"has an empty path component"),
        ("acme/train/", r"has an empty path component"),
        ("ghcr.io", r"'ghcr\.io' looks like a registry without a repository; write 'ghcr\.io/<repository>'"),
        ("localhost", r"'localhost' looks like a registry without a repository"),
        ("ghcr.io/", r"^image 'ghcr\.io/' has no repository name"),
        (":latest", r"^image ':latest' has no repository name"),
        ("acme/-train", r"has an invalid part '-train'; each '/'-separated part must be lowercase"),
        ("acme/train_", r"has an invalid part 'train_'"),
        ("acme/tr$in", r"has an invalid part 'tr\$in'"),
        ("acme/train:-bad", r"tag '-bad' is not valid; a tag is 1 to 128 characters"),
        ("acme/train:" + "t" * 129, r"tag 'tttt.*' is not valid"),
        ("acme/train:v1:v2", r"tag 'v1:v2' is not valid"),
        ("x/" + "a" * 254, r"repository name is 256 characters; the reference grammar allows at most 255"),
        # Docker Hub's official images live under library/: 'a'*248 is library/aaa... (256) on the API.
        ("a" * 248, r"repository name is 256 characters"),
        (f"sha256:{HEX}", r"looks like a digest or image ID, not a repository; write '<repository>@sha256"),
        (HEX, r"looks like a digest or image ID"),
        ("a@b@c", r"contains more than one '@'"),
        ("ghcr.io:/acme/train", r"registry 'ghcr\.io:' is not a host name"),
        ("[::1/train", r"registry '\[::1' is not a host name"),
        ("ghcr.io/acme/train:tag@", r"ends with '@' but has no digest"),
        ("acme/tr@in", r"digest 'in' is not '<algorithm>:<hex>'"),
        ("acme/trän", r"has an invalid part 'trän'"),
    ],
)
def test_invalid_references_are_rejected_with_the_fix(text: str, message: str) -> None:
    with pytest.raises(ImageReferenceError, match=message):
        parse_image_reference(text)


def test_reference_errors_are_config_errors_raised_when_the_dag_is_parsed() -> None:
    assert issubclass(ImageReferenceError, GuardConfigError)
    assert issubclass(ImageReferenceError, ValueError)
    assert issubclass(UnpinnedImageError, GuardConfigError)


def test_a_non_string_is_rejected() -> None:
    with pytest.raises(ImageReferenceError, match=r"^image None is a NoneType, not a string"):
        parse_image_reference(None)  # type: ignore[arg-type]


def test_constructor_validates_like_the_parser() -> None:
    """Every instance round-trips: fields the text form could not express are refused."""
    with pytest.raises(ImageReferenceError, match=r"registry 'myreg' has no '\.' or ':port'"):
        ImageReference(registry="myreg", repository="train")
    with pytest.raises(ImageReferenceError, match=r"'ghcr\.io' would be read as a registry; pass registry="):
        ImageReference(registry=None, repository="ghcr.io/acme/train")
    with pytest.raises(ImageReferenceError, match=r"has 3 characters after 'sha256:'"):
        ImageReference(registry=None, repository="acme/train", digest="sha256:abc")
    with pytest.raises(ImageReferenceError, match=r"tag '' is not valid"):
        ImageReference(registry=None, repository="acme/train", tag="")


# -- derived names ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "name", "registry_host", "api_repository"),
    [
        ("python:3.11", "python", "registry-1.docker.io", "library/python"),
        ("acme/train:v1", "acme/train", "registry-1.docker.io", "acme/train"),
        ("docker.io/python", "docker.io/python", "registry-1.docker.io", "library/python"),
        ("index.docker.io/acme/train", "index.docker.io/acme/train", "registry-1.docker.io", "acme/train"),
        ("ghcr.io/acme/train:v1", "ghcr.io/acme/train", "ghcr.io", "acme/train"),
        ("ghcr.io/python", "ghcr.io/python", "ghcr.io", "python"),
        (f"localhost:5000/ml/train:1@{DIGEST}", "localhost:5000/ml/train", "localhost:5000", "ml/train"),
    ],
)
def test_name_registry_host_and_api_repository(
    text: str, name: str, registry_host: str, api_repository: str
) -> None:
    reference = parse_image_reference(text)
    assert reference.name == name
    assert reference.registry_host == registry_host
    assert reference.api_repository == api_repository


def test_docker_hub_repository_is_kept_as_written() -> None:
    reference = parse_image_reference("python")
    assert reference.repository == "python"
    assert reference.registry is None
    assert reference.is_docker_hub


def test_pinned_keeps_the_name_and_tag_and_sets_the_digest() -> None:
    reference = parse_image_reference("ghcr.io/acme/train:2026.11")
    pinned = reference.pinned(DIGEST)
    assert str(pinned) == f"ghcr.io/acme/train:2026.11@{DIGEST}"
    assert pinned.is_pinned and not reference.is_pinned
    assert str(pinned.pinned(OTHER_DIGEST)) == f"ghcr.io/acme/train:2026.11@{OTHER_DIGEST}"


def test_pinned_rejects_an_invalid_digest() -> None:
    with pytest.raises(ImageReferenceError, match=r"digest 'sha256:abc' has 3 characters"):
        parse_image_reference("acme/train:v1").pinned("sha256:abc")


def test_reference_is_immutable() -> None:
    reference = parse_image_reference("acme/train:v1")
    with pytest.raises(dataclasses.FrozenInstanceError):
        reference.tag = "v2"  # type: ignore[misc]


# -- require_pinned --------------------------------------------------------------------------------


def test_pinned_reference_is_accepted() -> None:
    reference = require_pinned(f"ghcr.io/acme/train:v1@{DIGEST}")
    assert reference.digest == DIGEST
    assert reference.tag == "v1"


def test_moving_tag_is_rejected_with_the_digest_commands() -> None:
    """`:latest` picked up a base-image patch overnight and silently changed preprocessing."""
    with pytest.raises(
        UnpinnedImageError,
        match=(
            r"^image 'acme/train:latest' is not pinned by digest; use 'acme/train@sha256:<digest>' "
            r"\(get it with: crane digest acme/train:latest, or docker buildx imagetools inspect "
            r"acme/train:latest\)\. For a development-only try, pass allow_unpinned_image=True$"
        ),
    ):
        require_pinned("acme/train:latest")


def test_missing_tag_says_it_means_latest() -> None:
    with pytest.raises(
        UnpinnedImageError,
        match=r"^image 'ghcr\.io/acme/train' \(no tag means ':latest'\) is not pinned by digest; "
        r"use 'ghcr\.io/acme/train@sha256:<digest>' \(get it with: crane digest ghcr\.io/acme/train,",
    ):
        require_pinned("ghcr.io/acme/train")


def test_opt_out_returns_the_unpinned_reference() -> None:
    reference = require_pinned("acme/train:dev", allow_unpinned=True)
    assert reference == ImageReference(registry=None, repository="acme/train", tag="dev")
    assert not reference.is_pinned


def test_cluster_setting_refuses_the_opt_out_and_says_where_it_lives() -> None:
    with pytest.raises(
        UnpinnedImageError,
        match=(
            r"^image 'acme/train:dev' is not pinned by digest, and allow_unpinned_image=True is refused because "
            r"this cluster forbids unpinned images \(\[training_guard\] forbid_unpinned_images in "
            r"airflow\.cfg, or AIRFLOW__TRAINING_GUARD__FORBID_UNPINNED_IMAGES\); use "
            r"'acme/train@sha256:<digest>' \(get it with: crane digest acme/train:dev, or docker buildx "
            r"imagetools inspect acme/train:dev\)$"
        ),
    ):
        require_pinned("acme/train:dev", allow_unpinned=True, forbid_unpinned_override=True)


def test_messages_name_the_opt_out_as_the_caller_spells_it() -> None:
    with pytest.raises(UnpinnedImageError, match=r"For a development-only try, pass allow_unpinned=True$"):
        require_pinned("acme/train:v1", opt_out_name="allow_unpinned")


def test_cluster_setting_alone_does_not_change_pinned_or_unpinned_verdicts() -> None:
    assert require_pinned(f"acme/train@{DIGEST}", forbid_unpinned_override=True).is_pinned
    with pytest.raises(UnpinnedImageError, match=r"is not pinned by digest; use"):
        require_pinned("acme/train:v1", forbid_unpinned_override=True)


def test_malformed_reference_is_a_reference_error_not_an_unpinned_error() -> None:
    with pytest.raises(ImageReferenceError, match=r"has 3 characters after 'sha256:'"):
        require_pinned("acme/train@sha256:abc", allow_unpinned=True)


# -- properties ------------------------------------------------------------------------------------

_domain_component = st.from_regex(r"[a-zA-Z0-9]([a-zA-Z0-9-]{0,6}[a-zA-Z0-9])?", fullmatch=True)
_port = st.integers(min_value=1, max_value=65535).map(lambda p: f":{p}")
_ipv6 = st.from_regex(r"[a-f0-9]{0,4}(:[a-f0-9]{0,4}){2,7}", fullmatch=True).map(lambda a: f"[{a}]")
registries = st.one_of(
    st.tuples(st.lists(_domain_component, min_size=2, max_size=4), st.one_of(st.just(""), _port)).map(
        lambda t: ".".join(t[0]) + t[1]
    ),
    st.tuples(_domain_component, _port).map("".join),
    st.one_of(st.just(""), _port).map(lambda p: f"localhost{p}"),
    st.tuples(_ipv6, st.one_of(st.just(""), _port)).map("".join),
)
path_components = st.from_regex(r"[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*", fullmatch=True).filter(
    lambda c: len(c) <= 30
)
repositories = st.lists(path_components, min_size=1, max_size=4).map("/".join)
tags = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", fullmatch=True)
digests = st.text(alphabet="0123456789abcdef", min_size=64, max_size=64).map(lambda h: f"sha256:{h}")


@st.composite
def references(draw: st.DrawFn, *, pinned: bool | None = None) -> ImageReference:
    registry = draw(st.one_of(st.none(), registries))
    repository = draw(repositories)
    if registry is None:
        first = repository.split("/", 1)[0]
        assume("." not in first and repository != "sha256" and len(repository) != 64)
    tag = draw(st.one_of(st.none(), tags))
    digest = draw(digests) if pinned else None if pinned is False else draw(st.one_of(st.none(), digests))
    return ImageReference(registry=registry, repository=repository, tag=tag, digest=digest)


@given(references())
def test_text_form_round_trips(reference: ImageReference) -> None:
    assert parse_image_reference(str(reference)) == reference
    assert str(parse_image_reference(str(reference))) == str(reference)


@given(references(pinned=True))
def test_generated_pinned_references_are_pinned(reference: ImageReference) -> None:
    parsed = parse_image_reference(str(reference))
    assert parsed.is_pinned
    assert require_pinned(str(reference), forbid_unpinned_override=True) == parsed


@given(references(pinned=False))
def test_generated_unpinned_references_are_refused(reference: ImageReference) -> None:
    with pytest.raises(UnpinnedImageError, match=r"is not pinned by digest"):
        require_pinned(str(reference))
    assert str(reference.pinned(DIGEST)).endswith(f"@{DIGEST}")


@given(st.text())
def test_parse_raises_only_image_reference_errors(text: str) -> None:
    try:
        reference = parse_image_reference(text)
    except ImageReferenceError:
        return
    assert parse_image_reference(str(reference)) == reference


@given(st.text(alphabet="abcAB019:/@.-_[]sha256 ", max_size=40))
def test_parse_raises_only_image_reference_errors_on_reference_like_text(text: str) -> None:
    try:
        reference = parse_image_reference(text)
    except ImageReferenceError:
        return
    assert str(reference) == text
