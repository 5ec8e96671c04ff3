"""The server on loopback, seen from a raw WebSocket peer: exact frames, exact closes."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request

import picows
import pytest
from rawclient import Served

# -- handshake ------------------------------------------------------------------


async def test_open_packet_is_exact(served: Served) -> None:
    client = await served.client()
    opening = json.loads((await client.open())[1:])
    assert list(opening) == ["sid", "upgrades", "pingInterval", "pingTimeout", "maxPayload"]
    assert opening["upgrades"] == []
    assert (opening["pingInterval"], opening["pingTimeout"], opening["maxPayload"]) == (
        300,
        200,
        10_000,
    )
    assert isinstance(opening["sid"], str) and len(opening["sid"]) == 20
    client.close()


async def test_connect_to_namespaces_and_refusal(served: Served) -> None:
    client = await served.client()
    await client.open()
    client.send(b'40{"token":"123"}')
    answer = await client.recv()
    assert answer.startswith(b'40{"sid":"')
    assert await client.recv() == b'42["auth",{"token":"123"}]'
    client.send(b"40/custom,")
    assert (await client.recv()).startswith(b'40/custom,{"sid":"')
    assert await client.recv() == b'42/custom,["auth",{}]'
    client.send(b"40/random")
    assert await client.recv() == b'44/random,{"message":"Invalid namespace"}'
    assert served.sio.stats.refused["InvalidNamespace"] == 1
    client.close()


async def test_events_acks_and_binary(served: Served) -> None:
    client = await served.client()
    await client.join()
    client.send(b'42["message",1,"2",{"3":[true]}]')
    assert await client.recv() == b'42["message-back",1,"2",{"3":[true]}]'
    client.send(b'42456["message-with-ack",1,"2",{"3":[false]}]')
    assert await client.recv() == b'43456[1,"2",{"3":[false]}]'
    client.send(
        b'452-789["message-with-ack",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]'
    )
    client.send(b"\x01\x02\x03", binary=True)
    client.send(b"\x04\x05\x06", binary=True)
    assert (
        await client.recv()
        == b'462-789[{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]'
    )
    assert await client.recv_frame() == (picows.WSMsgType.BINARY, b"\x01\x02\x03")
    assert await client.recv_frame() == (picows.WSMsgType.BINARY, b"\x04\x05\x06")
    client.close()


async def test_server_to_client_ack(served: Served) -> None:
    client = await served.client()
    await client.join()
    client.send(b'42["ask","why?"]')
    question = await client.recv()
    assert question.startswith(b"42") and question.endswith(b'["question","why?"]')
    ack_id = question[2 : question.index(b"[")]
    client.send(b"43" + ack_id + b'["because",{"n":1}]')
    assert await client.recv() == b'42["answer","because",{"n":1}]'
    client.close()


async def test_fragmented_message_is_reassembled(served: Served) -> None:
    client = await served.client()
    await client.join()
    client.transport.send(picows.WSMsgType.TEXT, b'42["message",', fin=False)
    client.transport.send(picows.WSMsgType.CONTINUATION, b'"in two"', fin=False)
    client.transport.send(picows.WSMsgType.CONTINUATION, b"]", fin=True)
    assert await client.recv() == b'42["message-back","in two"]'
    client.close()


async def test_namespace_disconnect_keeps_the_connection(served: Served) -> None:
    client = await served.client()
    await client.join()
    client.send(b"40/custom,")
    await client.recv()
    await client.recv()
    client.send(b"41/custom,")
    client.send(b'42["message","still here"]')
    assert await client.recv() == b'42["message-back","still here"]'
    client.send(b"41")
    await asyncio.sleep(0.05)
    assert served.sio.sids("/") == [] and served.sio.sids("/custom") == []
    assert not client.disconnected.done()
    client.close()


async def test_server_side_namespace_disconnect(served: Served) -> None:
    client = await served.client()
    await client.join()
    client.send(b'42["disconnect-me"]')
    assert await client.recv() == b"41"
    client.close()


# -- heartbeat and timeouts --------------------------------------------------------


async def test_heartbeat_keeps_a_live_client(served: Served) -> None:
    client = await served.client()
    await client.join()
    await asyncio.sleep(1.4)  # more than four ping intervals of 300 ms
    assert client.pings >= 3
    client.send(b'42["message","alive"]')
    assert await client.recv() == b'42["message-back","alive"]'
    client.close()


async def test_silent_client_is_closed_at_ping_timeout(served: Served) -> None:
    silent = await served.client(answer_pings=False)
    await silent.join()
    assert await silent.closed(timeout=2.0) == 1000
    assert silent.close_message == b"ping timeout"
    assert served.sio.stats.disconnects["ping timeout"] == 1


async def test_client_that_joins_nothing_is_closed_at_connect_timeout(served: Served) -> None:
    idle = await served.client()
    await idle.open()
    assert await idle.closed(timeout=2.5) == 1000
    assert idle.close_message == b"connect timeout"


async def test_engine_close_packet_ends_the_session(served: Served) -> None:
    client = await served.client()
    await client.open()
    client.send(b"1")
    assert await client.closed() == 1000


# -- bad input: that connection is closed, nobody else notices ----------------------

BAD_INPUT = [
    ("unknown Socket.IO type", [b"4abc"], 1002),
    ("event payload not an array", [b"42{}"], 1002),
    ("ack id not a number", [b'42abc["message-with-ack",1]'], 1002),
    ("unknown Engine.IO type", [b"9"], 1002),
    ("empty frame", [b""], 1002),
    ("ping from a client", [b"2"], 1008),
    ("binary with no attachment due", [(b"\x00\x01", True)], 1008),
    ("attachment count lies", [b'451-["message",{"_placeholder":true,"num":0}]', b'42["x"]'], 1008),
    ("second CONNECT", [b"40"], 1008),
    ("CONNECT_ERROR from a client", [b'44{"message":"x"}'], 1008),
    ("invalid UTF-8 in a text frame", [b'42["message","\xff\xfe"]'], 1002),
    ("frame over maxPayload", [b'42["message","' + b"x" * 20_000 + b'"]'], 1009),
    ("deeply nested JSON", [b'42["message",' + b"[" * 1100 + b"]" * 1100 + b"]"], 1002),
    ("reserved event name", [b'42["disconnect"]'], 1002),
    ("ack id out of range", [b'4299999999999999999["message-with-ack",1]'], 1002),
    ("a number too large for a double", [b'42["message",1e999]'], 1002),
    ("continuation with nothing to continue", ["continuation"], 1002),
]


@pytest.mark.parametrize(
    ("frames", "code"), [(f, c) for _, f, c in BAD_INPUT], ids=[name for name, _, _ in BAD_INPUT]
)
async def test_bad_input_closes_only_that_connection(
    served: Served, frames: list[object], code: int
) -> None:
    bystander = await served.client()
    await bystander.join()
    culprit = await served.client()
    await culprit.join()
    refused_before = sum(served.sio.stats.refused.values())
    for frame in frames:
        if frame == "continuation":
            culprit.transport.send(picows.WSMsgType.CONTINUATION, b"x", fin=True)
        elif isinstance(frame, tuple):
            culprit.send(frame[0], binary=frame[1])
        else:
            assert isinstance(frame, bytes)
            culprit.send(frame)
    assert await culprit.closed() == code
    await asyncio.sleep(0.05)
    assert sum(served.sio.stats.refused.values()) == refused_before + 1
    assert served.sio.stats.disconnects["parse error"] == 1
    bystander.send(b'42["message","unharmed"]')
    assert await bystander.recv() == b'42["message-back","unharmed"]'
    assert served.sio.stats.connections == 1
    bystander.close()


async def test_a_truncated_frame_is_closed_at_ping_timeout(served: Served) -> None:
    """A frame that announces 200 bytes and sends 10: the server waits for the rest,
    the pong cannot come, the heartbeat closes it; nobody else notices."""
    bystander = await served.client()
    await bystander.join()
    reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
    writer.write(
        b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\n"
        b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101")
    writer.write(b"\x81\xfe\x00\xc8" + b"\x00" * 4 + b'42["messa')  # 200 bytes announced
    await asyncio.wait_for(reader.read(), 3)  # the open packet, pings, then the close
    assert served.sio.stats.disconnects["ping timeout"] == 1
    bystander.send(b'42["message","unharmed"]')
    assert await bystander.recv() == b'42["message-back","unharmed"]'
    writer.close()
    bystander.close()


async def test_garbage_before_the_handshake(served: Served) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
    writer.write(b"\x16\x03\x01 this is not HTTP\r\n\r\n")
    answer = await asyncio.wait_for(reader.read(), 3)
    assert answer.startswith(b"HTTP/1.1 400")
    writer.close()
    client = await served.client()
    await client.join()
    client.close()


# -- HTTP on the same port ---------------------------------------------------------


def http_get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=3) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("EIO=4&transport=polling&sid=unknown", 1),
        ("EIO=4&transport=abc", 0),
        ("EIO=4", 0),
        ("EIO=3&transport=websocket", 5),
        ("transport=websocket", 5),
        ("EIO=abc&transport=websocket", 5),
        ("EIO=4&transport=websocket", 3),  # a GET that is no WebSocket upgrade
        ("EIO=4&transport=websocket&sid=unknown", 1),
    ],
)
async def test_engineio_http_errors(served: Served, query: str, code: int) -> None:
    status, body = await asyncio.to_thread(http_get, served.port, f"/socket.io/?{query}")
    assert status == 400
    assert json.loads(body)["code"] == code


async def test_healthz_and_unknown_paths(served: Served) -> None:
    client = await served.client()
    await client.join()
    status, body = await asyncio.to_thread(http_get, served.port, "/healthz")
    health = json.loads(body)
    assert status == 200 and health["status"] == "ok" and health["connections"] == 1
    assert health["endpoints"]["/socket.io/"]["handshakes"] == 1
    status, _ = await asyncio.to_thread(http_get, served.port, "/elsewhere")
    assert status == 404
    client.close()


# -- the bare Engine.IO endpoint ---------------------------------------------------


async def test_engineio_echo(served: Served) -> None:
    client = await served.client("/engine.io/")
    await client.open()
    client.send("4héllo")
    assert (await client.recv()).decode() == "4héllo"
    client.send(b"\x00\xff\x10", binary=True)
    assert await client.recv_frame() == (picows.WSMsgType.BINARY, b"\x00\xff\x10")
    await asyncio.sleep(0.8)  # no connect timeout for bare Engine.IO, pings flow
    assert client.pings >= 1 and not client.disconnected.done()
    client.close()


async def test_listener_close_closes_every_connection(served: Served) -> None:
    clients = [await served.client() for _ in range(3)]
    for client in clients:
        await client.join()
    served.listener.close()
    for client in clients:
        assert await client.closed() == 1000
        assert client.close_message == b"server shutting down"
