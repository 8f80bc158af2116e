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


#: Placeholders a suggested fix may contain; filled in, the fix parses (a property test pins it).
PLACEHOLDERS = {"<repository>": "ml/train", "<64 hex>": "0" * 64, "<digest>": "0" * 64}

_EXAMPLE = "ghcr.io/acme/train@sha256:<digest>"


class _SuggestingError(GuardConfigError):
    """An error whose message offers fixes; ``suggestions`` lists them, each a full image reference.

    :param message: the text shown to the user.
    :param suggestions: the references the message tells the user to write, possibly with a
        placeholder from :data:`PLACEHOLDERS`; each parses once its placeholders are filled, and
        keeps the registry (host and port) of the reference it fixes.
    """

    def __init__(self, message: str, *, suggestions: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.suggestions = suggestions


class ImageReferenceError(_SuggestingError):
    """A text is not a valid container image reference; the message says which part and why."""


class UnpinnedImageError(_SuggestingError):
    """An image is referenced by a tag instead of a digest, so the bytes behind it can change."""


def fill_placeholders(suggestion: str) -> str:
    """``suggestion`` with every placeholder replaced by an example value (for tests and docs)."""
    for placeholder, value in PLACEHOLDERS.items():
        suggestion = suggestion.replace(placeholder, value)
    return suggestion


def _parses(text: str) -> bool:
    try:
        parse_image_reference(fill_placeholders(text))
    except GuardConfigError:
        return False
    return True


def _fixes(*candidates: str | None) -> tuple[str, ...]:
    """The candidates that are valid fixes: each parses once its placeholders are filled."""
    return tuple(dict.fromkeys(c for c in candidates if c is not None and _parses(c)))


def _join(registry: str | None, repository: str, tag: str | None = None, digest: str | None = None) -> str:
    text = repository if registry is None else f"{registry}/{repository}"
    return text + (f":{tag}" if tag is not None else "") + (f"@{digest}" if digest is not None else "")


def _show(text: str) -> str:
    return repr(text if len(text) <= 120 else text[:117] + "...")


def looks_like_registry(component: str) -> bool:
    """Whether the first component of a name is a registry: contains ``.`` or ``:``, or is ``localhost``.

    The same rule Docker uses, so ``ghcr.io/acme/train`` and ``localhost:5000/train`` name registries
    while ``acme/train`` is the Docker Hub repository ``acme/train``.

    :param component: the text before the first ``/`` of a name.
    """
    return "." in component or ":" in component or component == "localhost"


def _check_digest(digest: str, *, reference: str, base: str) -> None:
    """Check a digest; ``base`` is the reference without it (``registry/repository[:tag]``)."""
    algorithm, colon, encoded = digest.partition(":")
    if colon and algorithm == "sha256" and _SHA256_HEX.fullmatch(encoded):
        return
    where = f"image {_show(reference)}: digest {_show(digest)}"
    pin = _fixes(f"{base}@sha256:<64 hex>")
    write_pin = f"write {pin[0]!r}" if pin else ""
    if not colon or not _ALGORITHM.fullmatch(algorithm):
        raise ImageReferenceError(
            f"{where} is not '<algorithm>:<hex>'; {_DIGEST_HELP}" + (f": {write_pin}" if pin else ""),
            suggestions=pin,
        )
    if algorithm != "sha256":
        raise ImageReferenceError(
            f"{where} uses the algorithm {algorithm!r}; the guard pins by sha256, which every registry "
            f"reports: get it with 'crane digest {base}'" + (f" and {write_pin}" if pin else ""),
            suggestions=pin,
        )
    if _SHA256_HEX.fullmatch(encoded.lower()):
        lowered = _fixes(f"{base}@sha256:{encoded.lower()}")
        use = f": use {lowered[0]!r}" if lowered else ""
        raise ImageReferenceError(f"{where} has uppercase hex; {_DIGEST_HELP}{use}", suggestions=lowered)
    problem = (
        f"has {len(encoded)} characters after 'sha256:'"
        if len(encoded) != 64
        else "has characters after 'sha256:' that are not hex digits"
    )
    raise ImageReferenceError(
        f"{where} {problem}; {_DIGEST_HELP}. Copy the full digest, e.g. from 'crane digest {base}'"
        + (f", and {write_pin}" if pin else ""),
        suggestions=pin,
    )


def _check_repository(
    repository: str, *, reference: str, registry: str | None, tag: str | None, digest: str | None
) -> None:
    where = f"image {_show(reference)}: repository {_show(repository)}"

    def fixed(new_repository: str) -> tuple[str, ...]:
        # Keep the tag and digest when they are valid; a bad digest is reported once this is fixed.
        return _fixes(
            _join(registry, new_repository, tag, digest),
            _join(registry, new_repository, tag),
            _join(registry, new_repository),
        )[:1]

    if not repository:
        fix = fixed("<repository>")
        write = (
            f"write {fix[0]!r}, e.g. {fill_placeholders(fix[0])!r}"
            if fix
            else "write e.g. 'ghcr.io/ml/train'"
        )
        raise ImageReferenceError(
            f"image {_show(reference)} has no repository name; {write}",
            suggestions=fix or ("ghcr.io/ml/train",),
        )
    components = repository.split("/")
    for component in components:
        if _PATH_COMPONENT.fullmatch(component):
            continue
        if not component:
            fix = fixed("/".join(part for part in components if part))
            use = f": use {fix[0]!r}" if fix else ""
            raise ImageReferenceError(
                f"{where} has an empty path component (a leading, trailing or doubled '/'); remove it{use}",
                suggestions=fix,
            )
        if _PATH_COMPONENT.fullmatch(component.lower()):
            fix = fixed(repository.lower())
            use = f": use {fix[0]!r}" if fix else ""
            raise ImageReferenceError(
                f"{where} contains uppercase letters; the reference grammar allows only lowercase in "
                f"repository names{use}",
                suggestions=fix,
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
            rest = self.repository if isinstance(self.repository, str) and self.repository else "<repository>"
            if not isinstance(self.registry, str) or not _REGISTRY.fullmatch(self.registry):
                fix = _fixes(f"registry.example.com:5000/{rest}")
                raise ImageReferenceError(
                    f"image {_show(shown)}: registry {self.registry!r} is not a host name, IPv4 address or "
                    "[IPv6] address with an optional ':port'" + (f", as in {fix[0]!r}" if fix else ""),
                    suggestions=fix,
                )
            if not looks_like_registry(self.registry):
                fix = _fixes(f"{self.registry}.example.com/{rest}", f"{self.registry}:5000/{rest}")
                raise ImageReferenceError(
                    f"image {_show(shown)}: registry {self.registry!r} has no '.' or ':port' and is not "
                    "'localhost', so it would be read back as part of a Docker Hub repository; write it "
                    f"with its domain or port, e.g. {_quote_all(fix)}",
                    suggestions=fix,
                )
        if not isinstance(self.repository, str):
            raise ImageReferenceError(f"repository {self.repository!r} is not a string")
        _check_repository(
            self.repository,
            reference=shown,
            registry=self.registry,
            tag=self.tag if isinstance(self.tag, str) and _TAG.fullmatch(self.tag) else None,
            digest=self.digest if isinstance(self.digest, str) else None,
        )
        if self.registry is None:
            self._check_docker_hub_shorthand(shown)
        if len(self.api_repository) > MAX_REPOSITORY_LENGTH:
            raise ImageReferenceError(
                f"image {_show(shown)}: repository name is {len(self.api_repository)} characters; the "
                f"reference grammar allows at most {MAX_REPOSITORY_LENGTH}. Use a shorter repository path"
            )
        if self.tag is not None and (not isinstance(self.tag, str) or not _TAG.fullmatch(self.tag)):
            pin = _fixes(f"{self.name}@sha256:<64 hex>")
            instead = f"; or drop it and pin a digest: {pin[0]!r}" if pin else ""
            raise ImageReferenceError(
                f"image {_show(shown)}: tag {self.tag!r} is not valid; a tag is 1 to {MAX_TAG_LENGTH} "
                f"characters of letters, digits, '_', '.' and '-', not starting with '.' or '-'{instead}",
                suggestions=pin,
            )
        if self.digest is not None:
            if not isinstance(self.digest, str):
                raise ImageReferenceError(f"image {_show(shown)}: digest {self.digest!r} is not a string")
            _check_digest(self.digest, reference=shown, base=_join(self.registry, self.repository, self.tag))

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
            raise _registry_without_repository(shown, first, self.tag, self.digest)
        if self.repository == "sha256" or _SHA256_HEX.fullmatch(self.repository):
            # Upstream rejects a bare 64-hex name (an image ID); a bare 'sha256' name is a digest
            # pasted without its repository ('sha256:<hex>' reads as repository 'sha256', tag '<hex>').
            pasted = self.tag if self.repository == "sha256" and self.tag else None
            fix = _fixes(f"<repository>@sha256:{pasted}" if pasted else None, "<repository>@sha256:<64 hex>")
            raise ImageReferenceError(
                f"image {_show(shown)} looks like a digest or image ID, not a repository; write "
                f"{fix[0]!r}, e.g. {fill_placeholders(fix[0])!r}",
                suggestions=fix[:1],
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


def _registry_without_repository(
    shown: str, registry: str, tag: str | None, digest: str | None
) -> ImageReferenceError:
    fix = _fixes(_join(registry, "<repository>", tag, digest), _join(registry, "<repository>"))[:1]
    write = f"; write {fix[0]!r}, e.g. {fill_placeholders(fix[0])!r}" if fix else ""
    return ImageReferenceError(
        f"image {_show(shown)}: {registry!r} looks like a registry without a repository{write}",
        suggestions=fix,
    )


def _split_tag(remainder: str) -> tuple[str, str | None]:
    """Split ``name[:tag]``: the tag starts at the first ':' after the last '/' and after ']'."""
    start = remainder.rfind("/") + 1
    if start == 0 and remainder.startswith("[") and "]" in remainder:
        start = remainder.index("]") + 1  # the ':' inside '[::1]' belong to an IPv6 address
    colon = remainder.find(":", start)
    if colon == -1:
        return remainder, None
    return remainder[:colon], remainder[colon + 1 :]


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
            f"image {text!r} is a {type(text).__name__}, not a string; write e.g. {_EXAMPLE!r}",
            suggestions=(_EXAMPLE,),
        )
    if not text:
        raise ImageReferenceError(
            f"image reference is empty; write e.g. {_EXAMPLE!r}", suggestions=(_EXAMPLE,)
        )
    if _WHITESPACE.search(text):
        collapsed = "".join(text.split())
        fix: tuple[str, ...] = (_EXAMPLE,)
        use = f"; write e.g. {_EXAMPLE!r}"
        if collapsed:
            try:
                parse_image_reference(collapsed)
                fix = (collapsed,)
            except ImageReferenceError as err:  # fix the next problem too, keeping the registry
                fix = err.suggestions
            use = (
                f": use {fix[0]!r}"
                if fix
                else f"; remove it (what remains, {_show(collapsed)}, is not a valid reference either)"
            )
        raise ImageReferenceError(
            f"image {_show(text)} contains whitespace; an image reference has none{use}",
            suggestions=fix[:1],
        )
    remainder, at, digest = text.partition("@")
    if at and ("@" in digest or not digest):
        fix = _fixes(f"{remainder}@sha256:<64 hex>")
        write = f"; write {fix[0]!r}" if fix else ""
        problem = (
            "contains more than one '@'" if digest else f"ends with '@' but has no digest; {_DIGEST_HELP}"
        )
        raise ImageReferenceError(f"image {_show(text)} {problem}{write}", suggestions=fix)
    # The tag starts at the last ':' after the last '/': the earlier ones belong to a registry port.
    name, tag = _split_tag(remainder)
    if "/" not in name and looks_like_registry(name) and _REGISTRY.fullmatch(name):
        # 'localhost:5000' or 'ghcr.io': a registry (with its port) whose repository was forgotten;
        # a number after the registry is its port, never a tag to keep.
        port = tag is not None and tag.isdigit() and _REGISTRY.fullmatch(f"{name}:{tag}") is not None
        raise _registry_without_repository(
            text, f"{name}:{tag}" if port else name, None if port else tag or None, digest if at else None
        )
    if tag == "":
        fix = _fixes(name + (f"@{digest}" if at else ""), f"{name}@sha256:<64 hex>")
        use = f": use {_quote_all(fix)}" if fix else ""
        raise ImageReferenceError(
            f"image {_show(text)} has a ':' but no tag after it; remove the ':' or add a tag "
            f"(better: pin a digest with '@sha256:<64 hex>'){use}",
            suggestions=fix,
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


def _quote_all(fixes: tuple[str, ...]) -> str:
    return " or ".join(repr(fix) for fix in fixes)


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
    fix = (f"{suggestion}@sha256:<digest>",)
    how = f"use {fix[0]!r} (get it with: {_digest_commands(reference)})"
    if allow_unpinned and forbid_unpinned_override:
        raise UnpinnedImageError(
            f"image '{reference}' is not pinned by digest, and {opt_out_name}=True is refused because this "
            "cluster forbids unpinned images ([training_guard] forbid_unpinned_images in airflow.cfg, or "
            f"AIRFLOW__TRAINING_GUARD__FORBID_UNPINNED_IMAGES); {how}",
            suggestions=fix,
        )
    if allow_unpinned:
        return reference
    implicit = " (no tag means ':latest')" if reference.tag is None else ""
    raise UnpinnedImageError(
        f"image '{reference}'{implicit} is not pinned by digest; {how}. For a development-only try, "
        f"pass {opt_out_name}=True",
        suggestions=fix,
    )
