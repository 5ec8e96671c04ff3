"""Node.js folders the tests run from: installed from their lock files when missing."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest


def ensure_node_modules(folder: Path, why: str) -> Path:
    """``npm ci`` in ``folder`` unless its node_modules is there; fail the tests clearly
    when node, npm or the install is missing."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail(f"node and npm are required for {why}", pytrace=False)
    modules = folder / "node_modules"
    if not modules.is_dir():
        proc = subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund"], cwd=folder, capture_output=True, text=True
        )
        if proc.returncode != 0:
            pytest.fail(
                f"`npm ci` in {folder} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}",
                pytrace=False,
            )
    return modules
