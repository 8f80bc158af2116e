"""The example training image carries only what the runtime contract needs, and it is enough."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "examples" / "training" / "Dockerfile"


def _copies() -> list[tuple[list[str], str]]:
    copies = []
    for line in DOCKERFILE.read_text().splitlines():
        if line.startswith("COPY "):
            *sources, target = line.split()[1:]
            copies.append((sources, target))
    return copies


def test_every_file_the_image_copies_exists_in_the_repository() -> None:
    for sources, _ in _copies():
        for source in sources:
            assert (REPO / source).exists(), f"{DOCKERFILE.name} copies missing {source}"


def test_numpy_pin_in_the_image_matches_the_constraints_file() -> None:
    pinned = re.search(r'"numpy==([^"]+)"', DOCKERFILE.read_text())
    constraints = (REPO / "constraints" / "constraints-3.11.txt").read_text()
    assert pinned is not None
    assert f"numpy=={pinned.group(1)}\n" in constraints


def test_runtime_imports_from_only_the_copied_files_without_site_packages(tmp_path: Path) -> None:
    """Training images have no Airflow: the runtime must work from the copied files alone."""
    for sources, target in _copies():
        dest = tmp_path / target.lstrip("/")
        for source in sources:
            src = REPO / source
            if src.is_dir():
                shutil.copytree(
                    src, dest if not target.endswith("/") else dest / src.name, dirs_exist_ok=True
                )
            else:
                (dest if target.endswith("/") else dest.parent).mkdir(parents=True, exist_ok=True)
                shutil.copy(src, dest / src.name if target.endswith("/") else dest)
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "from airflow_training_guard.runtime import Checkpointer, Heartbeat, PreemptionGuard, TrainingEnvironment;"
        "print('ok')"
    )
    # -S: no site-packages (no Airflow, no NumPy), -E: ignore PYTHONPATH and friends.
    proc = subprocess.run(
        [sys.executable, "-S", "-E", "-c", code, str(tmp_path / "app")], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"
