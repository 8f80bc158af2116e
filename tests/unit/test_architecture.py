"""The rooms import only what docs/architecture.md allows; pure rooms stay free of Airflow; no cycles.

Regression: ``hooks/hub.py`` imported ``policies.hub_repos`` while ``preflight.checks`` imported
``hooks``: a cycle that made the Hub client impossible to use without the pre-flight room.
"""

from __future__ import annotations

import ast
import collections
import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "airflow_training_guard"
DOC = ROOT / "docs" / "architecture.md"
PURE_ROOMS = ("runtime", "policies", "partitions")
#: Every room but runtime may import these without listing them (docs/architecture.md).
FOUNDATION = {"exceptions", "settings", "secrets"}
#: Every room but the pure rooms may import these without listing them (docs/architecture.md).
AIRFLOW_FOUNDATION = {"telemetry"}


def allowed() -> dict[str, set[str]]:
    rules: dict[str, set[str]] = {}
    rooms: list[str] = []
    for line in DOC.read_text().splitlines():
        match = re.match(r"^\| `(\w+)` \| .* \| (.*) \|$", line)
        if not match:
            continue
        room, imports = match.groups()
        rooms.append(room)
        if imports.startswith("every room"):
            rules[room] = {"*"}
        else:
            rules[room] = set(re.findall(r"`(\w+)`", imports))
    return rules


def room_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "(package)"


def room_imports() -> dict[str, dict[str, list[str]]]:
    """room -> imported room -> the files that import it (module-level and lazy imports alike)."""
    edges: dict[str, dict[str, list[str]]] = collections.defaultdict(lambda: collections.defaultdict(list))
    for path in PACKAGE.rglob("*.py"):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        source = room_of(module)
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            for name in names:
                if name.startswith("airflow_training_guard."):
                    target = room_of(name)
                    if target != source:
                        edges[source][target].append(str(path.relative_to(ROOT)))
    return edges


def test_every_room_is_in_the_table() -> None:
    rooms = {p.name.removesuffix(".py") for p in PACKAGE.iterdir() if not p.name.startswith(("_", "."))}
    rooms -= {"get_provider_info", "py.typed"}
    missing = rooms - set(allowed())
    assert not missing, f"add these rooms to docs/architecture.md: {sorted(missing)}"


def test_rooms_import_only_what_the_table_allows() -> None:
    rules = allowed()
    wrong = []
    for source, targets in room_imports().items():
        permitted = rules.get(source, set())
        if "*" in permitted:
            continue
        for target, files in targets.items():
            foundation = FOUNDATION if source != "runtime" else set()
            if source not in PURE_ROOMS:
                foundation = foundation | AIRFLOW_FOUNDATION
            if target not in permitted | foundation and target != "(package)":
                wrong.append(f"{source} -> {target} in {sorted(set(files))}")
    assert not wrong, "\n".join(wrong)


def test_no_two_rooms_import_each_other() -> None:
    edges = room_imports()
    cycles = sorted(f"{a} <-> {b}" for a in edges for b in edges[a] if a < b and a in edges.get(b, {}))
    assert not cycles, cycles


def test_pure_rooms_import_no_airflow() -> None:
    modules = [
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for room in PURE_ROOMS
        for p in (PACKAGE / room).rglob("*.py")
    ]
    code = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted(m for m in sys.modules if m == 'airflow' or m.startswith('airflow.'))))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


def test_the_doc_states_the_foundations_this_test_allows() -> None:
    """The exemptions above are the doc's sentences, not the test's own rules."""
    text = " ".join(DOC.read_text().split())
    assert "`exceptions`, `settings` and `secrets` are the foundation: every room but `runtime`" in text
    assert "`telemetry` is the foundation of the Airflow rooms: every room but the pure rooms" in text
    assert set(allowed()["telemetry"]) == set(), "telemetry imports no room of the package"
