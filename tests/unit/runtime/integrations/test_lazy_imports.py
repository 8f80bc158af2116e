"""The package and the stdlib runtime contract never import a training library (they are optional extras)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[4]
HEAVY = ("torch", "transformers", "accelerate", "pytorch_lightning", "lightning", "safetensors", "numpy")


def test_importing_the_package_runtime_launcher_and_straggler_rule_loads_no_training_library() -> None:
    """A training container without torch crashed on `import airflow_training_guard.runtime`."""
    code = (
        "import sys, json\n"
        "import airflow_training_guard, airflow_training_guard.runtime\n"
        "import airflow_training_guard.runtime.integrations\n"
        "import airflow_training_guard.policies.stragglers, airflow_training_guard.launchers.process\n"
        f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True, timeout=120
    ).stdout
    assert json.loads(out.strip().splitlines()[-1]) == []
