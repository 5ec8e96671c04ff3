"""msstorm.AsyncServer in one process, with python-socketio clients: what the chat
tests do not reach, and what it refuses."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import socketio

import msstorm


@pytest.mark.parametrize(
    ("options", "error", "says"),
    [
        ({"client_manager": object()}, ValueError, r"msstorm\.run"),
        ({"serializer": "msgpack"}, ValueError, "no msgpack"),
        ({"async_mode": "asgi"}, ValueError, "ASGI"),
        ({"transports": ["websocket"]}, ValueError, "both transports"),
        ({"async_handlers": False}, ValueError, "async_handlers"),
        ({"namespaces": "*"}, ValueError, "name each namespace"),
        ({"no_such_option": 1}, TypeError, "no_such_option"),
    ],
)
def test_what_msstorm_does_not_do_is_refused_by_name(
    options: dict[str, Any], error: type[Exception], says: str
) -> None:
    with pytest.raises(error, match=says):
        msstorm.AsyncServer(**options)


def test_mounting_and_bad_run_options_are_refused() -> None:
    sio = msstorm.AsyncServer(logger=True, cors_credentials=False)  # accepted, no effect
    with pytest.raises(NotImplementedError, match=r"msstorm\.serve"):
        sio.attach(object())
    with pytest.raises(ValueError, match="workers"):
        msstorm.run(sio, workers=0)
    with pytest.raises(ValueError, match="redis://"):
        msstorm.run(sio, bus="kafka://x")
    with pytest.raises(ValueError, match="module:attribute"):
        msstorm.run(sio, workers=2)


@pytest.fixture
async def served() -> AsyncIterator[tuple[msstorm.AsyncServer, str]]:
    sio = msstorm.AsyncServer(ping_interval=5, ping_timeout=5)
    listener = await msstorm.serve(sio, host="127.0.0.1", port=0)
    try:
        yield sio, f"http://127.0.0.1:{listener.port}"
    finally:
        listener.close()
        await listener.wait_closed()
        await sio.shutdown()


async def test_call_times_out_catch_all_and_transport(
    served: tuple[msstorm.AsyncServer, str],
) -> None:
    sio, url = served
    seen: list[tuple[Any, ...]] = []
    connected: asyncio.Queue[str] = asyncio.Queue()

    @sio.event
    def connect(sid: str, environ: dict[str, Any]) -> None:  # the legacy signature
        assert environ["REMOTE_ADDR"] == "127.0.0.1"
        connected.put_nowait(sid)

    @sio.on("*")
    def anything(event: str, sid: str, *args: Any) -> str:
        seen.append((event, sid, *args))
        return "caught"

    client = socketio.AsyncClient(reconnection=False)

    @client.on("slow")
    async def slow() -> None:
        await asyncio.sleep(1)  # the ack comes after the handler

    await client.connect(url, transports=["websocket"])
    sid = await asyncio.wait_for(connected.get(), 5)
    try:
        assert sio.transport(sid) == "websocket"
        assert await client.call("whatever", (1, 2), timeout=5) == "caught"
        assert seen == [("whatever", sid, 1, 2)]
        with pytest.raises(msstorm.exceptions.TimeoutError):
            await sio.call("slow", to=sid, timeout=0.2)
        with pytest.raises(KeyError):
            await sio.get_session("nobody")
    finally:
        await client.disconnect()


async def test_a_huge_emit_does_not_hold_the_loop(served: tuple[msstorm.AsyncServer, str]) -> None:
    sio, url = served
    sio.engine.delivery.slice = 1  # one recipient per turn of the loop
    clients = []
    for _ in range(4):
        client = socketio.AsyncClient(reconnection=False)
        await client.connect(url, transports=["websocket"])
        clients.append(client)
    turns = 0

    async def count_turns() -> None:
        nonlocal turns
        while True:
            await asyncio.sleep(0)
            turns += 1

    counter = asyncio.ensure_future(count_turns())
    try:
        await sio.emit("news", {"n": 1})
        assert turns >= 3  # the loop ran between the slices
    finally:
        counter.cancel()
        for client in clients:
            await client.disconnect()
