"""Engine.IO v4 payloads: the packets of one HTTP long-polling request or response.

A payload is its packets joined by the record separator ``\\x1e``. A text
packet is written as it goes over WebSocket (``<type><text>``); a binary
message is ``b`` followed by its bytes in base64. Packets here are the bytes of
one WebSocket frame each: ``bytes`` for a text frame, ``bytearray`` for a binary
one (the same mark ``Connection.held`` uses), so that a session can move from
polling to WebSocket without anything being re-encoded.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable

from .errors import PacketError

__all__ = ["SEPARATOR", "decode_payload", "encode_payload"]

SEPARATOR = b"\x1e"
_BINARY = ord("b")


def decode_payload(body: bytes) -> list[tuple[bytes, bool]]:
    """The packets of a POST body, as ``(frame, binary)``; ``PacketError`` if malformed."""
    if not body:
        raise PacketError("empty payload")
    packets: list[tuple[bytes, bool]] = []
    for part in body.split(SEPARATOR):
        if not part:
            raise PacketError("empty packet in a payload")
        if part[0] == _BINARY:
            try:
                packets.append((base64.b64decode(part[1:], validate=True), True))
            except binascii.Error:
                raise PacketError("binary packet that is not base64") from None
        else:
            packets.append((part, False))
    return packets


def encode_payload(packets: Iterable[bytes | bytearray]) -> bytes:
    """One GET response's body: text packets as they are, binary ones in base64."""
    return SEPARATOR.join(
        b"b" + base64.b64encode(packet) if type(packet) is bytearray else packet
        for packet in packets
    )
