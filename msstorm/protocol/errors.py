"""Every error msstorm raises on purpose, in one tree.

    MsstormError
    ├── ProtocolError            a peer broke Engine.IO / Socket.IO: close *that* connection
    │   ├── PacketError          a packet that does not parse (bad type, JSON, ack id, namespace)
    │   ├── PayloadTooLarge      a message or its attachments over ``maxPayload``
    │   └── UnexpectedPacket     a well-formed packet the session state does not allow
    ├── HttpError                an HTTP request that cannot be read or served (status)
    │   └── HandshakeError       an HTTP request the Engine.IO handshake refuses (status + code)
    └── ConnectionRefused        raised by a connect handler: answered with CONNECT_ERROR

A ``ProtocolError`` carries ``reason``, the short Socket.IO disconnect reason the
server reports for the connection it closes (``"parse error"``), and ``close_code``,
the WebSocket close code sent to the peer. The message says what was wrong.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ConnectionRefused",
    "HandshakeError",
    "HttpError",
    "MsstormError",
    "PacketError",
    "PayloadTooLarge",
    "ProtocolError",
    "UnexpectedPacket",
]

# WebSocket close codes (RFC 6455 section 7.4.1) used when a peer is dropped.
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_INVALID_DATA = 1007
CLOSE_POLICY_VIOLATION = 1008
CLOSE_MESSAGE_TOO_BIG = 1009


class MsstormError(Exception):
    """Base class of the errors msstorm raises on purpose."""


class ProtocolError(MsstormError):
    """The peer broke the protocol; its connection is closed, nobody else's."""

    reason = "parse error"
    close_code = CLOSE_PROTOCOL_ERROR


class PacketError(ProtocolError):
    """A packet that cannot be parsed."""


class PayloadTooLarge(ProtocolError):
    """A message, or a packet with its binary attachments, over ``maxPayload`` bytes."""

    close_code = CLOSE_MESSAGE_TOO_BIG


class UnexpectedPacket(ProtocolError):
    """A well-formed packet that the session's state does not allow."""

    close_code = CLOSE_POLICY_VIOLATION


class HttpError(MsstormError):
    """An HTTP request that cannot be read or served: answered with ``status`` and the
    message as the body, then the connection is closed."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status} {message}")
        self.status = status
        self.message = message


class HandshakeError(HttpError):
    """An HTTP request that the Engine.IO handshake refuses.

    ``code`` and ``message`` are Engine.IO's error codes, sent as the JSON body
    ``{"code": ..., "message": ...}`` with HTTP ``status``.
    """

    UNKNOWN_TRANSPORT = 0
    UNKNOWN_SID = 1
    BAD_HANDSHAKE_METHOD = 2
    BAD_REQUEST = 3
    FORBIDDEN = 4
    UNSUPPORTED_PROTOCOL_VERSION = 5

    MESSAGES = {
        UNKNOWN_TRANSPORT: "Transport unknown",
        UNKNOWN_SID: "Session ID unknown",
        BAD_HANDSHAKE_METHOD: "Bad handshake method",
        BAD_REQUEST: "Bad request",
        FORBIDDEN: "Forbidden",
        UNSUPPORTED_PROTOCOL_VERSION: "Unsupported protocol version",
    }

    def __init__(self, code: int, status: int = 400) -> None:
        super().__init__(status, self.MESSAGES[code])
        self.code = code


class ConnectionRefused(MsstormError):
    """Raise from a connect handler to refuse the namespace connection.

    The client receives CONNECT_ERROR with ``{"message": message}``, plus
    ``"data"`` when given, as Node's Socket.IO server sends it.
    """

    def __init__(self, message: str = "Connection refused", data: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.data = data

    def payload(self) -> dict[str, Any]:
        if self.data is None:
            return {"message": self.message}
        return {"message": self.message, "data": self.data}
