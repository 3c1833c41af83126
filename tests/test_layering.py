"""Architecture checks that fail the suite: lint, types, and the import layering contracts."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _tool(name: str) -> str:
    exe = Path(sys.executable).parent / name
    return str(exe) if exe.exists() else (shutil.which(name) or name)


def test_engine_and_db_never_import_qt_and_layers_hold() -> None:
    r = subprocess.run([_tool("lint-imports")], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_ruff_clean() -> None:
    r = subprocess.run([_tool("ruff"), "check", "app", "engine", "db", "models", "tests", "bench"],
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_mypy_engine_db_and_app() -> None:
    r = subprocess.run([_tool("mypy"), "engine", "db", "app"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
