"""Engine.IO v4 packets and handshake rules, without I/O.

An Engine.IO packet is one character for its type and an optional payload.
Over WebSocket each packet is one frame: text frames carry ``<type><text>``,
binary frames carry a ``message`` as raw bytes with no type prefix.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote

import orjson

from .errors import HandshakeError

__all__ = [
    "CLOSE",
    "MESSAGE",
    "NOOP",
    "OPEN",
    "PING",
    "PONG",
    "UPGRADE",
    "Config",
    "Handshake",
    "open_packet",
    "parse_handshake",
]

# Packet types, as the byte that starts a text frame.
OPEN = ord("0")
CLOSE = ord("1")
PING = ord("2")
PONG = ord("3")
MESSAGE = ord("4")
UPGRADE = ord("5")
NOOP = ord("6")


@dataclass(frozen=True, slots=True)
class Config:
    """Connection settings, in Socket.IO's units (milliseconds, bytes).

    ``connect_timeout`` belongs to Socket.IO: the time a connection has to join a
    namespace before it is closed. ``max_queued`` is the server's own: the bytes
    that may wait for a client that does not read before it is dropped. The
    others are Engine.IO's and are sent to the client in the ``open`` packet.
    """

    ping_interval: int = 25000
    ping_timeout: int = 20000
    max_payload: int = 1_000_000
    connect_timeout: int = 45000
    max_queued: int = 1 << 20

    def __post_init__(self) -> None:
        for name in (
            "ping_interval",
            "ping_timeout",
            "max_payload",
            "connect_timeout",
            "max_queued",
        ):
            value = getattr(self, name)
            if type(value) is not int or value <= 0:
                raise ValueError(f"{name} must be a positive integer, not {value!r}")


def open_packet(sid: str, config: Config, upgrades: tuple[str, ...] = ()) -> bytes:
    """The ``open`` packet that starts every session, keys in the spec's order."""
    return b"0" + orjson.dumps(
        {
            "sid": sid,
            "upgrades": list(upgrades),
            "pingInterval": config.ping_interval,
            "pingTimeout": config.ping_timeout,
            "maxPayload": config.max_payload,
        }
    )


@dataclass(frozen=True, slots=True)
class Handshake:
    """What an accepted Engine.IO request asks for."""

    transport: str
    sid: str | None


def parse_handshake(
    method: bytes | str, query: str, transports: tuple[str, ...] = ("websocket",)
) -> Handshake:
    """Check an Engine.IO request's method and query string.

    Raises ``HandshakeError`` with Engine.IO's code, in the order the reference
    server checks them: transport, protocol version, then method for a new
    session. Whether a given ``sid`` exists is for the caller to check.
    """
    params = _parse_query(query)
    transport = params.get("transport")
    if transport not in transports:
        raise HandshakeError(HandshakeError.UNKNOWN_TRANSPORT)
    if params.get("EIO") != "4":
        raise HandshakeError(HandshakeError.UNSUPPORTED_PROTOCOL_VERSION)
    sid = params.get("sid") or None
    if sid is None and method not in (b"GET", "GET"):
        raise HandshakeError(HandshakeError.BAD_HANDSHAKE_METHOD)
    return Handshake(transport, sid)


def _parse_query(query: str) -> dict[str, str]:
    # A hand-rolled split: the handshake path is hot when a swarm connects.
    params: dict[str, str] = {}
    for part in query.split("&"):
        key, _, value = part.partition("=")
        if "%" in value or "+" in value:
            value = unquote(value.replace("+", " "))
        params.setdefault(key, value)
    return params
