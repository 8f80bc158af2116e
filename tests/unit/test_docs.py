"""The documentation holds together: links resolve, snippets parse and import real names, every page is
reachable from docs/index.md, every runbook has the same four sections, and every operator and sensor
the provider registers has a snippet.

Docs rot silently: a page is renamed and a runbook's link breaks, a class is renamed and the snippet on
its reference page still imports the old name. These checks read the Markdown as text (no servers, no
rendering) and fail naming the file and the broken link, block or name.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import textwrap
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from urllib.parse import unquote

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCS = REPO_ROOT / "docs"
INDEX = DOCS / "index.md"
PACKAGE = "airflow_training_guard"

#: Every Markdown page under docs/ (runbooks included), and the README that links into them.
DOC_PAGES = sorted(DOCS.rglob("*.md"))
CHECKED_FILES = [*DOC_PAGES, REPO_ROOT / "README.md"]

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`\s]*)")
_INLINE_CODE = re.compile(r"(`+).+?\1")
# [text](target "title") and ![alt](target); the target has no spaces (or is in <...>).
_INLINE_LINK = re.compile(
    r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*(?P<target><[^>]*>|[^)\s]+)(?:\s+[\"'(][^)]*)?\)"
)
# [label]: target
_REFERENCE_LINK = re.compile(r"^[ \t]{0,3}\[[^\]]+\]:[ \t]*(?P<target><[^>]*>|\S+)")
_EXTERNAL = re.compile(r"^(?:[a-zA-Z][a-zA-Z0-9+.-]*:|//)")  # http:, https:, mailto:, //host


@dataclass(frozen=True)
class CodeBlock:
    language: str
    line: int  # 1-based line of the opening fence
    text: str


@dataclass(frozen=True)
class Link:
    line: int
    target: str


def _rel(path: Path) -> str:
    return path.relative_to(REPO_ROOT).as_posix()


@cache
def _split(path: Path) -> tuple[tuple[CodeBlock, ...], str]:
    """The fenced code blocks of a page, and its prose with every code block blanked out.

    Blanked lines keep their place, so line numbers in messages stay right.
    """
    blocks: list[CodeBlock] = []
    prose: list[str] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if opening is None:
            prose.append(lines[index])
            index += 1
            continue
        fence, indent = opening["fence"], len(opening["indent"].expandtabs())
        body: list[str] = []
        start = index
        index += 1
        while index < len(lines):
            closing = _FENCE.match(lines[index])
            if (
                closing
                and closing["fence"][0] == fence[0]
                and len(closing["fence"]) >= len(fence)
                and not closing["info"]
            ):
                break
            body.append(lines[index])
            index += 1
        # A fence indented inside a list item indents its body as much; remove that much.
        text = "\n".join(line[indent:] if line[:indent].strip() == "" else line for line in body)
        blocks.append(CodeBlock(opening["info"].lower(), start + 1, textwrap.dedent(text)))
        prose.extend([""] * (index - start + 1))
        index += 1
    return tuple(blocks), "\n".join(prose)


def _links(path: Path) -> list[Link]:
    _, prose = _split(path)
    found: list[Link] = []
    for number, line in enumerate(prose.splitlines(), start=1):
        line = _INLINE_CODE.sub(lambda match: " " * len(match.group(0)), line)
        for pattern in (_INLINE_LINK, _REFERENCE_LINK):
            found += [Link(number, match["target"].strip("<>")) for match in pattern.finditer(line)]
    return found


def _relative_links(path: Path) -> list[Link]:
    return [link for link in _links(path) if not _EXTERNAL.match(link.target)]


def _link_file(path: Path, target: str) -> Path | None:
    """The file a relative link points at (None for a same-page ``#anchor``)."""
    file_part = unquote(target.split("#", 1)[0].split("?", 1)[0])
    if not file_part:
        return None
    return (path.parent / file_part).resolve()


def _python_blocks(path: Path) -> list[CodeBlock]:
    blocks, _ = _split(path)
    return [block for block in blocks if block.language in {"python", "py", "python3"}]


def _ids(paths: list[Path]) -> list[str]:
    return [_rel(path) for path in paths]


# -- links ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", CHECKED_FILES, ids=_ids(CHECKED_FILES))
def test_every_relative_link_in_docs_resolves(path: Path) -> None:
    broken = [
        f"{_rel(path)}:{link.line}: [{link.target}] -> {target} does not exist"
        for link in _relative_links(path)
        if (target := _link_file(path, link.target)) is not None and not target.exists()
    ]
    assert not broken, "broken relative links:\n" + "\n".join(broken)


@pytest.mark.parametrize("path", DOC_PAGES, ids=_ids(DOC_PAGES))
def test_every_docs_page_is_reachable_from_the_index(path: Path) -> None:
    reachable: set[Path] = set()
    todo = [INDEX.resolve()]
    while todo:
        page = todo.pop()
        if page in reachable:
            continue
        reachable.add(page)
        for link in _relative_links(page):
            target = _link_file(page, link.target)
            if target is not None and target.suffix == ".md" and target.is_file() and DOCS in target.parents:
                todo.append(target)
    assert path.resolve() in reachable, (
        f"{_rel(path)} is not reachable by following links from docs/index.md; link it from the index "
        "or from a page the index links to"
    )


def test_link_extraction_skips_code_and_keeps_anchors(tmp_path: Path) -> None:
    """The checks above are only as good as the parser: links in code do not count, anchors do."""
    page = tmp_path / "page.md"
    page.write_text(
        "See [a](a.md#part) and ![img](img/x.png), not `[b](b.md)`.\n"
        "```python\nx = [c](d)  # not a link\n```\n"
        '   ```json\n   {"e": "[f](f.md)"}\n   ```\n'
        "[ref]: ref.md\n[web](https://example.com) [top](#top)\n"
    )
    targets = [link.target for link in _relative_links(page)]
    assert targets == ["a.md#part", "img/x.png", "ref.md", "#top"]
    assert [block.language for block in _split(page)[0]] == ["python", "json"]
    assert _link_file(page, "a.md#part") == (tmp_path / "a.md").resolve()
    assert _link_file(page, "#top") is None


# -- Python snippets ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", CHECKED_FILES, ids=_ids(CHECKED_FILES))
def test_every_python_block_in_docs_parses(path: Path) -> None:
    errors = []
    for block in _python_blocks(path):
        try:
            ast.parse(block.text)
        except SyntaxError as err:
            line = block.line + (err.lineno or 0)
            errors.append(f"{_rel(path)}:{line}: {err.msg}: {(err.text or '').strip()!r}")
    assert not errors, "python blocks that do not parse:\n" + "\n".join(errors)


def _package_imports(path: Path) -> list[tuple[int, str, str | None]]:
    """``(line, module, name)`` for every import of this package in the page's Python blocks."""
    found: list[tuple[int, str, str | None]] = []
    for block in _python_blocks(path):
        try:
            tree = ast.parse(block.text)
        except SyntaxError:
            continue  # reported by test_every_python_block_in_docs_parses
        for node in ast.walk(tree):
            line = block.line + getattr(node, "lineno", 0)
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                if node.module == PACKAGE or node.module.startswith(PACKAGE + "."):
                    found += [(line, node.module, alias.name) for alias in node.names]
            elif isinstance(node, ast.Import):
                found += [
                    (line, alias.name, None)
                    for alias in node.names
                    if alias.name == PACKAGE or alias.name.startswith(PACKAGE + ".")
                ]
    return found


def _import_problem(module_name: str, name: str | None) -> str | None:
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        return f"module {module_name} does not exist ({err})"
    if name is None or name == "*" or hasattr(module, name):
        return None
    try:
        importlib.import_module(f"{module_name}.{name}")  # a submodule: `from pkg import sub`
    except ImportError:
        return f"{module_name} defines no {name!r}"
    return None


@pytest.mark.parametrize("path", CHECKED_FILES, ids=_ids(CHECKED_FILES))
def test_every_package_import_in_docs_names_a_real_module_and_attribute(path: Path) -> None:
    problems = [
        f"{_rel(path)}:{line}: from {module} import {name}: {problem}"
        for line, module, name in _package_imports(path)
        if (problem := _import_problem(module, name)) is not None
    ]
    assert not problems, "imports in docs that do not work:\n" + "\n".join(problems)


# -- runbooks ------------------------------------------------------------------------------------

RUNBOOK_SECTIONS = (
    "What happened",
    "Which guard prevents it",
    "How to configure it",
    "What the error looks like",
)
RUNBOOKS = sorted(path for path in (DOCS / "runbooks").glob("*.md") if path.name != "index.md")


@pytest.mark.parametrize("path", RUNBOOKS, ids=_ids(RUNBOOKS))
def test_every_runbook_has_the_four_sections_in_order(path: Path) -> None:
    _, prose = _split(path)
    sections = tuple(re.findall(r"^## (.+?)\s*$", prose, re.MULTILINE))
    assert sections == RUNBOOK_SECTIONS, f"{_rel(path)} has sections {sections}, expected {RUNBOOK_SECTIONS}"


# -- reference pages for what the provider registers --------------------------------------------


def _registered_operators_and_sensors() -> list[str]:
    from airflow.sdk import BaseOperator

    from airflow_training_guard.get_provider_info import get_provider_info

    info = get_provider_info()
    modules = [
        module
        for group in ("operators", "sensors")
        for entry in info[group]
        for module in entry["python-modules"]
    ]
    names = []
    for module_name in modules:
        module = importlib.import_module(module_name)
        for name, obj in inspect.getmembers(module, inspect.isclass):
            if obj.__module__ == module_name and not name.startswith("_") and issubclass(obj, BaseOperator):
                names.append(f"{module_name}.{name}")
    return sorted(names)


@cache
def _snippet_text() -> str:
    return "\n".join(block.text for page in DOC_PAGES for block in _python_blocks(page))


@pytest.mark.parametrize("qualified_name", _registered_operators_and_sensors())
def test_every_registered_operator_and_sensor_has_a_snippet_in_docs(qualified_name: str) -> None:
    name = qualified_name.rsplit(".", 1)[1]
    assert re.search(rf"\b{name}\(", _snippet_text()), (
        f"{qualified_name} is registered in get_provider_info() but no ```python block under docs/ "
        f"constructs it ({name}(...)); add an example to its reference page"
    )
