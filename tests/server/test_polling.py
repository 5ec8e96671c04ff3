"""HTTP long-polling and the upgrade to WebSocket, rule by rule, on raw HTTP requests.

Each test speaks Engine.IO v4 by hand to the echo endpoints (``/engine.io/`` sends
every message back; ``/socket.io/`` is the Socket.IO echo), with the heartbeat of
rawclient.OPTIONS: a ping every 300 ms, 200 ms to answer it. The tests taking
``echo`` state rules of the protocol itself: they run on Node's engine.io too.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time

import pytest
from rawclient import ECHO, OPTIONS, Echo, HttpPeer, RawClient, Served, http

import msstorm

EIO = "/engine.io/?EIO=4&transport=polling"
SIO = "/socket.io/?EIO=4&transport=polling"


async def open_session(served: Echo, target: str = EIO) -> str:
    answer = await http(served.port, "GET", target)
    assert answer.status == 200, answer
    return str(json.loads(answer.body[1:])["sid"])


async def poll(served: Echo, sid: str, target: str = EIO) -> bytes:
    answer = await http(served.port, "GET", f"{target}&sid={sid}")
    assert answer.status == 200, answer
    return answer.body


async def wait_until(instant: float) -> None:
    """Sleep until ``time.monotonic()`` reaches ``instant``: uvloop's timers may wake
    up to a millisecond early (its clock is in whole, cached milliseconds)."""
    while (left := instant - time.monotonic()) > 0:
        await asyncio.sleep(left)


async def post(served: Echo, sid: str, body: bytes, target: str = EIO) -> int:
    answer = await http(served.port, "POST", f"{target}&sid={sid}", body)
    if answer.status == 200:
        assert answer.body == b"ok" and answer.headers["content-type"] == "text/html"
    return answer.status


# -- handshake --------------------------------------------------------------------


async def test_handshake_answers_the_open_packet(served: Served) -> None:
    answer = await http(served.port, "GET", SIO)
    assert answer.status == 200
    assert answer.headers["content-type"] == "text/plain; charset=UTF-8"
    assert answer.body.startswith(b"0{")
    opening = json.loads(answer.body[1:])
    assert list(opening) == ["sid", "upgrades", "pingInterval", "pingTimeout", "maxPayload"]
    assert opening["upgrades"] == ["websocket"]
    assert (opening["pingInterval"], opening["pingTimeout"], opening["maxPayload"]) == (
        300,
        200,
        10_000,
    )


@pytest.mark.parametrize(
    ("method", "query", "code"),
    [
        ("GET", "transport=polling", 5),  # no EIO
        ("GET", "EIO=abc&transport=polling", 5),
        ("GET", "EIO=3&transport=polling", 5),
        ("GET", "EIO=4", 0),  # no transport
        ("GET", "EIO=4&transport=abc", 0),
        ("POST", "EIO=4&transport=polling", 2),  # a handshake is a GET
        ("PUT", "EIO=4&transport=polling", 2),
        ("GET", "EIO=4&transport=polling&sid=unknown", 1),
        ("POST", "EIO=4&transport=polling&sid=unknown", 1),
    ],
)
async def test_bad_requests_get_the_engineio_error(
    served: Served, method: str, query: str, code: int
) -> None:
    answer = await http(served.port, method, f"/engine.io/?{query}")
    assert answer.status == 400
    assert answer.headers["content-type"] == "application/json"
    assert answer.json()["code"] == code


async def test_a_bad_method_on_a_session(served: Served) -> None:
    sid = await open_session(served)
    answer = await http(served.port, "PUT", f"{EIO}&sid={sid}")
    assert answer.status == 400 and answer.json()["code"] == 3


# -- messages -----------------------------------------------------------------------


async def test_packets_travel_in_payloads(served: Served) -> None:
    sid = await open_session(served)
    assert await post(served, sid, b"4hello") == 200
    assert await poll(served, sid) == b"4hello"
    # several packets, text and binary (b + base64), each way
    assert await post(served, sid, b"4test1\x1e4t\xc3\xa9st2\x1ebAQIDBA==") == 200
    assert await poll(served, sid) == b"4test1\x1e4t\xc3\xa9st2\x1ebAQIDBA=="


async def test_a_poll_waits_for_the_next_packet(served: Served) -> None:
    sid = await open_session(served)
    waiting = asyncio.ensure_future(poll(served, sid))
    await asyncio.sleep(0.1)
    assert not waiting.done()
    assert await post(served, sid, b"4late") == 200
    assert await waiting == b"4late"


async def test_socketio_over_polling(served: Served) -> None:
    sid = await open_session(served, SIO)
    assert await post(served, sid, b'40{"token":"t"}', SIO) == 200
    connected, auth = (await poll(served, sid, SIO)).split(b"\x1e")
    assert connected.startswith(b'40{"sid":"')
    assert auth == b'42["auth",{"token":"t"}]'
    # a binary event: its attachment travels as its own packet, in base64
    attachment = base64.b64encode(b"\x00\x1e\xff")
    body = b'451-["message",{"_placeholder":true,"num":0}]\x1eb' + attachment
    assert await post(served, sid, body, SIO) == 200
    back = await poll(served, sid, SIO)
    assert back == b'451-["message-back",{"_placeholder":true,"num":0}]\x1eb' + attachment


async def test_a_malformed_packet_ends_the_session(served: Served) -> None:
    sid = await open_session(served)
    assert await post(served, sid, b"abc") == 400  # (Node's engine.io answers "ok")
    answer = await http(served.port, "GET", f"{EIO}&sid={sid}")
    assert answer.status == 400 and answer.json()["code"] == 1
    assert served.eio.stats.refused["PacketError"] == 1
    assert served.eio.stats.disconnects["parse error"] == 1


@pytest.mark.parametrize("body", [b"", b"4a\x1e\x1e4b", b"b!!!"])
async def test_malformed_payloads_are_refused(served: Served, body: bytes) -> None:
    sid = await open_session(served)
    assert await post(served, sid, body) == 400
    answer = await http(served.port, "GET", f"{EIO}&sid={sid}")
    assert answer.status == 400 and answer.json()["code"] == 1


@pytest.mark.parametrize("then", ["GET", "POST"])
async def test_a_bad_payload_closes_the_session(echo: Echo, then: str) -> None:
    sid = await open_session(echo, SIO)
    # Its own answer is msstorm's 400 (above) or Node's "ok": the spec's suite takes either.
    await http(echo.port, "POST", f"{SIO}&sid={sid}", b"abc")
    answer = await http(echo.port, then, f"{SIO}&sid={sid}", b"40" if then == "POST" else b"")
    assert answer.status == 400 and answer.json()["code"] == 1  # "Session ID unknown"


async def test_a_bad_payload_ends_a_pending_poll(echo: Echo) -> None:
    sid = await open_session(echo, SIO)
    pending = asyncio.ensure_future(poll(echo, sid, SIO))
    await asyncio.sleep(0.05)
    await http(echo.port, "POST", f"{SIO}&sid={sid}", b"abc")
    assert await pending == b"1"  # the close packet
    answer = await http(echo.port, "GET", f"{SIO}&sid={sid}")
    assert answer.status == 400 and answer.json()["code"] == 1


async def test_a_body_over_max_payload_is_refused(served: Served) -> None:
    sid = await open_session(served)
    answer = await http(served.port, "POST", f"{EIO}&sid={sid}", b"4" + b"x" * 10_001)
    assert answer.status == 413
    assert await post(served, sid, b"4still here") == 200  # the session lives on
    assert await poll(served, sid) == b"4still here"


async def test_two_polls_at_once_end_the_session(served: Served) -> None:
    sid = await open_session(served)
    first = asyncio.ensure_future(http(served.port, "GET", f"{EIO}&sid={sid}"))
    await asyncio.sleep(0.05)
    second = await http(served.port, "GET", f"{EIO}&sid={sid}")
    assert second.status == 400
    assert (await first).body == b"1"
    answer = await http(served.port, "GET", f"{EIO}&sid={sid}")
    assert answer.status == 400


async def test_the_client_closes_the_session(served: Served) -> None:
    sid = await open_session(served)
    pending = asyncio.ensure_future(poll(served, sid))
    await asyncio.sleep(0.05)
    assert await post(served, sid, b"1") == 200
    assert await pending == b"6"  # a noop ends the pending poll
    answer = await http(served.port, "GET", f"{EIO}&sid={sid}")
    assert answer.status == 400
    assert served.eio.stats.disconnects["transport close"] == 1


async def test_a_dropped_poll_ends_the_session(served: Served) -> None:
    sid = await open_session(served)
    peer = await HttpPeer.connect(served.port)
    peer.send("GET", f"{EIO}&sid={sid}")
    await asyncio.sleep(0.05)
    peer.close()
    await asyncio.sleep(0.1)
    assert served.eio.stats.disconnects["transport error"] == 1


# -- heartbeat ----------------------------------------------------------------------


async def test_pings_come_in_polls_and_pongs_keep_the_session(served: Served) -> None:
    sid = await open_session(served)
    for _ in range(3):
        assert await poll(served, sid) == b"2"  # within pingInterval
        assert await post(served, sid, b"3") == 200
    assert await post(served, sid, b"4alive") == 200
    assert await poll(served, sid) == b"4alive"


async def test_a_missing_pong_ends_the_session(served: Served) -> None:
    sid = await open_session(served)
    await asyncio.sleep(0.3 + 0.2 + 0.1)  # pingInterval + pingTimeout, and ticks
    assert served.eio.stats.disconnects["ping timeout"] == 1  # with nobody asking
    assert await post(served, sid, b"3") == 400


async def test_a_missing_pong_ends_the_session_on_time(echo: Echo) -> None:
    sid = await open_session(echo, SIO)
    # pingInterval + pingTimeout, the ping not answered
    await wait_until(time.monotonic() + 0.3 + 0.2 + echo.timer_lag)
    answer = await http(echo.port, "GET", f"{SIO}&sid={sid}")
    assert answer.status == 400 and answer.json()["code"] == 1  # "Session ID unknown"


async def test_a_missing_pong_ends_the_pending_poll(echo: Echo) -> None:
    sid = await open_session(echo, SIO)
    assert await poll(echo, sid, SIO) == b"2"  # the ping, at pingInterval
    answer = await asyncio.wait_for(poll(echo, sid, SIO), 0.2 + 0.1)  # pingTimeout, a tick
    assert answer == b"1"  # the close packet
    answer = await http(echo.port, "GET", f"{SIO}&sid={sid}")
    assert answer.status == 400 and answer.json()["code"] == 1


# -- the upgrade --------------------------------------------------------------------


def websocket_url(served: Echo, sid: str, target: str = EIO) -> str:
    return f"{served.url}{target.replace('polling', 'websocket')}&sid={sid}"


async def upgrade(served: Echo, sid: str, target: str = EIO) -> RawClient:
    ws = await RawClient.connect(websocket_url(served, sid, target))
    pending = asyncio.ensure_future(poll(served, sid, target))
    ws.send("2probe")
    assert await ws.recv() == b"3probe"
    assert await pending == b"6"  # the pending poll ends: the client stops polling
    ws.send("5")
    return ws


async def turned_away(served: Echo, sid: str, target: str = EIO) -> bool:
    """Whether a WebSocket for ``sid`` opens (a refused handshake would raise here),
    then is closed by the server before any packet."""
    ws = await RawClient.connect(websocket_url(served, sid, target))
    await ws.closed()
    return ws.frames.empty()


async def test_upgrade_to_websocket(served: Served) -> None:
    sid = await open_session(served)
    ws = await upgrade(served, sid)
    ws.send("4hello")
    assert await ws.recv() == b"4hello"
    ws.send(b"\x01\x02", binary=True)
    assert await ws.recv() == b"\x01\x02"
    # polling is over for this session, and one WebSocket is all it gets
    answer = await http(served.port, "GET", f"{EIO}&sid={sid}")
    assert answer.status == 400 and answer.json()["code"] == 3
    assert await post(served, sid, b"4x") == 400
    assert await turned_away(served, sid)
    ws.send("4still here")
    assert await ws.recv() == b"4still here"
    ws.close()


async def test_a_second_websocket_for_a_session_is_opened_then_closed(echo: Echo) -> None:
    sid = await open_session(echo, SIO)
    ws = await RawClient.connect(websocket_url(echo, sid, SIO))
    pending = asyncio.ensure_future(poll(echo, sid, SIO))
    ws.send("2probe")
    assert await ws.recv() == b"3probe"
    assert await turned_away(echo, sid, SIO)  # while the first upgrades
    assert await pending == b"6"
    ws.send("5")
    assert await turned_away(echo, sid, SIO)  # once it has
    ws.send("40")  # the first goes on
    assert (await ws.recv()).startswith(b'40{"sid":')
    ws.close()


async def test_a_websocket_for_an_unknown_session_is_refused(echo: Echo) -> None:
    answer = await http(
        echo.port,
        "GET",
        f"{SIO.replace('polling', 'websocket')}&sid=unknown",
        headers={
            "Upgrade": "websocket",
            "Connection": "Upgrade",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Version": "13",
        },
    )
    assert answer.status == 400  # (its body: JSON here, Node's message alone)


async def test_what_waits_during_the_upgrade_goes_out_on_the_websocket(served: Served) -> None:
    sid = await open_session(served)
    ws = await RawClient.connect(f"{served.url}/engine.io/?EIO=4&transport=websocket&sid={sid}")
    ws.send("2probe")
    assert await ws.recv() == b"3probe"
    assert await post(served, sid, b"4queued") == 200  # its echo waits: nobody polls
    ws.send("5")
    assert await ws.recv() == b"6"  # the noop meant for the poll
    assert await ws.recv() == b"4queued"
    ws.close()


async def test_socketio_session_upgrades_and_keeps_its_namespaces(served: Served) -> None:
    sid = await open_session(served, SIO)
    assert await post(served, sid, b"40", SIO) == 200
    assert (await poll(served, sid, SIO)).startswith(b'40{"sid":')
    ws = await RawClient.connect(f"{served.url}/socket.io/?EIO=4&transport=websocket&sid={sid}")
    ws.send("2probe")
    assert await ws.recv() == b"3probe"
    ws.send("5")
    assert await ws.recv() == b"6"
    ws.send('42["message","over websocket"]')
    assert await ws.recv() == b'42["message-back","over websocket"]'
    assert served.sio.stats.connections == 1
    ws.close()
    await asyncio.sleep(0.1)
    assert served.sio.stats.connections == 0
    assert served.sio.polling == {}


async def test_a_bad_probe_is_dropped_and_polling_goes_on(served: Served) -> None:
    sid = await open_session(served)
    ws = await RawClient.connect(f"{served.url}/engine.io/?EIO=4&transport=websocket&sid={sid}")
    ws.send("4not a probe")
    assert await ws.closed() == 1002
    assert await post(served, sid, b"4polling") == 200
    assert await poll(served, sid) == b"4polling"


# -- HTTP itself --------------------------------------------------------------------


async def test_requests_share_a_keep_alive_connection(served: Served) -> None:
    peer = await HttpPeer.connect(served.port)
    opened = await peer.request("GET", EIO)
    sid = json.loads(opened.body[1:])["sid"]
    # two requests written at once are answered in order
    peer.send("POST", f"{EIO}&sid={sid}", b"4one")
    peer.send("GET", f"{EIO}&sid={sid}")
    assert (await peer.answer()).body == b"ok"
    assert (await peer.answer()).body == b"4one"
    health = await peer.request("GET", "/healthz")
    assert health.status == 200 and health.json()["status"] == "ok"
    peer.close()


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"\x16\x03\x01 this is not HTTP\r\n\r\n", 400),
        (b"GET /engine.io/ HTTP/2.0\r\n\r\n", 505),
        (b"GET /engine.io/?EIO=4&transport=polling HTTP/1.1\r\nBad Header\r\n\r\n", 400),
        (b"GET /healthz HTTP/1.1\r\nX: " + b"y" * 20_000 + b"\r\n\r\n", 431),
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n", 414),
        (b"POST /engine.io/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 411),
        (b"POST /engine.io/ HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n", 413),
    ],
)
async def test_unreadable_requests_get_an_http_error_and_a_close(
    served: Served, request_bytes: bytes, status: int
) -> None:
    peer = await HttpPeer.connect(served.port)
    peer.writer.write(request_bytes)
    answer = await peer.answer()
    assert answer.status == status
    assert answer.headers["connection"] == "close"
    assert await peer.closed_by_server()


async def test_requests_that_never_complete_are_timed_out() -> None:
    sio, eio = ECHO.build(OPTIONS)
    listener = await msstorm.serve(sio, eio, port=0, handshake_timeout=0.3)
    try:
        half_http = await HttpPeer.connect(listener.port)
        half_http.writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # and nothing more
        half_ws = await HttpPeer.connect(listener.port)
        half_ws.writer.write(b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n")
        idle = await HttpPeer.connect(listener.port)
        assert (await idle.request("GET", "/healthz")).status == 200  # then silence
        answer = await half_http.answer(timeout=2)
        assert answer.status == 408
        assert await half_http.closed_by_server()
        assert await half_ws.closed_by_server()  # picows's handshake timeout
        assert await idle.closed_by_server()
    finally:
        listener.close()
        await listener.wait_closed()


async def test_cors_preflight_and_headers() -> None:
    sio, eio = ECHO.build(OPTIONS)
    listener = await msstorm.serve(sio, eio, port=0, cors_origin="https://a.example")
    try:
        origin = {"Origin": "https://a.example"}
        preflight = await http(
            listener.port,
            "OPTIONS",
            EIO,
            headers={**origin, "Access-Control-Request-Headers": "content-type"},
        )
        assert preflight.status == 204
        assert preflight.headers["access-control-allow-origin"] == "https://a.example"
        assert preflight.headers["access-control-allow-methods"] == "GET, POST, OPTIONS"
        assert preflight.headers["access-control-allow-headers"] == "content-type"
        opened = await http(listener.port, "GET", EIO, headers=origin)
        assert opened.headers["access-control-allow-origin"] == "https://a.example"
        assert opened.headers["access-control-allow-credentials"] == "true"
        other = await http(listener.port, "GET", EIO, headers={"Origin": "https://b.example"})
        assert other.status == 200 and "access-control-allow-origin" not in other.headers
    finally:
        listener.close()
        await listener.wait_closed()
