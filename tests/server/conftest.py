"""Fixtures of the loopback tests (helpers in rawclient.py).

``served`` is examples/echo.py's endpoints in the test's own event loop. ``echo``
is each server a rule of the protocol itself is checked on: msstorm's (``served``)
and Node's own socket.io, engine.io 6.6 (``tests/interop/node/reference_echo.mjs``,
one process for the whole run), so that such a test proves it describes the
real protocol and not msstorm's reading of it.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any

import pytest
import uvloop
from nodejs import ensure_node_modules
from rawclient import OPTIONS, ROOT, Echo, Served, serving

NODE_DIR = ROOT / "tests" / "interop" / "node"
SERVERS = ("msstorm", "node")
START_TIMEOUT = 15.0
# Node's timers act up to a few milliseconds late (measured: 1 in 20 past 1 ms, none
# past 5 ms on an idle machine); this leaves room for a busy one.
NODE_TIMER_LAG = 0.02


def pytest_asyncio_loop_factories(config: Any, item: Any) -> Mapping[str, Callable[[], Any]]:
    # Every server test runs on asyncio's loop and on uvloop.
    return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    async with serving() as served:
        yield served


@pytest.fixture(params=SERVERS)
async def echo(request: pytest.FixtureRequest) -> AsyncIterator[Echo]:
    if request.param == "node":
        yield request.getfixturevalue("node_echo")
        return
    async with serving() as served:
        yield served


@pytest.fixture(scope="session")
def node_echo() -> Iterator[Echo]:
    """Node's reference echo server, with the heartbeat of OPTIONS."""
    ensure_node_modules(NODE_DIR, "the tests of tests/server that run on Node's engine.io")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = ["node", str(NODE_DIR / "reference_echo.mjs"), "--host", "127.0.0.1"]
    command += ["--port", str(port)]
    for name, value in OPTIONS.items():
        command += ["--" + name.replace("_", "-"), str(value)]
    with tempfile.TemporaryFile() as log:  # a file: a pipe nobody reads would fill up
        process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait_listening(process, port, log)
            yield Echo(port, timer_lag=NODE_TIMER_LAG)
        finally:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_listening(process: subprocess.Popen[bytes], port: int, log: Any) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        exited = process.poll() is not None
        if exited or time.monotonic() > deadline:
            log.seek(0)
            output = log.read().decode(errors="replace")
            why = f"exited with {process.returncode}" if exited else f"after {START_TIMEOUT} s"
            pytest.fail(f"Node's reference echo not listening on {port} ({why}):\n{output}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
