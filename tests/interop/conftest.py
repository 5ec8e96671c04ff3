"""Fixtures for the Node.js interop suite.

``echo_server(**options)`` starts the echo server under test (echokit.py) on a free
port.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from echokit import (
    NODE_DIR,
    ROOT,
    START_TIMEOUT,
    TRANSPORTS,
    EchoServer,
    command,
    free_port,
    stop_server,
)
from nodejs import ensure_node_modules


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
            port = port or free_port()
            cmd = command(port, options)
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
