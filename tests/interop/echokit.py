"""The echo server under test, for the interop suite: how to start and stop it.

``examples/echo.py`` by default, or Node's reference implementation
(``tests/interop/node/reference_echo.mjs``) when ``MSSTORM_INTEROP_SERVER=node``,
which is how the suite itself is validated. Tests import from here by this
module's own name: ``from conftest import`` would find whichever test folder's
conftest was imported first.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parents[2]
NODE_DIR = ROOT / "tests" / "interop" / "node"

DEFAULTS = {
    "ping_interval": 25000,
    "ping_timeout": 20000,
    "connect_timeout": 45000,
    "max_payload": 1000000,
}
START_TIMEOUT = 15.0
# The tests run against Node's reference server instead (to validate them).
REFERENCE = os.environ.get("MSSTORM_INTEROP_SERVER") == "node"

# Every interop test runs over each way a client may connect: WebSocket alone,
# HTTP long-polling alone, and the clients' default (polling, then the upgrade).
TRANSPORTS = {
    "websocket": ["websocket"],
    "polling": ["polling"],
    "upgrade": ["polling", "websocket"],
}


@dataclass
class EchoServer:
    url: str
    port: int
    process: subprocess.Popen
    _log: IO[bytes]

    def log(self) -> str:
        """Everything the server wrote to stdout/stderr so far."""
        self._log.flush()
        self._log.seek(0)
        return self._log.read().decode(errors="replace")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def command(port: int, options: dict) -> list[str]:
    unknown = set(options) - set(DEFAULTS)
    if unknown:
        raise TypeError(f"unknown echo_server options: {sorted(unknown)}")
    opts = {**DEFAULTS, **options}
    if REFERENCE:
        cmd = ["node", str(NODE_DIR / "reference_echo.mjs")]
    else:
        cmd = [sys.executable, str(ROOT / "examples" / "echo.py")]
    cmd += ["--host", "127.0.0.1", "--port", str(port)]
    for name, value in opts.items():
        cmd += ["--" + name.replace("_", "-"), str(value)]
    return cmd


def stop_server(server: EchoServer) -> None:
    proc = server.process
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
