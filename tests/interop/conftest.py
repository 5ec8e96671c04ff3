"""Fixtures for the Node.js interop suite.

``echo_server(**options)`` starts the echo server under test on a free port:
``examples/echo.py`` by default, or Node's reference implementation
(``tests/interop/node/reference_echo.mjs``) when ``MSSTORM_INTEROP_SERVER=node``,
which is how the suite itself is validated.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pytest
from nodejs import ensure_node_modules

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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _command(port: int, options: dict) -> list[str]:
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


@pytest.fixture(params=list(TRANSPORTS))
def transports(request: pytest.FixtureRequest) -> str:
    """The name of the transports a test's clients use (a key of ``TRANSPORTS``)."""
    return str(request.param)


@pytest.fixture(scope="session", autouse=True)
def node_modules() -> Path:
    """Make sure the Node dependencies (package-lock.json) are installed."""
    return ensure_node_modules(NODE_DIR, "the interop tests")


@pytest.fixture
def echo_server():
    """Factory: ``echo_server(ping_interval=200, ...)`` -> running EchoServer.

    ``echo_server(port=server.port)`` starts a new server where an old one (stopped
    with ``stop_server``) listened: a server restart, as clients see it.
    """
    with contextlib.ExitStack() as stack:  # stops the servers, then closes their logs

        def start(port: int | None = None, **options) -> EchoServer:
            port = port or _free_port()
            cmd = _command(port, options)
            # a file, not a pipe: nobody reads it while the test runs, a full pipe would block
            log = stack.enter_context(tempfile.TemporaryFile())
            proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
            server = EchoServer(f"http://127.0.0.1:{port}", port, proc, log)
            stack.callback(stop_server, server)
            deadline = time.monotonic() + START_TIMEOUT
            while True:
                if proc.poll() is not None:
                    pytest.fail(
                        f"server exited with {proc.returncode} before listening: {cmd}\n"
                        + server.log(),
                        pytrace=False,
                    )
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                    return server
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail(
                        f"server not listening on port {port} after {START_TIMEOUT} s: {cmd}\n"
                        + server.log(),
                        pytrace=False,
                    )
                time.sleep(0.05)

        yield start
