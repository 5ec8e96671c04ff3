"""None where a compiled entry point wants an object is an exception, never a crash.

Cython lets None through a typed argument; reading a field of it then segfaults the
whole server. Each compiled module is probed in a process of its own.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import msstorm._fastpath

PROBE = Path(__file__).with_name("none_probe.py")
FASTPATH = Path(msstorm._fastpath.__file__).parent
COMPILED = sorted(path.name.split(".")[0] for path in FASTPATH.glob("*_c.*.so"))


def test_every_compiled_module_is_probed() -> None:
    assert len(COMPILED) >= 10, f"compiled modules missing (make build?): {COMPILED}"


@pytest.mark.parametrize("module", COMPILED)
def test_none_arguments_raise(module: str) -> None:
    run = subprocess.run(
        [sys.executable, str(PROBE), f"msstorm._fastpath.{module}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = run.stdout.split()
    assert run.returncode == 0, (
        f"{module} crashed (exit {run.returncode}) on None, last call: "
        f"{run.stdout.splitlines()[-1:] or '?'}\n{run.stderr[-2000:]}"
    )
    assert lines[-2] == "OK" and int(lines[-1]) > 0, run.stdout[-500:]
