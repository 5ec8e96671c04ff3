"""Fixtures for the peer suite: msstorm-server and the two peers it is measured
against (Node socket.io, python-socketio), each run as a subprocess and driven by
the msstorm swarm and a python-socketio monitor.

``storm`` (module scope, one per server) is a running server with a swarm of
``CLIENTS`` connected clients; ``launch(name)`` starts a bare server (no swarm);
``monitor`` connects a monitor to a server. ``running(name, *flags, group=True)``
and ``Redis`` serve the peers' multi-process forms (test_multiprocess.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest
import socketio
from nodejs import ensure_node_modules

ROOT = Path(__file__).resolve().parents[2]
PEERS = ROOT / "bench" / "peers"
NODE_DIR = PEERS / "node_socketio"
BIN = Path(sys.executable).parent

TOKEN = "peer-suite-token"
CLIENTS = 200
OP_TIMEOUT = 2  # seconds: an operation missing answers ends this soon
MAX_TREE_LEAVES = 1024
START_TIMEOUT = 20.0
SERVERS = ("msstorm", "node", "python-socketio")


def _script(name: str, module: str) -> list[str]:
    """The console script beside this Python, else its module."""
    path = BIN / name
    return [str(path)] if path.exists() else [sys.executable, "-m", module]


def server_command(name: str) -> list[str]:
    if name == "msstorm":
        return _script("msstorm-server", "msstorm.storm.cli")
    if name == "node":
        return ["node", str(NODE_DIR / "messagestorm.mjs")]
    if name == "python-socketio":
        return [sys.executable, str(PEERS / "python_socketio" / "messagestorm.py")]
    raise ValueError(name)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop(process: subprocess.Popen[bytes], timeout: float = 10.0, group: bool = False) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if group:  # a multi-process server: whatever of it outlived its first process
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)


def _read(log: IO[bytes]) -> str:
    log.flush()
    log.seek(0)
    return log.read().decode(errors="replace")


@dataclass
class Storm:
    """A server under test, and (once started) the swarm connected to it."""

    name: str
    url: str
    process: subprocess.Popen[bytes]
    log: IO[bytes]
    swarm: subprocess.Popen[bytes] | None = None
    swarm_out: IO[bytes] | None = None
    swarm_err: IO[bytes] | None = None
    # what the server answered before any client was connected
    before_clients: dict[str, Any] = field(default_factory=dict)

    def output(self) -> str:
        return _read(self.log)

    def stop_swarm(self) -> tuple[int, dict[str, Any] | None, str]:
        """SIGTERM the swarm: its exit status, JSON summary and stderr."""
        assert self.swarm is not None and self.swarm_out is not None
        assert self.swarm_err is not None
        _stop(self.swarm, timeout=20)
        out = _read(self.swarm_out).strip()
        summary = json.loads(out.splitlines()[-1]) if out else None
        return self.swarm.returncode, summary, _read(self.swarm_err)


@contextlib.contextmanager
def running(name: str, *flags: str, group: bool = False) -> Iterator[Storm]:
    """Start server ``name`` on a free port, with the suite's token and limits and
    ``flags``; ``group``: in a process group of its own, killed whole at the end."""
    port = _free_port()
    command = [
        *server_command(name),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--monitor-token",
        TOKEN,
        "--op-timeout",
        str(OP_TIMEOUT),
        "--max-tree-leaves",
        str(MAX_TREE_LEAVES),
        "--ping-interval",
        "5000",
        "--ping-timeout",
        "5000",
        "--log-level",
        "warning",
        *flags,
    ]
    with contextlib.ExitStack() as stack:
        # a file, not a pipe: nobody reads it while the tests run
        log = stack.enter_context(tempfile.TemporaryFile())
        process = subprocess.Popen(
            command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=group
        )
        storm = Storm(name, f"http://127.0.0.1:{port}", process, log)
        stack.callback(_stop, process, 10.0, group)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if process.poll() is not None:
                pytest.fail(
                    f"{name} exited with {process.returncode} before listening: {command}\n"
                    + storm.output(),
                    pytrace=False,
                )
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"{name} not listening after {START_TIMEOUT} s\n" + storm.output())
            time.sleep(0.05)
        yield storm


class Redis:
    """A real redis-server on a free loopback port, in memory only."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Redis:
        if shutil.which("redis-server") is None:
            pytest.fail("redis-server is required (`make system-deps`)", pytrace=False)
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no"]
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.__exit__()
                pytest.fail("redis-server did not start", pytrace=False)
            time.sleep(0.05)

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            _stop(self.process)


@contextlib.contextmanager
def swarm(server: Storm, count: int) -> Iterator[None]:
    """``count`` msstorm-client connections to ``server``, stopped at the end."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        server.swarm_out, server.swarm_err = out, err
        command = [
            *_script("msstorm-client", "msstorm.swarm.cli"),
            "--url",
            server.url,
            "--conns",
            str(count),
            "--no-log",
            "--procs",
            "1",
            "--json",
        ]
        server.swarm = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=err)
        try:
            yield
        finally:
            _stop(server.swarm, 20)


# -- the monitor ---------------------------------------------------------------


class Monitor:
    """python-socketio on /monitor, collecting pushed statuses by operation."""

    def __init__(self) -> None:
        self.sio = socketio.AsyncClient(reconnection=False)
        self.statuses: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.events: asyncio.Queue[Any] = asyncio.Queue()  # every status event, in order
        self.sio.on("status", self._status, namespace="/monitor")

    async def connect(self, url: str, auth: Any) -> None:
        await self.sio.connect(
            url, transports=["websocket"], namespaces=["/monitor"], auth=auth, wait_timeout=5
        )

    def _future(self, op: str) -> asyncio.Future[dict[str, Any]]:
        if op not in self.statuses:
            self.statuses[op] = asyncio.get_running_loop().create_future()
        return self.statuses[op]

    async def _status(self, status: Any) -> None:
        self.events.put_nowait(status)
        if isinstance(status, dict) and "op" in status:
            future = self._future(status["op"])
            if not future.done():
                future.set_result(status)

    async def call(self, event: str, *args: Any) -> Any:
        """Emit ``event`` with ``args`` (none, one or several) and wait for its ack."""
        data = args[0] if len(args) == 1 else tuple(args) if args else None
        return await self.sio.call(event, data, namespace="/monitor", timeout=5)

    async def initiate(self, *args: Any) -> Any:
        return await self.call("initiatePoke", *args)

    async def request(self, *args: Any) -> Any:
        return await self.call("statusRequest", *args)

    async def status_of(self, op: str, timeout: float = OP_TIMEOUT + 5) -> dict[str, Any]:
        """The status pushed when ``op`` ended."""
        return await asyncio.wait_for(asyncio.shield(self._future(op)), timeout)

    async def close(self) -> None:
        await self.sio.disconnect()


async def connect_monitor(url: str, token: str = TOKEN) -> Monitor:
    monitor = Monitor()
    await monitor.connect(url, {"token": token})
    return monitor


async def _before_clients(url: str) -> dict[str, Any]:
    """initiatePoke answers while no client is connected (all no-clients but
    the bad-tree-leaves, which is checked first)."""
    monitor = await connect_monitor(url)
    try:
        answers = {
            "broadcast": await monitor.initiate({"type": "broadcast"}),
            "unicast": await monitor.initiate({"type": "unicast"}),
            "tree": await monitor.initiate({"type": "tree", "treeLeaves": 4}),
            "tree of 3": await monitor.initiate({"type": "tree", "treeLeaves": 3}),
            "overview": await monitor.request(),
        }
    finally:
        await monitor.close()
    return answers


async def wait_for_clients(storm: Storm, count: int, timeout: float = 30.0) -> None:
    monitor = await connect_monitor(storm.url)
    try:
        deadline = time.monotonic() + timeout
        clients = 0
        while time.monotonic() < deadline:
            assert storm.swarm is not None
            if storm.swarm.poll() is not None:
                break
            clients = (await monitor.request({"detail": "summary"}))["clients"]
            if clients >= count:
                return
            await asyncio.sleep(0.1)
        swarm_err = _read(storm.swarm_err) if storm.swarm_err else ""
        pytest.fail(
            f"{storm.name}: {clients} of {count} clients connected\n{swarm_err}\n{storm.output()}",
            pytrace=False,
        )
    finally:
        await monitor.close()


# -- fixtures ------------------------------------------------------------------


@pytest.fixture(scope="session", autouse=True)
def node_modules() -> Path:
    """The Node peer's dependencies, installed from its package-lock.json (again when
    the lock file changed since: `make node-deps`'s rule, for a bare pytest run)."""
    modules = NODE_DIR / "node_modules"
    installed = modules / ".package-lock.json"
    lock = NODE_DIR / "package-lock.json"
    if installed.exists() and installed.stat().st_mtime < lock.stat().st_mtime:
        shutil.rmtree(modules)  # what `npm ci` does first anyway
    return ensure_node_modules(NODE_DIR, "the peer tests")


@pytest.fixture(scope="module", params=SERVERS)
def storm(request: pytest.FixtureRequest, node_modules: Path) -> Iterator[Storm]:
    """A server with ``CLIENTS`` msstorm-client connections answering pokes."""
    with running(request.param) as server:
        server.before_clients = asyncio.run(_before_clients(server.url))
        with swarm(server, CLIENTS):
            asyncio.run(wait_for_clients(server, CLIENTS))
            yield server


@pytest.fixture
def launch() -> Iterator[Callable[[str], Storm]]:
    """Factory: ``launch(name)`` starts a bare server, stopped after the test."""
    with contextlib.ExitStack() as stack:
        yield lambda name: stack.enter_context(running(name))


@pytest.fixture
async def monitor() -> AsyncIterator[Callable[..., Any]]:
    """Factory: ``await monitor(url, token=TOKEN)`` -> a connected Monitor."""
    monitors: list[Monitor] = []

    async def connect(url: str, token: str = TOKEN) -> Monitor:
        m = await connect_monitor(url, token)
        monitors.append(m)
        return m

    yield connect
    for m in monitors:
        await m.close()
