"""Per-connection protocol state: Engine.IO v4 and Socket.IO v5, without I/O.

How it works

- The server feeds a session every WebSocket frame it receives
  (``receive_text``, ``receive_binary``) and calls ``on_timer(now)`` once
  ``now >= session.deadline``. The session answers with what happened: ``None``
  (nothing for anyone), ``PEER_CLOSED`` (the peer ended the session),
  ``IGNORED`` (well-formed but meaningless here: counted, then dropped), or an
  event for the application; a frame that breaks the protocol raises
  ``ProtocolError`` and the server closes that connection alone.
- Heartbeat. The server pings every ``pingInterval``; a ping not answered within
  ``pingTimeout`` closes the connection. A pong only clears ``pong_deadline``:
  the check happens when the deadline comes, so pongs cost no timer work.
  While a ping is unanswered no further ping is sent, so a silent peer cannot
  keep pushing its own deadline back.
- ``EngineSession`` is a bare Engine.IO session: its events are the messages,
  ``str`` for text and ``bytes`` for binary.
- ``SocketSession`` speaks Socket.IO on top; its events are complete
  ``Packet``\\ s. A namespace is joined when the application accepts the
  client's CONNECT (``join``); events and acks count only on joined namespaces;
  a binary packet waits for all its attachments and may not be interleaved with
  another Socket.IO packet; a connection that joins no namespace within
  ``connectTimeout`` is closed.

Time is an argument, in seconds of a monotonic clock; nothing here reads a clock,
opens a socket or logs.
"""

from __future__ import annotations

from typing import Any

# Absolute imports: this file is also compiled as msstorm._fastpath.session_c.
from msstorm.protocol import packets
from msstorm.protocol.engineio import CLOSE, MESSAGE, NOOP, OPEN, PING, PONG, UPGRADE, Config
from msstorm.protocol.errors import PacketError, PayloadTooLarge, UnexpectedPacket
from msstorm.protocol.packets import (
    ACK,
    BINARY_ACK,
    BINARY_EVENT,
    CONNECT,
    CONNECT_ERROR,
    DISCONNECT,
    EVENT,
    MAX_ACK_ID,
    Packet,
)
from msstorm.protocol.signals import IGNORED, PEER_CLOSED

__all__ = [
    "IGNORED",
    "PEER_CLOSED",
    "TIMER_CONNECT_TIMEOUT",
    "TIMER_IDLE",
    "TIMER_PING",
    "TIMER_PING_TIMEOUT",
    "EngineSession",
    "SocketSession",
]


# What ``on_timer`` asks the server to do.
TIMER_IDLE = 0  # nothing; wait for the new deadline
TIMER_PING = 1  # send a ping ("2")
TIMER_PING_TIMEOUT = 2  # close: the last ping went unanswered
TIMER_CONNECT_TIMEOUT = 3  # close: no namespace joined in time

_NEVER = float("inf")


class EngineSession:
    """One Engine.IO connection over WebSocket."""

    __slots__ = ("config", "deadline", "next_ping", "pong_deadline", "sid")

    def __init__(self, sid: str, config: Config, now: float) -> None:
        self.sid = sid
        self.config = config
        self.next_ping = now + config.ping_interval / 1000.0
        self.pong_deadline = 0.0  # 0 when no ping awaits its pong
        self.deadline = self.next_ping

    # -- frames in ------------------------------------------------------------

    def receive_text(self, frame: bytes) -> Any:
        if not frame:
            raise PacketError("empty Engine.IO packet")
        if len(frame) > self.config.max_payload:
            raise PayloadTooLarge(f"message over maxPayload ({self.config.max_payload} bytes)")
        kind = frame[0]
        if kind == MESSAGE:
            return self._message(frame)
        if kind == PONG:
            self.pong_deadline = 0.0
            return None
        if kind == CLOSE:
            return PEER_CLOSED
        if kind == PING:
            # Engine.IO v4 reversed the heartbeat: clients never ping.
            raise UnexpectedPacket("ping from a client (Engine.IO v4 pings go server to client)")
        if kind == NOOP or kind == UPGRADE or kind == OPEN:
            return IGNORED
        raise PacketError(f"unknown Engine.IO packet type {frame[:1]!r}")

    def receive_binary(self, frame: bytes) -> Any:
        if len(frame) > self.config.max_payload:
            raise PayloadTooLarge(f"message over maxPayload ({self.config.max_payload} bytes)")
        return frame

    def _message(self, frame: bytes) -> Any:
        try:
            return frame[1:].decode()
        except UnicodeDecodeError:
            raise PacketError("text message is not valid UTF-8") from None

    # -- time -----------------------------------------------------------------

    def on_timer(self, now: float) -> int:
        """Act on the deadline; sets the next ``deadline``. Call when ``now >= deadline``."""
        pong_deadline = self.pong_deadline
        if pong_deadline and now >= pong_deadline:
            return TIMER_PING_TIMEOUT
        action = self._other_deadlines(now)
        if action:
            return action
        if now >= self.next_ping:
            self.next_ping = now + self.config.ping_interval / 1000.0
            if not pong_deadline:
                self.pong_deadline = pong_deadline = now + self.config.ping_timeout / 1000.0
                action = TIMER_PING
        self.deadline = self._earliest(self.next_ping, pong_deadline or _NEVER)
        return action

    def _other_deadlines(self, now: float) -> int:
        return TIMER_IDLE

    def _earliest(self, a: float, b: float) -> float:
        return a if a < b else b


class SocketSession(EngineSession):
    """One Socket.IO client connection: namespaces, acks, binary packets."""

    __slots__ = (
        "ack_callbacks",
        "attachments",
        "binary_size",
        "connect_deadline",
        "last_ack_id",
        "namespaces",
        "partial",
    )

    # The codec; ``msstorm._fastpath`` binds the compiled one in a subclass.
    decode = staticmethod(packets.decode)
    reconstruct = staticmethod(packets.reconstruct)

    def __init__(self, sid: str, config: Config, now: float) -> None:
        super().__init__(sid, config, now)
        self.namespaces: dict[str, str] = {}  # joined namespace -> socket sid
        self.connect_deadline = now + config.connect_timeout / 1000.0
        self.deadline = self._earliest(self.deadline, self.connect_deadline)
        self.partial: Packet | None = None  # binary packet waiting for attachments
        self.attachments: list[bytes] | None = None
        self.binary_size = 0
        self.last_ack_id = -1
        self.ack_callbacks: dict[int, Any] | None = None

    # -- frames in ------------------------------------------------------------

    def _message(self, frame: bytes) -> Any:
        if self.partial is not None:
            raise UnexpectedPacket(
                f"a packet arrived while {self.partial.attachments} attachments were due"
            )
        packet = self.decode(frame, 1)
        kind = packet.type
        namespace = packet.namespace
        joined = namespace in self.namespaces
        if kind == EVENT or kind == ACK:
            return packet if joined else IGNORED
        if kind == BINARY_EVENT or kind == BINARY_ACK:
            # Even on an unknown namespace the attachments must be read off.
            self.partial = packet
            self.attachments = []
            self.binary_size = len(frame)
            return self._complete() if packet.attachments == 0 else None
        if kind == CONNECT:
            if joined:
                raise UnexpectedPacket(f"second CONNECT to namespace {namespace!r}")
            return packet
        if kind == DISCONNECT:
            # The server answers by calling ``leave``, which names the socket.
            return packet if joined else IGNORED
        assert kind == CONNECT_ERROR
        raise UnexpectedPacket("CONNECT_ERROR goes from server to client only")

    def receive_binary(self, frame: bytes) -> Any:
        attachments = self.attachments
        if attachments is None:
            raise UnexpectedPacket("binary frame with no attachment due")
        self.binary_size += len(frame)
        if self.binary_size > self.config.max_payload:
            raise PayloadTooLarge(
                f"packet and attachments exceed maxPayload ({self.config.max_payload} bytes)"
            )
        attachments.append(frame)
        return self._complete()

    def _complete(self) -> Any:
        packet = self.partial
        attachments = self.attachments
        assert packet is not None and attachments is not None
        if len(attachments) < packet.attachments:
            return None
        self.partial = None
        self.attachments = None
        self.binary_size = 0
        packet.data = self.reconstruct(packet.data, attachments)
        packet.attachments = 0
        return packet if packet.namespace in self.namespaces else IGNORED

    # -- the application's answers -------------------------------------------

    def join(self, namespace: str, sid: str) -> None:
        """The application accepted a CONNECT: ``sid`` now names the socket."""
        self.namespaces[namespace] = sid
        self.connect_deadline = 0.0

    def leave(self, namespace: str) -> str | None:
        """The socket leaves ``namespace`` (either side asked); its sid, or None if not joined."""
        return self.namespaces.pop(namespace, None)

    def expect_ack(self, callback: Any) -> int:
        """Reserve an ack id for an emit whose answer ``callback`` waits for."""
        ack_id = self.last_ack_id + 1
        if ack_id > MAX_ACK_ID:
            ack_id = 0
        self.last_ack_id = ack_id
        if self.ack_callbacks is None:
            self.ack_callbacks = {}
        self.ack_callbacks[ack_id] = callback
        return ack_id

    def take_ack(self, ack_id: int) -> Any:
        """The callback waiting for ``ack_id``, or None when nobody waits for it."""
        callbacks = self.ack_callbacks
        if callbacks is None:
            return None
        callback = callbacks.pop(ack_id, None)
        if not callbacks:
            self.ack_callbacks = None
        return callback

    # -- time -----------------------------------------------------------------

    def _other_deadlines(self, now: float) -> int:
        connect_deadline = self.connect_deadline
        if connect_deadline and now >= connect_deadline:
            return TIMER_CONNECT_TIMEOUT
        return TIMER_IDLE

    def _earliest(self, a: float, b: float) -> float:
        earliest = a if a < b else b
        connect_deadline = self.connect_deadline
        if connect_deadline and connect_deadline < earliest:
            return connect_deadline
        return earliest
