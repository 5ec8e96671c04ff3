"""`make wheel` builds a wheel that installs into a fresh virtual environment and runs.

Slow-ish (an isolated build compiles the extensions): one test does it all.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str | Path, cwd: Path = ROOT) -> str:
    done = subprocess.run(
        [str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, f"{args} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_wheel_installs_and_serves(tmp_path: Path) -> None:
    run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", tmp_path, ".")
    (wheel,) = tmp_path.glob("msstorm-*.whl")
    assert "cp311" in wheel.name or "cp3" in wheel.name  # compiled, not pure Python

    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv)
    run(venv / "bin" / "pip", "install", "--quiet", wheel)
    # The installed package must use its compiled extensions, away from the source tree.
    check = (
        "import sys, msstorm._fastpath as f; "
        "print(f.compiled(f.codec), *(f.compiled(sys.modules[c.__module__]) for c in "
        "(f.Connection, f.TimerWheel, f.Histogram, f.PokeTable, f.PokeFrame)))"
    )
    assert run(venv / "bin" / "python", "-c", check, cwd=tmp_path).split() == ["True"] * 6
    assert "usage: msstorm-server" in run(venv / "bin" / "msstorm-server", "--help", cwd=tmp_path)

    port = free_port()
    server = subprocess.Popen(
        [venv / "bin" / "msstorm-server", "--port", str(port)],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                    assert json.loads(r.read())["status"] == "ok"
                break
            except OSError:
                assert server.poll() is None, server.stderr.read() if server.stderr else ""
                assert time.monotonic() < deadline, "msstorm-server did not answer /healthz"
                time.sleep(0.2)
    finally:
        server.terminate()
        server.wait(timeout=10)
