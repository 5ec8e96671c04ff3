"""Rooms in the Server, seen from raw WebSocket clients, with each fan-out twin."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from rawclient import RawClient

import msstorm
from msstorm._fastpath import fanout, fanout_c
from msstorm.server import delivery


class App:
    def __init__(self, server: msstorm.Server, listener: msstorm.Listener) -> None:
        self.server = server
        self.url = f"ws://127.0.0.1:{listener.port}/socket.io/?EIO=4&transport=websocket"

    async def client(self) -> tuple[RawClient, str]:
        client = await RawClient.connect(self.url)
        await client.open()
        client.send(b"40")
        answer = await client.recv()
        return client, answer.split(b'"sid":"')[1].split(b'"')[0].decode()


@pytest.fixture(params=["python", "cython"])
async def app(request: pytest.FixtureRequest) -> AsyncIterator[App]:
    server = msstorm.Server(ping_interval=5000, ping_timeout=5000)
    server.delivery.send_frame = (fanout if request.param == "python" else fanout_c).send_frame
    listener = await msstorm.serve(server, host="127.0.0.1", port=0)
    try:
        yield App(server, listener)
    finally:
        listener.close()
        await listener.wait_closed()


async def quiet(client: RawClient) -> bool:
    await asyncio.sleep(0.05)
    return client.frames.empty()


async def test_emit_to_rooms_reaches_each_member_once(app: App) -> None:
    (a, sa), (b, sb), (c, sc) = [await app.client() for _ in range(3)]
    server = app.server
    server.enter_room(sa, "red")
    server.enter_room(sb, "red")
    server.enter_room(sb, "blue")
    server.enter_room(sc, "blue")
    assert server.rooms(sb) == [sb, "red", "blue"]
    assert server.emit("news", 1, to="red") == 2
    assert await a.recv() == await b.recv() == b'42["news",1]'
    assert await quiet(c)
    assert server.emit("news", 2, to=["red", "blue"]) == 3
    for client in (a, b, c):
        assert await client.recv() == b'42["news",2]'
        assert await quiet(client)  # b, in both rooms, once
    assert server.emit("news", 3, to="red", skip_sid=sa) == 1
    assert await b.recv() == b'42["news",3]' and await quiet(a)
    assert server.emit("news", 4, skip_sid=[sa, sb]) == 1  # the namespace less two
    assert await c.recv() == b'42["news",4]'
    assert server.emit("news", 5, to=sc) == 1  # its own room
    assert await c.recv() == b'42["news",5]'
    assert server.emit("bin", b"\x00\x01", to="blue") == 2
    for client in (b, c):
        assert await client.recv() == b'451-["bin",{"_placeholder":true,"num":0}]'
        assert await client.recv() == b"\x00\x01"


async def test_leave_close_and_disconnect_empty_the_rooms(app: App) -> None:
    (a, sa), (b, sb) = [await app.client() for _ in range(2)]
    server = app.server
    nsp = server.namespaces["/"]
    left: list[list[str]] = []

    @server.on("disconnect")
    def gone(sid: str, reason: str) -> None:
        left.append(server.rooms(sid))  # still readable in the handler

    for room in ("x", "y"):
        server.enter_room(sa, room)
        server.enter_room(sb, room)
    assert server.leave_room(sa, "x") and not server.leave_room(sa, "x")
    assert server.emit("n", to="x") == 1
    assert sorted(server.close_room("y")) == sorted([sa, sb])
    assert server.emit("n", to="y") == 0
    server.enter_room(sa, "z")
    a.close()
    await asyncio.sleep(0.2)
    assert left == [[sa, "z"]]
    assert server.rooms(sa) == []
    assert set(nsp.rooms.members) == {"x"} and set(nsp.rooms.joined) == {sb}
    assert not nsp.leaving
    b.close()
    await asyncio.sleep(0.2)
    assert not nsp.rooms.members and not nsp.rooms.joined  # nothing left behind


async def test_a_huge_emit_yields_and_keeps_the_order(app: App) -> None:
    app.server.delivery.slice = 2  # every emit beyond two sockets takes turns of the loop
    clients = [await app.client() for _ in range(5)]
    for _, sid in clients:
        app.server.enter_room(sid, "all")
    assert app.server.emit("first", to="all") == 5
    assert app.server.sent() is not None  # the rest waits for the next turns
    app.server.emit("second", to=clients[0][1])  # behind the first, though a unicast
    await app.server.sent()
    assert app.server.sent() is None
    assert await clients[0][0].recv() == b'42["first"]'
    assert await clients[0][0].recv() == b'42["second"]'
    for client, _ in clients[1:]:
        assert await client.recv() == b'42["first"]'
    assert delivery.SLICE > 2


async def test_callbacks_reach_every_member(app: App) -> None:
    (a, sa), (b, sb) = [await app.client() for _ in range(2)]
    for sid in (sa, sb):
        app.server.enter_room(sid, "r")
    got: list[tuple[Any, ...]] = []
    assert app.server.emit("q", to="r", callback=lambda *args: got.append(args)) == 2
    for client, answer in ((a, b'430["a"]'), (b, b'430["b"]')):
        assert await client.recv() == b'420["q"]'
        client.send(answer)
    await asyncio.sleep(0.05)
    assert sorted(got) == [("a",), ("b",)]
