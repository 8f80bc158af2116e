"""Container image references, and the rule that training images are pinned by digest.

The production failure this prevents: a training image referenced as ``acme/train:latest`` (or any
moving tag) picked up a library patch in its base image overnight; preprocessing changed silently,
the model shipped worse, and nobody could say which image the good run had used. A digest
(``acme/train@sha256:<64 hex>``) names exactly one image forever, so the guard requires one, checks
it when the DAG is parsed, and records it in the run manifest as ``image_digest``.

References are parsed by the grammar of ``github.com/distribution/reference`` (what Docker,
containerd and Kubernetes use)::

    reference        := name [ ":" tag ] [ "@" digest ]
    name             := [ registry "/" ] repository
    registry         := host [ ":" port ]     ; domain name, IPv4, or [IPv6]
    repository       := path-component [ "/" path-component ]*
    path-component   := [a-z0-9]+ ( ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ )*
    tag              := [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
    digest           := "sha256:" [a-f0-9]{64}

The first ``/``-separated component is the registry when it contains ``.`` or ``:`` or is
``localhost``; otherwise the whole name is a Docker Hub repository. Two deliberate restrictions
over the general grammar, because the guard pins by digest: the only digest algorithm accepted
is ``sha256`` (what registries, ``crane digest`` and ``docker buildx imagetools inspect`` report),
and its hex must be lowercase (as ``go-digest`` requires).

Pure Python, standard library only, no Airflow import.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from airflow_training_guard.exceptions import GuardConfigError

#: Longest repository path the reference grammar accepts (``RepositoryNameTotalLengthMax``).
MAX_REPOSITORY_LENGTH = 255
#: Longest tag the grammar accepts.
MAX_TAG_LENGTH = 128
#: Registry host that serves Docker Hub's API (``docker.io`` is only its familiar name).
DOCKER_HUB_HOST = "registry-1.docker.io"
#: Names that all mean Docker Hub when written as the registry of a reference.
DOCKER_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", DOCKER_HUB_HOST})
#: Namespace of Docker Hub's official images: ``python`` is ``library/python`` on the API.
OFFICIAL_NAMESPACE = "library"

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|-+)"
_PATH_COMPONENT = re.compile(rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*")
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_REGISTRY = re.compile(rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?")
# Go's \w is ASCII-only; Python's is Unicode, so spell the class out.
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_SHA256_HEX = re.compile(r"[a-f0-9]{64}")
_ALGORITHM = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*")
_WHITESPACE = re.compile(r"\s")

_DIGEST_HELP = "a sha256 digest is 'sha256:' followed by 64 lowercase hex characters"
_PATH_HELP = (
    "each '/'-separated part must be lowercase letters and digits, optionally joined by '.', '_', "
    "'__' or dashes, starting and ending with a letter or digit"
)


class ImageReferenceError(GuardConfigError):
    """A text is not a valid container image reference; the message says which part and why."""


class UnpinnedImageError(GuardConfigError):
    """An image is referenced by a tag instead of a digest, so the bytes behind it can change."""


def _show(text: str) -> str:
    return repr(text if len(text) <= 120 else text[:117] + "...")


def looks_like_registry(component: str) -> bool:
    """Whether the first component of a name is a registry: contains ``.`` or ``:``, or is ``localhost``.

    The same rule Docker uses, so ``ghcr.io/acme/train`` and ``localhost:5000/train`` name registries
    while ``acme/train`` is the Docker Hub repository ``acme/train``.

    :param component: the text before the first ``/`` of a name.
    """
    return "." in component or ":" in component or component == "localhost"


def _check_digest(digest: str, *, reference: str) -> None:
    algorithm, colon, encoded = digest.partition(":")
    where = f"image {_show(reference)}: digest {_show(digest)}"
    if not colon or not _ALGORITHM.fullmatch(algorithm):
        raise ImageReferenceError(f"{where} is not '<algorithm>:<hex>'; {_DIGEST_HELP}")
    if algorithm != "sha256":
        raise ImageReferenceError(
            f"{where} uses the algorithm {algorithm!r}; the guard pins by sha256, which every registry "
            "reports: get it with 'crane digest <image>' and write '<image>@sha256:<64 hex>'"
        )
    if _SHA256_HEX.fullmatch(encoded):
        return
    if _SHA256_HEX.fullmatch(encoded.lower()):
        raise ImageReferenceError(
            f"{where} has uppercase hex; {_DIGEST_HELP}: use 'sha256:{encoded.lower()}'"
        )
    problem = (
        f"has {len(encoded)} characters after 'sha256:'"
        if len(encoded) != 64
        else "has characters after 'sha256:' that are not hex digits"
    )
    raise ImageReferenceError(
        f"{where} {problem}; {_DIGEST_HELP}. Copy the full digest, e.g. from 'crane digest <image>'"
    )


def _check_repository(repository: str, *, reference: str) -> None:
    where = f"image {_show(reference)}: repository {_show(repository)}"
    if not repository:
        raise ImageReferenceError(
            f"image {_show(reference)} has no repository name; write e.g. 'registry.example.com/ml/train'"
        )
    components = repository.split("/")
    for component in components:
        if _PATH_COMPONENT.fullmatch(component):
            continue
        if not component:
            raise ImageReferenceError(
                f"{where} has an empty path component (a leading, trailing or doubled '/'); remove it"
            )
        if _PATH_COMPONENT.fullmatch(component.lower()):
            raise ImageReferenceError(
                f"{where} contains uppercase letters; the reference grammar allows only lowercase in "
                f"repository names: use {repository.lower()!r}"
            )
        raise ImageReferenceError(f"{where} has an invalid part {_show(component)}; {_PATH_HELP}")


@dataclass(frozen=True)
class ImageReference:
    """A parsed container image reference: ``[registry/]repository[:tag][@digest]``.

    Construct it with :func:`parse_image_reference`; the constructor validates every field the
    same way, so ``parse_image_reference(str(ref)) == ref`` for every instance.

    :param registry: registry host with optional port (``"registry.example.com:5000"``,
        ``"ghcr.io"``, ``"[::1]:5000"``), or ``None`` for Docker Hub shorthand (``python``,
        ``acme/train``). Kept as written: ``docker.io/python`` keeps ``"docker.io"``.
    :param repository: the path, e.g. ``"ml/trainer"``. Docker Hub's ``python`` stays ``"python"``;
        :attr:`api_repository` gives ``"library/python"``.
    :param tag: the tag, e.g. ``"2026.11.1"``, or ``None``.
    :param digest: ``"sha256:<64 lowercase hex>"``, or ``None``.
    """

    registry: str | None
    repository: str
    tag: str | None = None
    digest: str | None = None

    def __post_init__(self) -> None:
        shown = self._text()
        if self.registry is not None:
            if not isinstance(self.registry, str) or not _REGISTRY.fullmatch(self.registry):
                raise ImageReferenceError(
                    f"image {_show(shown)}: registry {self.registry!r} is not a host name, IPv4 address or "
                    "[IPv6] address with an optional ':port', e.g. 'registry.example.com:5000'"
                )
            if not looks_like_registry(self.registry):
                raise ImageReferenceError(
                    f"image {_show(shown)}: registry {self.registry!r} has no '.' or ':port' and is not "
                    "'localhost', so it would be read back as part of a Docker Hub repository; write it "
                    f"with its domain or port, e.g. '{self.registry}.example.com' or '{self.registry}:5000'"
                )
        if not isinstance(self.repository, str):
            raise ImageReferenceError(f"repository {self.repository!r} is not a string")
        _check_repository(self.repository, reference=shown)
        if self.registry is None:
            self._check_docker_hub_shorthand(shown)
        if len(self.api_repository) > MAX_REPOSITORY_LENGTH:
            raise ImageReferenceError(
                f"image {_show(shown)}: repository name is {len(self.api_repository)} characters; the "
                f"reference grammar allows at most {MAX_REPOSITORY_LENGTH}. Use a shorter repository path"
            )
        if self.tag is not None and (not isinstance(self.tag, str) or not _TAG.fullmatch(self.tag)):
            raise ImageReferenceError(
                f"image {_show(shown)}: tag {self.tag!r} is not valid; a tag is 1 to {MAX_TAG_LENGTH} "
                "characters of letters, digits, '_', '.' and '-', not starting with '.' or '-'"
            )
        if self.digest is not None:
            if not isinstance(self.digest, str):
                raise ImageReferenceError(f"image {_show(shown)}: digest {self.digest!r} is not a string")
            _check_digest(self.digest, reference=shown)

    def _check_docker_hub_shorthand(self, shown: str) -> None:
        """Reject shorthand names that would not read back as written, or are pasted digests."""
        first, slash, _ = self.repository.partition("/")
        if slash and looks_like_registry(first):
            raise ImageReferenceError(
                f"image {_show(shown)}: {first!r} would be read as a registry; pass registry={first!r} "
                "and the rest as the repository"
            )
        if not slash and looks_like_registry(first):
            # The grammar reads 'ghcr.io' as the Docker Hub repository library/ghcr.io; it is
            # nearly always a registry whose repository was forgotten.
            raise ImageReferenceError(
                f"image {_show(shown)}: {first!r} looks like a registry without a repository; write "
                f"'{first}/<repository>', e.g. '{first}/ml/train'"
            )
        if self.repository == "sha256" or _SHA256_HEX.fullmatch(self.repository):
            # Upstream rejects a bare 64-hex name (an image ID); a bare 'sha256' name is a digest
            # pasted without its repository ('sha256:<hex>' reads as repository 'sha256', tag '<hex>').
            raise ImageReferenceError(
                f"image {_show(shown)} looks like a digest or image ID, not a repository; write "
                "'<repository>@sha256:<64 hex>', e.g. 'ghcr.io/acme/train@sha256:...'"
            )

    def _text(self) -> str:
        text = f"{self.registry}/{self.repository}" if self.registry is not None else f"{self.repository}"
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text

    @property
    def is_pinned(self) -> bool:
        """Whether the reference carries a sha256 digest, i.e. names exactly one image forever."""
        return self.digest is not None

    @property
    def name(self) -> str:
        """``registry/repository`` as written, without tag or digest (``"ghcr.io/acme/train"``)."""
        return self.repository if self.registry is None else f"{self.registry}/{self.repository}"

    @property
    def is_docker_hub(self) -> bool:
        """Whether the image lives on Docker Hub (no registry, or one of Docker Hub's names)."""
        return self.registry is None or self.registry in DOCKER_HUB_ALIASES

    @property
    def registry_host(self) -> str:
        """The host (and port) to send registry API calls to: ``registry-1.docker.io`` for Docker Hub."""
        return DOCKER_HUB_HOST if self.is_docker_hub or self.registry is None else self.registry

    @property
    def api_repository(self) -> str:
        """The repository as the registry API names it: ``library/python`` for Docker Hub's ``python``."""
        if self.is_docker_hub and "/" not in self.repository:
            return f"{OFFICIAL_NAMESPACE}/{self.repository}"
        return self.repository

    def pinned(self, digest: str) -> ImageReference:
        """The same image name pinned to ``digest``; the tag is kept for readability.

        ``parse_image_reference("acme/train:2026.11").pinned("sha256:ab…")`` is
        ``acme/train:2026.11@sha256:ab…``. Kubernetes and Docker pull by the digest and ignore the tag.

        :param digest: ``"sha256:<64 lowercase hex>"``, e.g. what the registry reported for the tag.
        :raises ImageReferenceError: when ``digest`` is not a valid sha256 digest.
        """
        return ImageReference(registry=self.registry, repository=self.repository, tag=self.tag, digest=digest)

    def __str__(self) -> str:
        """The canonical text form; ``parse_image_reference(str(ref)) == ref``."""
        return self._text()


def parse_image_reference(text: str) -> ImageReference:
    """Parse an image reference such as ``localhost:5000/ml/train:1@sha256:<64 hex>``.

    Accepted forms: ``python``, ``python:3.11``, ``acme/train``, ``ghcr.io/acme/ml/train:v2``,
    ``localhost:5000/train``, ``[::1]:5000/train``, ``acme/train@sha256:<hex>`` and
    ``acme/train:v2@sha256:<hex>`` (tag and digest: pulled by digest, tag kept for readers).

    :param text: the reference as written in a DAG.
    :raises ImageReferenceError: (a :class:`GuardConfigError`) naming the part that is wrong and how
        to write it: empty text, whitespace, uppercase repository, empty tag after ``:``, a digest
        that is not ``sha256:`` + 64 lowercase hex, a repository over 255 characters, ...
    """
    if not isinstance(text, str):
        raise ImageReferenceError(
            f"image {text!r} is a {type(text).__name__}, not a string; write e.g. 'ghcr.io/acme/train@sha256:...'"
        )
    if not text:
        raise ImageReferenceError("image reference is empty; write e.g. 'ghcr.io/acme/train@sha256:<digest>'")
    if _WHITESPACE.search(text):
        raise ImageReferenceError(
            f"image {_show(text)} contains whitespace; an image reference has none: "
            f"use {''.join(text.split())!r}"
        )
    remainder, at, digest = text.partition("@")
    if at:
        if "@" in digest:
            raise ImageReferenceError(
                f"image {_show(text)} contains more than one '@'; write '<name>[:<tag>]@sha256:<64 hex>'"
            )
        if not digest:
            raise ImageReferenceError(f"image {_show(text)} ends with '@' but has no digest; {_DIGEST_HELP}")
    # The tag starts at the last ':' after the last '/': the earlier ones belong to a registry port.
    last_slash = remainder.rfind("/")
    colon = remainder.find(":", last_slash + 1)
    tag: str | None = None
    name = remainder
    if colon != -1:
        name, tag = remainder[:colon], remainder[colon + 1 :]
        if not tag:
            raise ImageReferenceError(
                f"image {_show(text)} has a ':' but no tag after it; remove the ':' or add a tag "
                "(better: pin a digest with '@sha256:<64 hex>')"
            )
    registry: str | None = None
    repository = name
    first, slash, rest = name.partition("/")
    if slash and looks_like_registry(first):
        registry, repository = first, rest
    return ImageReference(
        registry=registry,
        repository=repository,
        tag=tag,
        digest=digest if at else None,
    )


def _digest_commands(reference: ImageReference) -> str:
    return f"crane digest {reference}, or docker buildx imagetools inspect {reference}"


def require_pinned(
    text: str,
    *,
    allow_unpinned: bool = False,
    forbid_unpinned_override: bool = False,
    opt_out_name: str = "allow_unpinned_image",
) -> ImageReference:
    """Parse ``text`` and require a sha256 digest, so the image can never change under a DAG.

    :param text: the image reference, e.g. ``"ghcr.io/acme/train@sha256:<64 hex>"``.
    :param allow_unpinned: accept a reference without a digest (development only; the operator logs
        a loud warning). Ignored, and an error, when ``forbid_unpinned_override`` is set.
    :param forbid_unpinned_override: the cluster-wide setting ``[training_guard]
        forbid_unpinned_images`` (``AIRFLOW__TRAINING_GUARD__FORBID_UNPINNED_IMAGES``); when true,
        ``allow_unpinned=True`` is refused.
    :param opt_out_name: the name of the opt-out as the user writes it, for messages; the operators
        call it ``allow_unpinned_image``.
    :returns: the parsed reference.
    :raises ImageReferenceError: when ``text`` is not a valid reference.
    :raises UnpinnedImageError: when it has no digest and the opt-out is not given or not allowed.
    """
    reference = parse_image_reference(text)
    if reference.is_pinned:
        return reference
    suggestion = ImageReference(registry=reference.registry, repository=reference.repository)
    how = f"use '{suggestion}@sha256:<digest>' (get it with: {_digest_commands(reference)})"
    if allow_unpinned and forbid_unpinned_override:
        raise UnpinnedImageError(
            f"image '{reference}' is not pinned by digest, and {opt_out_name}=True is refused because this "
            "cluster forbids unpinned images ([training_guard] forbid_unpinned_images in airflow.cfg, or "
            f"AIRFLOW__TRAINING_GUARD__FORBID_UNPINNED_IMAGES); {how}"
        )
    if allow_unpinned:
        return reference
    implicit = " (no tag means ':latest')" if reference.tag is None else ""
    raise UnpinnedImageError(
        f"image '{reference}'{implicit} is not pinned by digest; {how}. For a development-only try, "
        f"pass {opt_out_name}=True"
    )
