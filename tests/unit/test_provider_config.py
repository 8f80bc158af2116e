"""Every ``[training_guard]`` option the code reads is declared in the provider info (issue 19).

The failure this prevents: ``airflow config get-value training_guard gpu_node_label_selector``
warned "section/key [training_guard/gpu_node_label_selector] not found in config", and ``airflow
config list`` did not show the section at all: an operator could not find out which options exist
or what they default to. The tests read the package's source, so an option added to the code
without a declaration (or with a default that differs from the code's fallback) fails here.
"""

from __future__ import annotations

import ast
import importlib
import logging
import re
from pathlib import Path
from typing import Any

import pytest

from airflow_training_guard import settings
from airflow_training_guard.get_provider_info import get_provider_info

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "airflow_training_guard"
CONF_READERS = {"get", "getboolean", "getint", "getfloat", "getjson", "getlist", "getimport", "has_option"}


def _declared() -> dict[str, dict[str, Any]]:
    return get_provider_info()["config"][settings.CONFIG_SECTION]["options"]


def _is_our_section(node: ast.expr) -> bool:
    return (isinstance(node, ast.Name) and node.id == "CONFIG_SECTION") or (
        isinstance(node, ast.Constant) and node.value == settings.CONFIG_SECTION
    )


def _config_reads() -> list[tuple[str, ast.Call]]:
    """``(module, call)`` for every ``conf.<reader>("training_guard" or CONFIG_SECTION, ...)``."""
    reads = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in CONF_READERS
                and node.args
                and _is_our_section(node.args[0])
            ):
                reads.append((module, node))
    return reads


def _option_constants() -> dict[str, str]:
    return {name: value for name, value in vars(settings).items() if name.startswith("OPTION_")}


def test_the_scan_finds_the_options_the_code_is_known_to_read() -> None:
    """Guards the scan itself: if it found nothing, every test below would pass vacuously."""
    modules = {module for module, _ in _config_reads()}
    assert {
        "airflow_training_guard.backfill.policy",
        "airflow_training_guard.backfill.pools",
        "airflow_training_guard.hooks.kubernetes_inventory",
        "airflow_training_guard.operators.training_pod",
    } <= modules


def test_every_option_the_code_reads_is_an_option_constant_declared_in_the_provider_info() -> None:
    constants = _option_constants()
    wrong = []
    for module, call in _config_reads():
        key = call.args[1] if len(call.args) > 1 else None
        where = f"{module}:{call.lineno}"
        if not (isinstance(key, ast.Name) and key.id in constants):
            wrong.append(
                f"{where} reads {ast.unparse(key) if key else '?'}; use a settings.OPTION_* constant"
            )
        elif constants[key.id] not in _declared():
            wrong.append(f"{where} reads {constants[key.id]!r}, which get_provider_info() does not declare")
    assert not wrong, "\n".join(wrong)


def test_every_option_constant_is_declared_and_every_declared_option_has_a_constant() -> None:
    assert set(_option_constants().values()) == set(_declared())


def _as_config_text(value: object) -> str:
    return str(value) if not isinstance(value, str) else value


def test_declared_defaults_equal_the_fallbacks_in_the_code() -> None:
    """The code passes fallback= so it works where the provider is not registered; both must agree."""
    constants = _option_constants()
    checked = 0
    for module_name, call in _config_reads():
        fallback = next((kw.value for kw in call.keywords if kw.arg == "fallback"), None)
        key = call.args[1]
        if fallback is None or not isinstance(key, ast.Name):
            continue
        module = importlib.import_module(module_name)
        value = eval(compile(ast.Expression(fallback), module_name, "eval"), vars(module))
        option = constants[key.id]
        assert _as_config_text(value) == _declared()[option]["default"], (
            f"{module_name}:{call.lineno} {option}"
        )
        checked += 1
    assert checked >= len(_declared())


@pytest.mark.parametrize("option", sorted(_declared()))
def test_each_declared_option_has_its_fields_and_a_default_of_its_type(option: str) -> None:
    spec = _declared()[option]
    assert set(spec) >= {"description", "version_added", "type", "example", "default"}
    assert spec["description"].strip() and spec["version_added"]
    parse = {"boolean": lambda v: {"True": True, "False": False}[v], "integer": int, "string": str}
    parse[spec["type"]](spec["default"])
    if spec["example"] is not None:
        parse[spec["type"]](spec["example"])


@pytest.mark.parametrize("option", sorted(_declared()))
def test_airflow_knows_each_option_with_no_not_found_warning(
    option: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """What ``airflow config get-value`` / ``config list`` read: conf.get without a fallback."""
    from airflow.configuration import conf, retrieve_configuration_description

    monkeypatch.delenv(f"AIRFLOW__TRAINING_GUARD__{option.upper()}", raising=False)
    with caplog.at_level(logging.WARNING):
        value = conf.get(settings.CONFIG_SECTION, option)
    assert value == _declared()[option]["default"]
    assert "not found" not in caplog.text
    described = retrieve_configuration_description(include_airflow=False)[settings.CONFIG_SECTION]
    assert option in described["options"]


def test_docs_list_every_option() -> None:
    text = (ROOT / "docs" / "configuration.md").read_text()
    documented = set(re.findall(r"^\| `(\w+)` \|", text, flags=re.MULTILINE))
    assert documented == set(_declared())
