"""Engine.IO over HTTP long-polling, and the upgrade from it to WebSocket.

How it works

- A ``PollingConnection`` is a ``Connection`` (the same session, the same
  application callbacks, the same fan-out) whose frames travel in HTTP
  requests: what the server sends waits in ``queue`` until the client's next
  ``GET``, which takes everything queued (joined by ``\\x1e``, binary frames in
  base64); a ``POST`` carries the client's packets and is answered ``ok``.
  One ``GET`` at a time: a second one while the first waits breaks the session.
- The server ends a session by answering the pending ``GET`` with a close
  packet, ``1`` (``6`` when the client asked to close). With no ``GET``
  pending, a session the client broke (a bad payload, a missed pong, a dropped
  poll) or closed itself is over at once; one the server chose to end lingers
  until the next ``GET`` takes the close packet, or for ``pingTimeout`` at
  most. Any request for the sid after that is refused (``400``, unknown sid).
- The heartbeat keeps the session's own schedule, not the wheel's ticks: a ping
  is due ``pingInterval`` after the last, its pong ``pingTimeout`` after that,
  however late the tick that queues the ping; and a request is checked against
  that deadline when it comes, so no tick lets an overdue session answer.
- Upgrade: the client opens a WebSocket with the same ``sid`` (picows hands it
  to this object, which is a WebSocket listener too) and sends ``2probe``; the
  server answers ``3probe`` and queues a ``6`` noop, so that the pending ``GET``
  returns and the client stops polling. The client's ``5`` completes the
  upgrade: what is still queued goes out on the WebSocket, and from then on the
  connection is an ordinary WebSocket one. A poll after that is refused; a
  second WebSocket for the sid (``TurnedAway``) opens and is closed at once,
  as Node's engine.io does: clients take a refused handshake for an error, but
  a close for the end of a probe.

This is the compatibility path (default clients start with it), not the
million-connection one: it is plain Python.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import picows
from picows import WSCloseCode, WSMsgType

from msstorm._fastpath import Connection
from msstorm._fastpath.wire import trim
from msstorm.protocol.errors import HandshakeError, PacketError
from msstorm.protocol.http import Request
from msstorm.protocol.polling import decode_payload, encode_payload

log = logging.getLogger("msstorm.server")

TEXT_PLAIN = "text/plain; charset=UTF-8"
# Packets per GET answer: python-engineio's client refuses a payload of more
# (its max_decode_packets); the rest wait for the next GET.
MAX_PACKETS_PER_POLL = 16
_PROBE = b"2probe"
_PROBE_ANSWER = b"3probe"
_UPGRADE = b"5"
_NOOP = b"6"
_CLOSE = b"1"
# Why a session ends on the spot (Node's engine.io drops the session then, too):
# the client broke it or closed it, so there is nothing to tell it.
_OVER_AT_ONCE = frozenset({"parse error", "ping timeout", "transport error", "transport close"})
# Deadlines are sums of floats: an instant may miss itself by a rounding.
_ROUNDING = 1e-6


class PollingConnection(Connection):  # type: ignore[misc]  # a compiled base
    """One Engine.IO session over long-polling (and, once upgraded, over WebSocket)."""

    def __init__(self, app: Any) -> None:
        super().__init__(app)
        self.sid = ""
        self.queue: list[bytes | bytearray] = []  # frames for the next GET
        self.queued = 0  # their bytes: past config.max_queued the client is dropped
        self.poll: Any = None  # the HttpConnection of the GET waiting for them
        self.probe: Any = None  # the WebSocket being probed for an upgrade
        self.upgraded = False
        self.linger_until = 0.0
        self._flush_due = False

    def start(self, http: Any, headers: list[tuple[str, str]]) -> None:
        """A handshake GET: open the session and answer with its ``open`` packet."""
        self.sid = self.app.open(self, upgrades=("websocket",))
        self.app.polling[self.sid] = self
        self._poll(http, headers)

    # -- HTTP requests for this session -----------------------------------------

    def request(self, http: Any, request: Request, headers: list[tuple[str, str]]) -> None:
        """A GET or POST naming this session's sid; ``headers`` go on the answer."""
        if self.upgraded:
            raise HandshakeError(HandshakeError.BAD_REQUEST)  # polling is over for it
        if self._pong_overdue():
            self.close(reason="ping timeout")
            raise HandshakeError(HandshakeError.UNKNOWN_SID)  # the session is over
        if request.method == "GET":
            self._poll(http, headers)
        elif request.method == "POST":
            self._post(http, request.body, headers)
        else:
            raise HandshakeError(HandshakeError.BAD_REQUEST)

    def _pong_overdue(self) -> bool:
        """Whether the last ping's pong is overdue, seen by the heartbeat's tick or not yet."""
        session = self.session
        if session is None or not session.pong_deadline:
            return False
        return bool(self.app.heartbeat.loop.time() >= session.pong_deadline - _ROUNDING)

    def _poll(self, http: Any, headers: list[tuple[str, str]]) -> None:
        if self.poll is not None:
            # Two GETs at once: the client is broken. The first gets the close packet.
            self.close(reason="transport error")
            raise HandshakeError(HandshakeError.BAD_REQUEST)
        self.poll = (http, headers)
        http.hold(self)
        if self.queue:
            self._flush()

    def _post(self, http: Any, body: bytes, headers: list[tuple[str, str]]) -> None:
        if self.closed:
            raise HandshakeError(HandshakeError.UNKNOWN_SID)
        try:
            packets = decode_payload(body)
        except PacketError as exc:
            self.app.refused(self, exc)
            self.close(reason=exc.reason)
            raise HandshakeError(HandshakeError.BAD_REQUEST) from None
        for frame, binary in packets:
            self.receive(frame, binary)
            if self.closed:
                break
        if self.closed and self.close_reason != "transport close":
            raise HandshakeError(HandshakeError.BAD_REQUEST)  # the packets broke the protocol
        http.respond(200, b"ok", "text/html", headers)

    def request_gone(self, http: Any) -> None:
        """The client dropped the connection of its pending GET."""
        if self.poll is not None and self.poll[0] is http:
            self.poll = None
            if not self.closed:
                self.close(reason="transport error")

    # -- frames out ---------------------------------------------------------------

    def send_text(self, frame: bytes) -> None:
        if self.upgraded:
            super().send_text(frame)
        elif self.held is not None:
            self.held.append(frame)
        elif not self.closed:
            self._queue(frame)

    def send_binary(self, frame: bytes) -> None:
        if self.upgraded:
            super().send_binary(frame)
        elif self.held is not None:
            self.held.append(bytearray(frame))
        elif not self.closed:
            self._queue(bytearray(frame))

    def _queue(self, frame: bytes | bytearray) -> None:
        self.queue.append(frame)
        self.queued += len(frame)
        if self.queued > self.app.config.max_queued:
            self.app.slow(self, self.queued)
            self.close(reason="slow consumer")
            return
        if self.poll is not None and not self._flush_due:
            # Answer once per loop turn, with everything sent meanwhile.
            self._flush_due = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_due = False
        if self.poll is None or not self.queue:
            return
        (http, headers), self.poll = self.poll, None
        frames = self.queue[:MAX_PACKETS_PER_POLL]
        del self.queue[:MAX_PACKETS_PER_POLL]
        self.queued -= sum(len(frame) for frame in frames)
        http.respond(200, encode_payload(frames), TEXT_PLAIN, headers)
        if self.closed and not self.queue:
            self._forget()  # the close packet is delivered

    # -- the end of the session ---------------------------------------------------

    def close(self, code: Any = WSCloseCode.OK, reason: str = "forced close") -> None:
        if self.closed:
            return
        super().close(code, reason)
        if self.upgraded:
            return  # a WebSocket now: picows reports the disconnect
        if self.probe is not None:
            self.probe.disconnect()
            self.probe = None
        # The session's last packet: the client asked to close, or is told to.
        self.queue = [_NOOP if reason == "transport close" else _CLOSE]
        self.queued = 1
        self.app.closed(self, reason)
        self.session = None
        if self.poll is not None:
            self._flush()
        elif reason in _OVER_AT_ONCE:
            self._forget()
        else:
            heartbeat = self.app.heartbeat
            self.linger_until = heartbeat.loop.time() + self.app.config.ping_timeout / 1000.0
            heartbeat.schedule(self, self.linger_until)

    def _forget(self) -> None:
        if self.app.polling.get(self.sid) is self:
            del self.app.polling[self.sid]
        self.queue = []
        self.queued = 0

    def on_timer(self, wheel: Any, now: float) -> None:
        if not self.closed:
            session = self.session
            if not self.upgraded and session is not None and now > session.deadline:
                # On the session's schedule: what was due then happens as of then.
                now = session.deadline
            super().on_timer(wheel, now)
        elif not self.upgraded and self.app.polling.get(self.sid) is self:
            if now >= self.linger_until:
                self._forget()  # nobody came for the close packet
            else:
                wheel.schedule(self, self.linger_until)

    # -- the upgrade: picows calls these for the WebSocket naming this sid ---------

    def upgradable(self) -> bool:
        """Whether a WebSocket naming this sid may probe it: not once another has."""
        return not (self.upgraded or self.probe is not None or self.closed)

    def on_ws_connected(self, transport: Any) -> None:
        if not self.upgradable():
            _turn_away(transport)
            return
        self.probe = transport

    def on_ws_frame(self, transport: Any, frame: Any) -> None:
        if self.upgraded:
            super().on_ws_frame(transport, frame)
            return
        if transport is not self.probe:
            return
        data = frame.get_payload_as_bytes() if frame.msg_type == WSMsgType.TEXT else b""
        if data == _PROBE:
            transport.send(WSMsgType.TEXT, _PROBE_ANSWER)
            self._queue(_NOOP)  # ends the pending GET: the client stops polling
        elif data == _UPGRADE:
            self._upgrade(transport)
        else:
            # Anything else before the upgrade: drop the probe, keep polling.
            self.probe = None
            transport.send_close(WSCloseCode.PROTOCOL_ERROR, b"expected 2probe or 5")
            transport.disconnect()

    def _upgrade(self, transport: Any) -> None:
        self.probe = None
        self.upgraded = True
        self.transport = transport
        if not trim(transport):
            self.app.stats.trims_refused += 1
        if self.poll is not None:
            (http, headers), self.poll = self.poll, None
            http.respond(200, _NOOP, TEXT_PLAIN, headers)
        frames, self.queue = self.queue, []
        self.queued = 0
        for frame in frames:
            if type(frame) is bytearray:
                super().send_binary(bytes(frame))
            else:
                super().send_text(frame)

    def on_ws_disconnected(self, transport: Any) -> None:
        if transport is self.probe:
            self.probe = None
        elif self.upgraded and transport is self.transport:
            super().on_ws_disconnected(transport)
            self._forget()


class TurnedAway(picows.WSListener):
    """The listener of a WebSocket naming a session that another one upgrades or
    has upgraded: the handshake completes, then the server closes it."""

    def on_ws_connected(self, transport: Any) -> None:
        _turn_away(transport)


def _turn_away(transport: Any) -> None:
    transport.send_close(WSCloseCode.POLICY_VIOLATION, b"session already upgraded")
    transport.disconnect()
