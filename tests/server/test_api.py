"""The engine as a library: the public Server API, seen from raw clients."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from rawclient import RawClient

import msstorm
from msstorm import ConnectionRefused


class App:
    """A server with handlers the tests set, on a free port."""

    def __init__(self, server: msstorm.Server, listener: msstorm.Listener) -> None:
        self.server = server
        self.listener = listener
        self.url = f"ws://127.0.0.1:{listener.port}/socket.io/?EIO=4&transport=websocket"

    async def client(self, connect: bytes = b"40") -> tuple[RawClient, bytes]:
        client = await RawClient.connect(self.url)
        await client.open()
        client.send(connect)
        return client, await client.recv()


@pytest.fixture
async def app() -> AsyncIterator[App]:
    server = msstorm.Server(ping_interval=5000, ping_timeout=5000)
    listener = await msstorm.serve(server, host="127.0.0.1", port=0)
    try:
        yield App(server, listener)
    finally:
        listener.close()
        await listener.wait_closed()


def sid_of(answer: bytes) -> str:
    return answer.split(b'"sid":"')[1].split(b'"')[0].decode()


async def test_broadcast_reaches_every_socket_of_the_namespace(app: App) -> None:
    clients = [(await app.client())[0] for _ in range(5)]
    other, _ = await app.client(b"40/other,")
    assert app.server.emit("news", {"n": 1}) == 5
    for client in clients:
        assert await client.recv() == b'42["news",{"n":1}]'
    assert other.frames.empty()
    assert app.server.emit("news", to="no-such-sid") == 0
    with pytest.raises(ValueError, match="unknown namespace"):
        app.server.emit("news", namespace="/nowhere")


async def test_emit_with_callback_and_call(app: App) -> None:
    client, answer = await app.client()
    sid = sid_of(answer)
    got: list[Any] = []
    app.server.emit("q", 1, to=sid, callback=lambda *args: got.append(args))
    assert await client.recv() == b'420["q",1]'  # the first ack id of the connection is 0
    client.send(b'430["a",2]')
    await asyncio.sleep(0.05)
    assert got == [("a", 2)]

    async def answer_call() -> None:
        frame = await client.recv()
        client.send(b"43" + frame[2 : frame.index(b"[")] + b"[true]")

    task = asyncio.ensure_future(answer_call())
    assert await app.server.call("q2", to=sid, timeout=2) == [True]
    await task
    with pytest.raises(LookupError):
        await app.server.call("q3", to="nobody")
    with pytest.raises(asyncio.TimeoutError):
        await app.server.call("q4", to=sid, timeout=0.1)


async def test_unknown_acks_are_counted_and_ignored(app: App) -> None:
    client, _ = await app.client()
    client.send(b"4399[1]")
    await asyncio.sleep(0.05)
    assert app.server.stats.ignored == 1
    assert not client.disconnected.done()


async def test_connect_handler_refuses_with_a_message_and_data(app: App) -> None:
    @app.server.on("connect")
    def connect(sid: str, auth: dict[str, Any]) -> Any:
        if auth.get("token") == "good":
            return None
        if auth.get("token") == "false":
            return False
        raise ConnectionRefused("bad token", {"hint": "use good"})

    _, answer = await app.client(b'40{"token":"nope"}')
    assert answer == b'44{"message":"bad token","data":{"hint":"use good"}}'
    _, answer = await app.client(b'40{"token":"false"}')
    assert answer == b'44{"message":"Connection refused"}'
    _, answer = await app.client(b'40{"token":"good"}')
    assert answer.startswith(b'40{"sid":')
    assert len(app.server.sids()) == 1


async def test_emits_from_the_connect_handler_follow_the_connect_answer(app: App) -> None:
    @app.server.on("connect")
    async def connect(sid: str, auth: Any) -> None:
        app.server.emit("early", to=sid)
        await asyncio.sleep(0.05)
        app.server.emit("later", to=sid)

    client, answer = await app.client()
    assert answer.startswith(b'40{"sid":')
    assert await client.recv() == b'42["early"]'
    assert await client.recv() == b'42["later"]'


async def test_refused_connection_drops_what_the_handler_emitted(app: App) -> None:
    @app.server.on("connect")
    def connect(sid: str, auth: Any) -> bool:
        app.server.emit("secret", to=sid)
        return False

    client, answer = await app.client()
    assert answer == b'44{"message":"Connection refused"}'
    await asyncio.sleep(0.05)
    assert client.frames.empty()


async def test_failing_handlers_are_counted_and_the_connection_lives(app: App) -> None:
    @app.server.on("boom")
    def boom(sid: str) -> None:
        raise RuntimeError("handler bug")

    @app.server.on("echo")
    async def echo(sid: str, value: Any) -> Any:
        await asyncio.sleep(0)
        return value

    client, _ = await app.client()
    client.send(b'421["boom"]')
    client.send(b'422["echo",{"x":1}]')
    assert await client.recv() == b'432[{"x":1}]'  # no ack for the failed handler
    assert app.server.stats.handler_errors == 1


async def test_disconnect_handler_gets_the_reason(app: App) -> None:
    reasons: list[tuple[str, str]] = []
    app.server.on("disconnect", lambda sid, reason: reasons.append((sid, reason)))
    first, answer1 = await app.client()
    second, answer2 = await app.client()
    first.send(b"41")
    second.close()
    await asyncio.sleep(0.1)
    assert sorted(reasons) == sorted(
        [(sid_of(answer1), "client namespace disconnect"), (sid_of(answer2), "transport close")]
    )
    assert app.server.disconnect("nobody") is False


async def test_engine_server_api() -> None:
    engine = msstorm.EngineServer(ping_interval=5000)
    seen: list[Any] = []
    engine.on("connect", lambda sid: seen.append(("connect", sid)))
    engine.on("message", lambda sid, data: seen.append(("message", data)))
    engine.on("disconnect", lambda sid, reason: seen.append(("disconnect", reason)))
    with pytest.raises(ValueError):
        engine.on("nonsense", print)
    async with await msstorm.serve(engine, port=0) as listener:
        url = f"ws://127.0.0.1:{listener.port}/engine.io/?EIO=4&transport=websocket"
        client = await RawClient.connect(url)
        await client.open()
        sid = seen[0][1]
        assert engine.send(sid, "hi") and engine.send(sid, b"\x01")
        assert await client.recv() == b"4hi"
        assert await client.recv() == b"\x01"
        client.send(b"4yo")
        await asyncio.sleep(0.05)
        assert engine.disconnect(sid)
        assert await client.closed() == 1000
        assert engine.send("gone", "x") is False
    assert seen[1:] == [("message", "yo"), ("disconnect", "forced close")]


def test_bad_paths_and_namespaces() -> None:
    with pytest.raises(ValueError):
        msstorm.Server(path="socket.io")
    with pytest.raises(ValueError):
        msstorm.Server().namespace("custom")
    with pytest.raises(ValueError):
        msstorm.Server(ping_interval=0)
