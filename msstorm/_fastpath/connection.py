"""One WebSocket connection: the picows listener that ties a socket to its session.

picows calls this listener for each frame; it hands the frame to the protocol
session (``msstorm.protocol.session``), passes what comes out to the
application (a ``Server`` or ``EngineServer``), and writes what the application
sends. It is the only per-connection object msstorm adds to picows's own, so it
holds nothing the connection does not need after the handshake: no Task, no
logger, no buffer (a fragmented message borrows one until its last fragment).

``connection_c.py`` is this same file compiled by Cython in pure Python mode,
typed by ``connection_c.pxd``.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable, Generator
from typing import Any

import picows.picows
from picows import WSCloseCode, WSMsgType

from msstorm._fastpath.wire import HEADROOM, SHARED_UP_TO
from msstorm._fastpath.wire import disconnection as _disconnection
from msstorm._fastpath.wire import lean as _lean
from msstorm._fastpath.wire import outgoing as _outgoing
from msstorm._fastpath.wire import trim as _trim
from msstorm.protocol.errors import PayloadTooLarge, ProtocolError
from msstorm.protocol.session import (
    IGNORED,
    PEER_CLOSED,
    TIMER_CONNECT_TIMEOUT,
    TIMER_PING,
    TIMER_PING_TIMEOUT,
)

_TEXT = WSMsgType.TEXT
_BINARY = WSMsgType.BINARY
_CONTINUATION = WSMsgType.CONTINUATION
_CLOSE = WSMsgType.CLOSE
_PING_FRAME = b"2"
_SOL_SOCKET = socket.SOL_SOCKET
_SO_LINGER = socket.SO_LINGER
_RESET_ON_CLOSE = struct.pack("ii", 1, 0)  # linger on, for 0 s: close() resets


class Traffic:
    """Frames and payload bytes through the connections of one endpoint (for /metrics)."""

    def __init__(self) -> None:
        self.frames_in = 0
        self.bytes_in = 0
        self.frames_out = 0
        self.bytes_out = 0


class Connection(picows.picows.WSListener):
    """The listener of one accepted WebSocket, serving ``app``."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.traffic = app.traffic
        self.transport: Any = None
        self.session: Any = None
        self.closed = False
        self.close_reason: str | None = None
        self.fragments: bytearray | None = None  # while a fragmented message arrives
        self.fragment_binary = False
        self.held: list[Any] | None = None  # frames held back while a CONNECT is decided
        # The kernel's send buffer is full and what is sent waits in user space
        # (picows's pause_writing): pokes are not sent (they count as lost) and
        # past config.max_queued bytes waiting the client is dropped.
        self.paused = False
        self.peer: Any = None  # the source address, when its connections are counted

    # -- picows callbacks -----------------------------------------------------

    def on_ws_connected(self, transport: Any) -> None:
        self.transport = transport
        if not _trim(transport):
            self.app.stats.trims_refused += 1  # it keeps picows's buffers: /healthz says why
        if self.app.admit(self, transport):
            self.app.open(self)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False

    def on_ws_frame(self, transport: Any, frame: Any) -> None:
        if self.closed:
            return
        traffic = self.traffic
        traffic.frames_in += 1
        traffic.bytes_in += frame.payload_size
        msg_type = frame.msg_type
        if msg_type == _CLOSE:
            self.close(WSCloseCode.OK, "transport close")
            return
        if not frame.fin or msg_type == _CONTINUATION:
            self._fragment(frame)
            return
        if msg_type == _TEXT:
            # An application's fast path may take the frame off picows's buffer, uncopied.
            tap = self.app.tap
            if tap is not None and self.session.partial is None and tap.take(self, frame):
                return
            self._decode(frame.get_payload_as_bytes(), False)
        elif msg_type == _BINARY:
            self._decode(frame.get_payload_as_bytes(), True)

    def on_ws_disconnected(self, transport: Any) -> None:
        self.closed = True
        self.fragments = None
        self.held = None
        if self.close_reason is None:
            self.close_reason = "transport close"
            sent = transport.close_handshake.sent if transport.close_handshake else None
            if sent is not None and sent.code == WSCloseCode.MESSAGE_TOO_BIG:
                # picows refused a frame over max_frame_size before we saw it.
                self.app.refused(self, PayloadTooLarge("frame over maxPayload"))
                self.close_reason = "parse error"
        self.app.closed(self, self.close_reason)
        # The heartbeat wheel may hold this object until its next deadline: let
        # the transport and the session (kilobytes) go now.
        self.transport = None
        self.session = None

    # -- standing in for the transport's disconnection future (wire.trim) ----------

    def done(self) -> bool:
        """Nobody awaits the stand-in: picows has nothing to resolve at the disconnection
        (the first await put a future of the transport's own in its place)."""
        return True

    def __await__(self) -> Generator[Any, None, None]:
        """What the transport's ``wait_disconnected()`` awaits once trimmed."""
        waiting: Generator[Any, None, None] = _disconnection(self.transport, self).__await__()
        return waiting

    # -- frames in ------------------------------------------------------------

    def receive(self, data: bytes, binary: bool) -> None:
        """One whole message: through the session, then to the app."""
        if not binary:
            # An application's fast path may take the frame before it is decoded.
            tap = self.app.tap
            if tap is not None and self.session.partial is None and tap.feed(self, data):
                return
        self._decode(data, binary)

    def _decode(self, data: bytes, binary: bool) -> None:
        session = self.session
        try:
            event = session.receive_binary(data) if binary else session.receive_text(data)
            if event is None:
                return
            if event is IGNORED:
                self.app.stats.ignored += 1
            elif event is PEER_CLOSED:
                self.close(WSCloseCode.OK, "transport close")
            else:
                self.app.handle(self, event)
        except ProtocolError as exc:
            self.app.refused(self, exc)
            self.close(exc.close_code, exc.reason)

    def _fragment(self, frame: Any) -> None:
        # Browsers and Node's ws rarely fragment; when they do, gather the pieces.
        if self.fragments is None:
            if frame.msg_type == _CONTINUATION:
                self._refuse(ProtocolError("continuation frame with no message to continue"))
                return
            self.fragments = bytearray()
            self.fragment_binary = frame.msg_type == _BINARY
        elif frame.msg_type != _CONTINUATION:
            self._refuse(ProtocolError("new message before the last one's final fragment"))
            return
        self.fragments += frame.get_payload_as_bytes()
        if len(self.fragments) > self.app.config.max_payload:
            self._refuse(PayloadTooLarge("fragmented message over maxPayload"))
            return
        if frame.fin:
            data = bytes(self.fragments)
            self.fragments = None
            self.receive(data, self.fragment_binary)

    def _refuse(self, exc: ProtocolError) -> None:
        self.fragments = None
        self.app.refused(self, exc)
        self.close(exc.close_code, exc.reason)

    # -- frames out -----------------------------------------------------------

    def send_text(self, frame: bytes) -> None:
        if self.held is not None:
            self.held.append(frame)
        elif not self.closed and (not self.paused or self._room()):
            self.traffic.frames_out += 1
            self.traffic.bytes_out += len(frame)
            self._write(_TEXT, frame)

    def send_binary(self, frame: bytes) -> None:
        if self.held is not None:
            self.held.append(bytearray(frame))  # bytearray marks it binary until release
        elif not self.closed and (not self.paused or self._room()):
            self.traffic.frames_out += 1
            self.traffic.bytes_out += len(frame)
            self._write(_BINARY, frame)

    def _write(self, kind: Any, frame: bytes) -> None:
        """``wire.send`` without a Python call: through the process's shared buffer, so
        that picows's own write buffer does not grow to the largest frame sent."""
        if len(frame) > SHARED_UP_TO:
            self.transport.send(kind, frame)
        else:
            _outgoing[HEADROOM:] = frame
            self.transport.send_reuse_external_bytearray(kind, _outgoing, HEADROOM)

    def _room(self) -> bool:
        """While paused: whether more may wait for this client; if not, it is dropped."""
        waiting = self.transport.underlying_transport.get_write_buffer_size()
        if waiting <= self.app.config.max_queued:
            return True
        self.app.slow(self, waiting)
        self.abort("slow consumer")
        return False

    def send_frames(self, frames: Any) -> None:
        """What the codec's ``encode`` returned: a text frame, or text then attachments."""
        if type(frames) is bytes:
            self.send_text(frames)
            return
        first = True
        for frame in frames:
            if first:
                self.send_text(frame)
                first = False
            else:
                self.send_binary(frame)

    def hold(self) -> None:
        """Keep outgoing frames back until ``release`` (while a CONNECT is decided)."""
        if self.held is None:
            self.held = []

    def release(self) -> None:
        held = self.held
        self.held = None
        if held:
            for frame in held:
                if type(frame) is bytearray:
                    self.send_binary(bytes(frame))
                else:
                    self.send_text(frame)

    def abort(self, reason: str) -> None:
        """Drop the connection at once, and what waits to be sent with it: no close
        frame, and a reset, so that the kernel does not keep the socket and its
        buffers trying to deliver them to a peer that does not read."""
        if not self._closing(reason):
            return
        transport = self.transport
        if transport is not None:
            sock = transport.underlying_transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(_SOL_SOCKET, _SO_LINGER, _RESET_ON_CLOSE)
            transport.disconnect(False)

    def close(self, code: Any = WSCloseCode.OK, reason: str = "forced close") -> None:
        """Close this connection with a WebSocket close frame; ``reason`` goes to the app."""
        if not self._closing(reason):
            return
        transport = self.transport
        if transport is not None:
            transport.send_close(code, reason.encode())
            transport.disconnect()

    def _closing(self, reason: str) -> bool:
        """Mark the connection closed for ``reason``; False when it was already."""
        if self.closed:
            return False
        self.closed = True
        self.close_reason = reason
        self.fragments = None
        self.held = None
        return True

    # -- time -----------------------------------------------------------------

    def on_timer(self, wheel: Any, now: float) -> None:
        """The heartbeat wheel hands the connection back once its deadline may have come
        (``serve_due``)."""
        session = self.session
        if self.closed or session is None:
            return
        if now < session.deadline:
            wheel.schedule(self, session.deadline)
            return
        action = session.on_timer(now)
        if action == TIMER_PING:
            self.send_text(_PING_FRAME)  # not the transport's: polling sessions queue it
            # What a burst of input made the read buffer grow to.
            if self.transport is not None and not _lean(self.transport):
                self.app.stats.trims_refused += 1
        elif action == TIMER_PING_TIMEOUT:
            self.close(WSCloseCode.OK, "ping timeout")
            return
        elif action == TIMER_CONNECT_TIMEOUT:
            self.close(WSCloseCode.OK, "connect timeout")
            return
        wheel.schedule(self, session.deadline)


def serve_due(wheel: Any, now: float, failed: Callable[[Any], None]) -> int:
    """The heartbeat's tick: every item of ``wheel`` due by ``now`` acts (``on_timer``);
    ``failed(item)`` for one that raised, so that one broken item stops nobody else's
    heartbeat. How many items were due.

    Compiled, the loop over the due connections makes no Python call: the wheel, the
    connection and its session are typed, and so is the ping's send.
    """
    due = wheel.advance(now)
    for item in due:
        try:
            if isinstance(item, Connection):
                connection = item
                connection.on_timer(wheel, now)
            else:  # a long-polling request or an HTTP connection's own deadline
                item.on_timer(wheel, now)
        except Exception:
            failed(item)
    return len(due)
