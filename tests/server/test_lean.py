"""What picows keeps per connection is cut to what msstorm needs, and only then.

trim_c finds picows's fields through the layout of the pinned picows version;
these tests fail the day it stops finding it (a new picows), rather than let
every connection silently cost more. Where the version or the protocol's class
is not the one expected, connections run untrimmed, and the server says so
(a warning, /healthz, /metrics). A trimmed connection's wait_disconnected()
still waits for that connection's end.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

import picows
import pytest
from msstorm._fastpath.trim_c import LEAN_CAPACITY, lean, read_buffer_capacity, trim
from picows.picows import WSProtocol  # type: ignore[attr-defined]  # not in its stub
from prometheus_client.parser import text_string_to_metric_families
from rawclient import Served, serving
from test_wire import http_get

from msstorm._fastpath import trim_c, wire
from msstorm.server import listen
from msstorm.swarm.messagelog import MessageLog
from msstorm.swarm.worker import Swarm


async def test_server_connections_have_lean_read_buffers(served: Served) -> None:
    client = await served.client()
    await client.join()
    (conn,) = served.sio.live
    assert read_buffer_capacity(conn.transport) == LEAN_CAPACITY
    # A burst makes picows grow it...
    client.send(b'42["message","' + b"x" * 5000 + b'"]')
    assert len(await client.recv()) > 5000
    assert read_buffer_capacity(conn.transport) > LEAN_CAPACITY
    # ...and the heartbeat's next ping gives it back (every 300 ms here).
    await asyncio.sleep(0.6)
    assert read_buffer_capacity(conn.transport) == LEAN_CAPACITY
    client.send(b'42["message","still fine"]')
    assert await client.recv() == b'42["message-back","still fine"]'
    client.close()


async def test_client_connections_too(served: Served) -> None:
    client = await served.client()
    await client.join()
    assert read_buffer_capacity(client.transport) > LEAN_CAPACITY  # picows's own
    trim(client.transport)  # what the swarm's clients do once connected
    assert read_buffer_capacity(client.transport) == LEAN_CAPACITY
    client.send(b'42["message","' + b"y" * 3000 + b'"]')
    assert len(await client.recv()) > 3000  # a bigger frame than the buffer: it grows
    client.close()


# -- wait_disconnected() on a trimmed connection ------------------------------------------


async def test_wait_disconnected_waits_for_that_connection_alone(served: Served) -> None:
    first = await served.client()
    await first.join()
    (conn_first,) = served.sio.live
    second = await served.client()
    await second.join()
    (conn_second,) = served.sio.live - {conn_first}
    mine, other = conn_first.transport, conn_second.transport
    assert mine.request is None and other.request is None  # both trimmed
    waiting = [asyncio.create_task(mine.wait_disconnected()) for _ in range(2)]
    waiting_other = asyncio.create_task(other.wait_disconnected())
    await asyncio.sleep(0.1)
    assert not any(task.done() for task in [*waiting, waiting_other])

    second.close()
    await asyncio.wait_for(waiting_other, 3)
    await asyncio.sleep(0.1)
    assert not any(task.done() for task in waiting)  # the other's end is not this one's

    first.close()
    await asyncio.wait_for(asyncio.gather(*waiting), 3)
    assert mine.is_disconnected
    await asyncio.wait_for(mine.wait_disconnected(), 1)  # once it is over: at once


async def test_wait_disconnected_after_the_end_of_a_connection_nobody_awaited(
    served: Served,
) -> None:
    client = await served.client()
    await client.join()
    (conn,) = served.sio.live
    transport = conn.transport
    client.close()
    await until(lambda: transport.is_disconnected)
    await asyncio.wait_for(transport.wait_disconnected(), 1)


async def test_a_listener_that_cannot_stand_in_keeps_its_own_future(served: Served) -> None:
    client = await served.client()
    await client.join()
    assert trim(client.transport)  # a test client's listener: no done(), no __await__
    waiting = asyncio.create_task(client.transport.wait_disconnected())
    await asyncio.sleep(0.1)
    assert not waiting.done()
    for conn in served.sio.live:
        conn.close()  # the server ends it
    await asyncio.wait_for(waiting, 3)


async def test_a_swarm_client_waits_for_its_own_disconnection(served: Served) -> None:
    url = f"{served.url}/socket.io/?EIO=4&transport=websocket"
    swarm = Swarm(url, 0, 2, [], 0, MessageLog(None))
    try:
        await swarm.dial_all()
        await until(lambda: swarm.joined_now == 2)
        first, second = swarm.clients
        assert first.transport.request is None and swarm.trims_refused == 0
        swarm.closing = True  # no redialling
        waiting = asyncio.create_task(first.transport.wait_disconnected())
        second.close()
        await asyncio.wait_for(second.transport.wait_disconnected(), 3)
        await asyncio.sleep(0.1)
        assert not waiting.done()
        for conn in served.sio.live:
            conn.close()  # the server ends the first
        await asyncio.wait_for(waiting, 3)
    finally:
        await swarm.close()


# -- the guard: another picows, another protocol class ---------------------------------


class SubclassedProtocol(WSProtocol):  # type: ignore[misc]  # a compiled base
    """picows's protocol as a subclass: another class, maybe another layout."""


def forget_refusal(monkeypatch: pytest.MonkeyPatch) -> None:
    """This test's refusal is its own: the process's trim is back on after it."""
    monkeypatch.setattr(trim_c, "_refused", None)


async def untrimmed_and_said(
    served: Served, caplog: pytest.LogCaptureFixture, *named: str
) -> dict[str, Any]:
    """Two clients served untrimmed, one warning naming ``named``; /healthz's answer."""
    clients = [await served.client() for _ in range(2)]
    for client in clients:
        await client.join()
    for conn in served.sio.live:
        assert conn.transport.request is not None  # the handshake's request kept
        assert read_buffer_capacity(conn.transport) is None
        assert not trim(conn.transport) and not lean(conn.transport)
    clients[0].send(b'42["message","untrimmed"]')
    assert await clients[0].recv() == b'42["message-back","untrimmed"]'
    await asyncio.sleep(0.7)  # the heartbeat pings each twice: lean at each ping
    warnings = [r for r in caplog.records if r.name == "msstorm.fastpath"]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
    message = warnings[0].getMessage()
    assert all(name in message for name in named), message
    assert "memory" in message

    status, body = await asyncio.to_thread(http_get, served.port, "/healthz")
    assert status == 200
    health = json.loads(body)
    assert health["trim"]["active"] is False
    assert all(name in health["trim"]["reason"] for name in named), health["trim"]
    refused = health["endpoints"]["/socket.io/"]["trims_refused"]
    assert refused >= 2 + 2  # two handshakes, then at least a ping each
    samples = await scrape(served.port)
    assert samples["msstorm_trim_active", ()] == 0
    assert samples["msstorm_trims_refused_total", (("endpoint", "/socket.io/"),)] >= refused
    for client in clients:
        client.close()
    return health


async def test_another_picows_version_runs_untrimmed_and_says_so(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    forget_refusal(monkeypatch)
    monkeypatch.setattr(trim_c, "EXPECTED_PICOWS", "2.2.0")  # as if picows had moved on
    caplog.set_level(logging.WARNING, "msstorm.fastpath")
    assert "2.2.0" in (wire.refusal() or "")  # known before any connection
    async with serving() as served:
        await untrimmed_and_said(served, caplog, picows.__version__, "2.2.0")


async def test_a_subclass_of_picows_protocol_runs_untrimmed_and_says_so(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    forget_refusal(monkeypatch)
    monkeypatch.setattr(listen, "WSProtocol", SubclassedProtocol)
    caplog.set_level(logging.WARNING, "msstorm.fastpath")
    async with serving() as served:
        await untrimmed_and_said(served, caplog, "SubclassedProtocol", "WSProtocol")


async def test_a_trimmed_server_says_so(served: Served) -> None:
    assert wire.refusal() is None
    client = await served.client()
    await client.join()
    status, body = await asyncio.to_thread(http_get, served.port, "/healthz")
    health = json.loads(body)
    assert status == 200 and health["trim"] == {"active": True}
    assert health["endpoints"]["/socket.io/"]["trims_refused"] == 0
    samples = await scrape(served.port)
    assert samples["msstorm_trim_active", ()] == 1
    assert samples["msstorm_trims_refused_total", (("endpoint", "/socket.io/"),)] == 0
    client.close()


# -- helpers ------------------------------------------------------------------------------


async def until(condition: Callable[[], bool], timeout: float = 3.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


async def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """/metrics, read back by prometheus_client's parser; its HELP texts checked."""
    status, body = await asyncio.to_thread(http_get, port, "/metrics")
    assert status == 200
    samples = {}
    for family in text_string_to_metric_families(body.decode()):
        if family.name == "msstorm_trim_active":
            assert "memory" in family.documentation and "/healthz" in family.documentation
        for sample in family.samples:
            samples[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return samples
