"""Rooms and python-socketio's server API: the chat of ``examples/chat.py``, driven by
python-socketio ``AsyncClient``s and Node ``socket.io-client``s side by side.

Every test runs against each way of serving the same application:

- ``msstorm``: ``msstorm.run`` in one process;
- ``python-socketio``: python-socketio's own ``AsyncServer`` on aiohttp, the same
  handlers (so the tests describe python-socketio's behaviour, not msstorm's);
- ``msstorm-3-workers``: three workers on one port, joined by the embedded bus;
- ``msstorm-2-nodes``: two instances joined by a real ``redis-server``;
- ``python-socketio-redis``: three python-socketio processes joined by
  ``AsyncRedisManager`` on a real ``redis-server``.

The members of a test connect alternately with Python and Node clients, over
WebSocket, long-polling and the clients' default (polling, then the upgrade), and
to each process of the cluster in turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import socketio

ROOT = Path(__file__).resolve().parents[2]
CHAT = ROOT / "examples" / "chat.py"
MEMBER = ROOT / "tests" / "interop" / "node" / "member.mjs"
WAIT = 5.0  # seconds an expected event may take
QUIET = 0.3  # seconds an unexpected event has to show up
KINDS = ["msstorm", "python-socketio", "msstorm-3-workers", "msstorm-2-nodes"]
KINDS.append("python-socketio-redis")
TRANSPORTS = [["polling", "websocket"], ["websocket"], ["polling"]]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Chat:
    """The chat served one way: its processes, and the URL of each entry point."""

    kind: str
    urls: list[str]
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: list[Any] = field(default_factory=list)

    def output(self) -> str:
        text = []
        for log in self.logs:
            log.seek(0)
            text.append(log.read().decode(errors="replace")[-3000:])
        return "\n---\n".join(text)

    def start(self, port: int, *options: str, **env: str) -> None:
        log = tempfile.TemporaryFile()  # noqa: SIM115 - closed by stop()
        self.logs.append(log)
        self.processes.append(
            subprocess.Popen(
                [sys.executable, str(CHAT), "--port", str(port), *options],
                cwd=ROOT,
                env={**os.environ, **env},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
        deadline = time.monotonic() + 20
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    return
            if self.processes[-1].poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the {self.kind} chat did not start:\n{self.output()}", pytrace=False)
            time.sleep(0.05)

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for log in self.logs:
            log.close()


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is required: `make system-deps` says how to get it")
    port = free_port()
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
            if time.monotonic() > deadline:
                pytest.fail("redis-server did not start")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture(scope="module", params=KINDS)
def chat(request: pytest.FixtureRequest) -> Iterator[Chat]:
    kind = request.param
    with contextlib.ExitStack() as stack:
        server = Chat(kind, [])
        stack.callback(server.stop)
        ports = [free_port()]
        if kind == "msstorm":
            server.start(ports[0])
        elif kind == "python-socketio":
            server.start(ports[0], MSSTORM_CHAT_SERVER="python-socketio")
        elif kind == "msstorm-3-workers":
            server.start(ports[0], "--workers", "3")
        elif kind == "msstorm-2-nodes":
            url = stack.enter_context(redis_server())
            ports.append(free_port())
            for port in ports:
                server.start(port, "--bus", url)
        else:
            url = stack.enter_context(redis_server())
            ports += [free_port(), free_port()]
            for port in ports:
                server.start(port, MSSTORM_CHAT_SERVER="python-socketio", MSSTORM_CHAT_REDIS=url)
        server.urls = [f"http://127.0.0.1:{port}" for port in ports]
        yield server


# -- members: one interface over both clients -----------------------------------


class Member:
    """A chat client; ``events[name]`` queues the arguments of each event received."""

    sid = ""
    refusal: Any = None

    def __init__(self, name: str) -> None:
        self.name = name
        self.events: dict[str, asyncio.Queue[list[Any]]] = {}
        self.gone = asyncio.Event()

    def _queue(self, event: str) -> asyncio.Queue[list[Any]]:
        return self.events.setdefault(event, asyncio.Queue())

    async def next(self, event: str) -> list[Any]:
        """The arguments of the next ``event``."""
        try:
            return await asyncio.wait_for(self._queue(event).get(), WAIT)
        except TimeoutError:
            pytest.fail(f"{self.name} ({type(self).__name__}) got no {event!r} in {WAIT} s")

    async def silent(self, event: str) -> None:
        """Fail if an ``event`` comes within QUIET seconds (or has come)."""
        await asyncio.sleep(QUIET)
        queue = self._queue(event)
        assert queue.empty(), f"{self.name} got an unexpected {event!r}: {queue.get_nowait()}"

    async def emit(self, event: str, *args: Any) -> None:
        raise NotImplementedError

    async def ask(self, event: str, *args: Any) -> Any:
        """Emit with an ack; the ack's first value."""
        raise NotImplementedError

    async def leave(self) -> None:
        raise NotImplementedError


class PythonMember(Member):
    async def start(self, url: str, transports: list[str], auth: Any, namespace: str) -> None:
        self.namespace = namespace
        self.client = client = socketio.AsyncClient(reconnection=False)
        name = self.name

        @client.on("*", namespace=namespace)
        def anything(event: str, *args: Any) -> None:
            self._queue(event).put_nowait(list(args))

        @client.on("question", namespace=namespace)
        def question(asked: dict[str, Any]) -> dict[str, Any]:
            return {"from": name, "answer": f"yes to {asked['q']}"}

        @client.on("connect_error", namespace=namespace)
        def connect_error(data: Any) -> None:
            self.refusal = data

        @client.on("disconnect", namespace=namespace)
        def disconnect(*reason: Any) -> None:
            self.gone.set()

        try:
            await client.connect(
                url, auth=auth, transports=transports, namespaces=[namespace], wait_timeout=5
            )
        except socketio.exceptions.ConnectionError:
            if self.refusal is None:
                raise
            return
        self.sid = client.get_sid(namespace) or ""

    async def emit(self, event: str, *args: Any) -> None:
        await self.client.emit(event, _data(args), namespace=self.namespace)

    async def ask(self, event: str, *args: Any) -> Any:
        answer = await self.client.call(event, _data(args), namespace=self.namespace, timeout=WAIT)
        return answer[0] if isinstance(answer, tuple) else answer

    async def leave(self) -> None:
        await self.client.disconnect()


def _data(args: tuple[Any, ...]) -> Any:
    return None if not args else args[0] if len(args) == 1 else args


class NodeMember(Member):
    async def start(self, url: str, transports: list[str], auth: Any, namespace: str) -> None:
        options = {"auth": auth, "transports": transports, "name": self.name}
        self.process = await asyncio.create_subprocess_exec(
            "node",
            str(MEMBER),
            url,
            namespace,
            json.dumps(options),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        self._acks: dict[int, asyncio.Future[list[Any]]] = {}
        self._numbers = itertools.count()
        started: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._reader = asyncio.ensure_future(self._read(started))
        await asyncio.wait_for(started, 10)

    async def _read(self, started: asyncio.Future[None]) -> None:
        assert self.process.stdout is not None
        async for line in self.process.stdout:
            message = json.loads(line)
            kind = message["type"]
            if kind == "connect":
                self.sid = message["id"]
            elif kind == "connect_error":
                self.refusal = {"message": message["message"]}
                if message["data"] is not None:
                    self.refusal["data"] = message["data"]
            elif kind == "event":
                self._queue(message["event"]).put_nowait(message["args"])
            elif kind == "ack":
                self._acks.pop(message["n"]).set_result(message["args"])
            elif kind == "disconnect":
                self.gone.set()
            if kind in ("connect", "connect_error") and not started.done():
                started.set_result(None)
        self.gone.set()

    def _send(self, command: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(command).encode() + b"\n")

    async def emit(self, event: str, *args: Any) -> None:
        self._send({"op": "emit", "event": event, "args": list(args), "ack": False})

    async def ask(self, event: str, *args: Any) -> Any:
        n = next(self._numbers)
        self._acks[n] = asyncio.get_running_loop().create_future()
        self._send({"n": n, "op": "emit", "event": event, "args": list(args), "ack": True})
        answer = await asyncio.wait_for(self._acks[n], WAIT)
        return answer[0] if answer else None

    async def leave(self) -> None:
        if self.process.returncode is None:
            self._send({"op": "disconnect"})
            await asyncio.wait_for(self.gone.wait(), WAIT)

    async def stop(self) -> None:
        if self.process.returncode is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            try:
                await asyncio.wait_for(self.process.wait(), 3)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        self._reader.cancel()


class Room:
    """The members a test connects: ``await room.member("ann")``."""

    def __init__(self, chat: Chat) -> None:
        self.chat = chat
        self.members: list[Member] = []
        self._turn = itertools.count()

    async def member(
        self, name: str, auth: Any = None, namespace: str = "/", refused: bool = False
    ) -> Member:
        turn = next(self._turn)
        kind = PythonMember if turn % 2 == 0 else NodeMember
        member = kind(name)
        self.members.append(member)
        url = self.chat.urls[turn % len(self.chat.urls)]
        transports = TRANSPORTS[(turn // 2) % len(TRANSPORTS)]
        await member.start(url, transports, {"name": name} if auth is None else auth, namespace)
        if refused:
            assert member.refusal is not None and not member.sid, member.refusal
        elif not member.sid:
            pytest.fail(f"{name} could not connect: {member.refusal}\n{self.chat.output()}")
        return member

    async def close(self) -> None:
        for member in self.members:
            with contextlib.suppress(Exception):
                if isinstance(member, PythonMember):
                    await member.client.disconnect()
                elif isinstance(member, NodeMember):
                    await member.stop()


@pytest.fixture
async def room(chat: Chat) -> AsyncIterator[Room]:
    members = Room(chat)
    try:
        yield members
    finally:
        await members.close()


# -- the tests ------------------------------------------------------------------


async def test_join_and_leave(room: Room) -> None:
    ann = await room.member("ann")
    assert await ann.ask("join", "red") == ["red"]
    assert await ann.ask("join", "blue") == ["blue", "red"]
    assert await ann.ask("join", "red") == ["blue", "red"]  # once
    assert await ann.ask("rooms") == {"rooms": ["blue", "red"], "own": True}
    assert await ann.ask("leave", "red") == ["blue"]
    assert await ann.ask("leave", "red") == ["blue"]
    assert await ann.ask("rooms") == {"rooms": ["blue"], "own": True}


async def test_emit_to_a_room_with_and_without_skip_sid(room: Room) -> None:
    ann, bob, cat = [await room.member(name) for name in ("ann", "bob", "cat")]
    for member, name in ((ann, "red"), (bob, "red"), (cat, "blue")):
        await member.ask("join", name)
    assert await ann.ask("say", {"to": "red", "text": "hi"}) is True
    assert await bob.next("said") == [{"from": "ann", "text": "hi", "to": "red"}]
    await ann.silent("said")  # skipped: the sender
    await cat.silent("said")  # not in the room
    assert await ann.ask("say", {"to": "red", "text": "me too", "echo": True}) is True
    for member in (ann, bob):
        assert await member.next("said") == [{"from": "ann", "text": "me too", "to": "red"}]
    await cat.silent("said")
    assert await cat.ask("say", {"to": ann.sid, "text": "psst"}) is True  # a sid's own room
    assert await ann.next("said") == [{"from": "cat", "text": "psst", "to": ann.sid}]
    await bob.silent("said")


async def test_emit_to_several_rooms_reaches_each_member_once(room: Room) -> None:
    ann, bob, cat, dan, eve = [await room.member(n) for n in ("ann", "bob", "cat", "dan", "eve")]
    for member, rooms in ((ann, ["red", "blue"]), (bob, ["red"]), (cat, ["blue"]), (dan, ["x"])):
        for name in rooms:
            await member.ask("join", name)
    said = {"from": "eve", "text": "all", "to": ["red", "blue"]}
    assert await eve.ask("say", {"to": ["red", "blue"], "text": "all"}) is True
    for member in (ann, bob, cat):
        assert await member.next("said") == [said]
    for member in (ann, bob, cat, dan, eve):
        await member.silent("said")  # ann, in both rooms, got it once


async def test_emit_to_everyone_but_the_sender(room: Room) -> None:
    ann, bob, cat = [await room.member(name) for name in ("ann", "bob", "cat")]
    assert await bob.ask("shout", "hello all") is True
    for member in (ann, cat):
        assert await member.next("shouted") == [{"from": "bob", "text": "hello all"}]
    await bob.silent("shouted")


async def test_close_room(room: Room) -> None:
    ann, bob, cat = [await room.member(name) for name in ("ann", "bob", "cat")]
    for member in (ann, bob):
        await member.ask("join", "closing")
        await member.ask("join", "staying")
    await cat.ask("say", {"to": "closing", "text": "before"})
    for member in (ann, bob):
        assert (await member.next("said"))[0]["text"] == "before"
    assert await cat.ask("close", "closing") is True
    await cat.ask("say", {"to": "closing", "text": "after"})
    for member in (ann, bob):
        await member.silent("said")
        assert await member.ask("rooms") == {"rooms": ["staying"], "own": True}


async def test_a_disconnect_leaves_every_room(room: Room) -> None:
    ann, bob, cat, dan = [await room.member(name) for name in ("ann", "bob", "cat", "dan")]
    for member, rooms in ((ann, ["one", "two"]), (bob, ["one"]), (cat, ["two"])):
        for name in rooms:
            await member.ask("join", name)
    await ann.leave()
    for member in (bob, cat):  # the disconnect handler still saw ann's rooms
        assert await member.next("left") == [{"name": "ann", "rooms": ["one", "two"]}]
    await dan.silent("left")
    await dan.ask("say", {"to": ["one", "two"], "text": "anyone?"})
    for member in (bob, cat):
        assert (await member.next("said"))[0]["text"] == "anyone?"


async def test_acks_and_call(room: Room) -> None:
    ann, bob = await room.member("ann"), await room.member("bob")
    answer = await ann.ask("ask", bob.sid, "lunch?")  # the server calls bob, acks ann
    assert answer == {"from": "bob", "answer": "yes to lunch?"}
    assert await bob.ask("ask", ann.sid, "now?") == {"from": "ann", "answer": "yes to now?"}


async def test_sessions(room: Room) -> None:
    ann, bob = await room.member("ann"), await room.member("bob")
    assert await ann.ask("whoami") == "ann"
    assert await ann.ask("rename", "anna") == "anna"
    assert await ann.ask("whoami") == "anna"
    assert await bob.ask("whoami") == "bob"
    await ann.ask("say", {"to": bob.sid, "text": "it's me"})
    assert (await bob.next("said"))[0]["from"] == "anna"


async def test_refused_connections(room: Room) -> None:
    nameless = await room.member("nameless", auth={}, refused=True)
    assert nameless.refusal == {"message": "a name is required", "data": {"field": "name"}}
    nobody = await room.member("nobody", refused=True)
    assert nobody.refusal == {"message": "Connection rejected by server"}


async def test_the_server_disconnects_a_socket(room: Room) -> None:
    ann, bob = await room.member("ann"), await room.member("bob")
    await bob.ask("join", "kitchen")
    await ann.ask("join", "kitchen")
    assert await ann.ask("kick", bob.sid) is True
    await asyncio.wait_for(bob.gone.wait(), WAIT)
    assert await ann.next("left") == [{"name": "bob", "rooms": ["kitchen"]}]


async def test_a_class_based_namespace(room: Room) -> None:
    ann = await room.member("ann", namespace="/lobby")
    bob = await room.member("bob", namespace="/lobby")
    assert await ann.ask("hello") == "hello ann"
    for member in (ann, bob):
        await member.emit("join", "hall")
    await asyncio.sleep(QUIET)  # "join" has no ack to wait for
    assert await bob.ask("say", "hall", "welcome") is True
    for member in (ann, bob):
        assert await member.next("said") == ["welcome"]


async def test_a_room_spread_over_the_cluster(room: Room) -> None:
    members = [await room.member(f"m{i}") for i in range(6)]
    if room.chat.kind == "msstorm-3-workers":  # the kernel spreads connections: make sure
        while len({m.sid[:4] for m in members}) < 2 and len(members) < 30:
            members.append(await room.member(f"m{len(members)}"))
        assert len({m.sid[:4] for m in members}) >= 2, "every connection landed on one worker"
    for member in members:
        await member.ask("join", "wide")
    speaker, *listeners = members
    assert await speaker.ask("say", {"to": "wide", "text": "everywhere"}) is True
    for member in listeners:
        assert (await member.next("said"))[0]["text"] == "everywhere"
    for member in members:
        await member.silent("said")
    assert await listeners[-1].ask("ask", speaker.sid, "far?") == {
        "from": "m0",
        "answer": "yes to far?",
    }
