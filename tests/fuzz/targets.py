"""What every decoder of untrusted input may do with any bytes: accept, or refuse with
its documented error. One function per decoder, shared by the hypothesis tests
(tests/protocol/test_fuzz.py) and the atheris targets (``make fuzz``).

Each target takes bytes and returns normally when the decoder accepted them or
raised the error it documents; any other exception escapes: that is a bug.
"""

from __future__ import annotations

import contextlib
from types import ModuleType, SimpleNamespace
from typing import Any

import picows.picows

from msstorm import _fastpath
from msstorm._fastpath import (
    connection,
    connection_c,
    histogram,
    histogram_c,
    pokeback,
    pokeback_c,
    rtt,
    rtt_c,
    session_c,
)
from msstorm.cluster import bus
from msstorm.protocol import packets as packets_py
from msstorm.protocol.engineio import Config, parse_handshake
from msstorm.protocol.errors import HandshakeError, HttpError, PacketError, ProtocolError
from msstorm.protocol.http import RequestReader
from msstorm.protocol.polling import decode_payload
from msstorm.protocol.session import SocketSession

CODECS: dict[str, ModuleType] = {"python": packets_py, "cython": _fastpath.codec}
SESSIONS: dict[str, type[SocketSession]] = {"python": SocketSession, "cython": _fastpath.Session}
TAPS: dict[str, tuple[ModuleType, ModuleType, ModuleType]] = {
    "python": (pokeback, rtt, connection),
    "cython": (pokeback_c, rtt_c, connection_c),
}
SESSIONS: dict[str, Any] = {"python": SocketSession, "cython": session_c.SocketSession}
HISTOGRAMS: dict[str, ModuleType] = {"python": histogram, "cython": histogram_c}
CONFIG = Config(ping_interval=25000, ping_timeout=20000, max_payload=4096, connect_timeout=45000)


def socketio_packet(data: bytes, twin: str = "cython") -> None:
    """The Socket.IO codec: a packet, or PacketError."""
    codec = CODECS[twin]
    try:
        packet = codec.decode(data)
    except PacketError:
        return
    if packet.attachments:
        with contextlib.suppress(PacketError):
            codec.reconstruct(packet.data, [b"x"] * packet.attachments)


def session(data: bytes, twin: str = "cython") -> None:
    """A joined Socket.IO session fed the frames ``data`` splits into (``\\n`` between
    frames, a leading ``\\x00`` marks a binary one): events, or ProtocolError."""
    state = SESSIONS[twin]("sid", CONFIG, 0.0)
    state.join("/", "socket-sid")
    for frame in data.split(b"\n"):
        try:
            if frame.startswith(b"\x00"):
                state.receive_binary(frame[1:])
            else:
                state.receive_text(frame)
        except ProtocolError:
            return


def http_requests(data: bytes) -> None:
    """The HTTP front's reader: requests, or HttpError."""
    reader = RequestReader(max_head=2048, max_body=4096)
    half = len(data) // 2
    try:
        for chunk in (data[:half], data[half:]):  # as if it came in two reads
            reader.feed(chunk)
            while reader.request_line() is not None and reader.next_request() is not None:
                pass
    except HttpError:
        return


def polling_payload(data: bytes) -> None:
    """A long-polling POST body: packets, or PacketError."""
    try:
        decode_payload(data)
    except PacketError:
        return


def handshake_query(data: bytes) -> None:
    """An Engine.IO request's method and query string: a handshake, or HandshakeError."""
    method, _, query = data.decode("latin-1").partition(" ")
    try:
        parse_handshake(method, query, ("polling", "websocket"))
    except HandshakeError:
        return


def pokeback_frame(data: bytes, twin: str = "cython") -> None:
    """The pokeBack fast path: any frame is taken or left, never an error."""
    tap_module, rtt_module, connection_module = TAPS[twin]
    table = rtt_module.PokeTable(4)
    for i in range(4):
        table.mark_sent(i, 0.0)
    shard = SimpleNamespace(targets=["sid-0", "sid-1", "sid-2", "sid-3"], table=table)
    shard.expected = 4
    shard.grows = False
    tap = tap_module.PokeBackTap({"op": shard}, lambda *args: None)
    conn = connection_module.Connection(SimpleNamespace(traffic=connection_module.Traffic()))
    conn.session = SESSIONS[twin]("eio-sid", Config(), 0.0)
    conn.session.namespaces = {"/": "sid-1"}
    for frame in (data, b'42["pokeBack",' + data):
        result = tap.feed(conn, frame)
        assert result in (True, False), result
        ws_frame = picows.picows._make_test_ws_frame(picows.WSMsgType.TEXT, frame, True, False)
        result = tap.take(conn, ws_frame)  # the same, read off picows's buffer
        assert result in (True, False), result


def bus_message(data: bytes) -> None:
    """A frame from the cluster bus: a message, or ValueError."""
    try:
        bus.decode(data)
    except ValueError:
        return


def packed_histogram(data: bytes, twin: str = "cython") -> None:
    """A histogram sent by another worker: a histogram, or ValueError."""
    try:
        HISTOGRAMS[twin].Histogram.from_bytes(data).summary()
    except ValueError:
        return


TARGETS: dict[str, Any] = {
    "socketio_packet": socketio_packet,
    "session": session,
    "http_requests": http_requests,
    "polling_payload": polling_payload,
    "handshake_query": handshake_query,
    "pokeback_frame": pokeback_frame,
    "bus_message": bus_message,
    "packed_histogram": packed_histogram,
}
