"""Socket.IO v5 packets: the plain-Python codec.

This is the reference twin of the Cython codec ``msstorm._fastpath.codec_c``: same
functions, same results, same errors; the tests run both and check that they agree
with each other and with python-socketio's ``Packet``. Which one the server uses
is decided in ``msstorm._fastpath`` alone.

A Socket.IO packet travels as the payload of an Engine.IO ``message``::

    <type>[<attachments>-][<namespace>,][<ack id>][<JSON payload>]

``decode`` takes that text (UTF-8 bytes, without the Engine.IO ``4``);
``encode`` returns what goes on a WebSocket: the text frame *with* the Engine.IO
``4`` in front, then, for a packet carrying bytes, one binary frame per attachment.
"""

from __future__ import annotations

from typing import Any

import orjson

from .errors import PacketError

__all__ = [
    "ACK",
    "BINARY_ACK",
    "BINARY_EVENT",
    "CONNECT",
    "CONNECT_ERROR",
    "DISCONNECT",
    "EVENT",
    "MAX_ACK_ID",
    "MAX_ATTACHMENTS",
    "RESERVED_EVENTS",
    "Packet",
    "decode",
    "encode",
    "has_binary",
    "reconstruct",
]

CONNECT, DISCONNECT, EVENT, ACK, CONNECT_ERROR, BINARY_EVENT, BINARY_ACK = range(7)

# Ack ids are JavaScript numbers on the other side: keep them exact there.
MAX_ACK_ID = 2**53 - 1
# A packet announcing more attachments than this is refused before any is read.
MAX_ATTACHMENTS = 1000
# Event names a client may not emit (socket.io-parser refuses them too).
RESERVED_EVENTS = frozenset(
    ("connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener")
)

_DIGIT_0 = 0x30
_DIGIT_9 = 0x39
_SLASH = 0x2F
_COMMA = 0x2C
_DASH = 0x2D
_JSON_OPTIONS = orjson.OPT_NON_STR_KEYS


class Packet:
    """One decoded Socket.IO packet.

    ``attachments`` is the number of binary frames that must follow before the
    packet is complete; ``data`` then still holds their placeholders.
    """

    __slots__ = ("attachments", "data", "id", "namespace", "type")

    def __init__(
        self,
        type: int,
        namespace: str = "/",
        data: Any = None,
        id: int | None = None,
        attachments: int = 0,
    ) -> None:
        self.type = type
        self.namespace = namespace
        self.data = data
        self.id = id
        self.attachments = attachments

    def __eq__(self, other: object) -> bool:
        if not hasattr(other, "attachments"):
            return NotImplemented
        o: Any = other
        return bool(
            self.type == o.type
            and self.namespace == o.namespace
            and self.data == o.data
            and self.id == o.id
            and self.attachments == o.attachments
        )

    def __repr__(self) -> str:
        return (
            f"Packet(type={self.type}, namespace={self.namespace!r}, data={self.data!r}, "
            f"id={self.id!r}, attachments={self.attachments})"
        )


def decode(message: bytes, start: int = 0) -> Packet:
    """Parse the Socket.IO packet that begins at ``message[start]``.

    ``start`` lets the caller skip the Engine.IO type without copying the frame.
    Raises ``PacketError`` saying what is wrong.
    """
    n = len(message)
    if start < 0 or n <= start:
        raise PacketError("empty Socket.IO packet")
    kind = message[start] - _DIGIT_0
    if not 0 <= kind <= BINARY_ACK:
        raise PacketError(f"unknown Socket.IO packet type {message[start : start + 1]!r}")
    i = start + 1

    attachments = 0
    if kind == BINARY_EVENT or kind == BINARY_ACK:
        j = i
        while j < n and _DIGIT_0 <= message[j] <= _DIGIT_9:
            j += 1
        if j - i > 4:
            raise PacketError(f"more than {MAX_ATTACHMENTS} attachments announced")
        if j == i or j >= n or message[j] != _DASH:
            raise PacketError("binary packet without its attachment count")
        attachments = int(message[i:j])
        if attachments > MAX_ATTACHMENTS:
            raise PacketError(f"more than {MAX_ATTACHMENTS} attachments announced")
        i = j + 1

    namespace = "/"
    if i < n and message[i] == _SLASH:
        j = message.find(b",", i)
        if j < 0:
            j = n
        try:
            namespace = message[i:j].decode()
        except UnicodeDecodeError:
            raise PacketError("namespace is not valid UTF-8") from None
        i = j + 1

    ack_id = None
    if i < n and _DIGIT_0 <= message[i] <= _DIGIT_9:
        j = i
        while j < n and _DIGIT_0 <= message[j] <= _DIGIT_9:
            j += 1
        if j - i > 16 or int(message[i:j]) > MAX_ACK_ID:
            raise PacketError("ack id out of range")
        ack_id = int(message[i:j])
        i = j

    data = None
    if i < n:
        try:
            data = orjson.loads(message[i:])
        except orjson.JSONDecodeError as exc:
            raise PacketError(f"payload is not valid JSON: {exc}") from None

    _check_payload(kind, data, ack_id)
    return Packet(kind, namespace, data, ack_id, attachments)


def _check_payload(kind: int, data: Any, ack_id: int | None) -> None:
    """Apply the Socket.IO v5 rules on what each packet type may carry."""
    if kind == EVENT or kind == BINARY_EVENT:
        if type(data) is not list or not data:
            raise PacketError("event payload must be a non-empty array")
        name = data[0]
        if type(name) is not str:
            raise PacketError("event name must be a string")
        if name in RESERVED_EVENTS:
            raise PacketError(f"event name {name!r} is reserved")
    elif kind == ACK or kind == BINARY_ACK:
        if type(data) is not list:
            raise PacketError("ack payload must be an array")
        if ack_id is None:
            raise PacketError("ack without an id")
    elif kind == CONNECT:
        if data is not None and type(data) is not dict:
            raise PacketError("CONNECT payload must be an object")
    elif kind == DISCONNECT:
        if data is not None:
            raise PacketError("DISCONNECT carries no payload")
    elif type(data) is not dict and type(data) is not str:  # CONNECT_ERROR
        raise PacketError("CONNECT_ERROR payload must be an object or a string")


def encode(
    type: int, namespace: str = "/", data: Any = None, id: int | None = None
) -> bytes | list[bytes]:
    """Encode a packet for a WebSocket.

    Returns the text frame (Engine.IO ``4`` included) as bytes, or, when ``data``
    holds bytes, a list: the text frame with placeholders, then each attachment.
    An EVENT or ACK whose data holds bytes becomes BINARY_EVENT or BINARY_ACK.
    """
    if not CONNECT <= type <= BINARY_ACK:
        raise ValueError(f"unknown Socket.IO packet type {type}")
    binary = type == BINARY_EVENT or type == BINARY_ACK
    if (type == EVENT or type == ACK) and has_binary(data):
        type += 3
        binary = True
    attachments: list[bytes] = []
    if binary:
        data = _deconstruct(data, attachments)
        head = f"4{type}{len(attachments)}-"
    else:
        head = f"4{type}"
    if namespace != "/":
        head += namespace + ","
    if id is not None:
        head += str(id)
    frame = head.encode()
    if data is not None:
        frame += orjson.dumps(data, option=_JSON_OPTIONS)
    if binary:
        return [frame, *attachments]
    return frame


def has_binary(data: Any) -> bool:
    """True when ``data`` holds bytes anywhere (in lists, tuples or dict values)."""
    t = type(data)
    if t is bytes or t is bytearray or t is memoryview:
        return True
    if t is list or t is tuple:
        return any(has_binary(item) for item in data)
    if t is dict:
        return any(has_binary(item) for item in data.values())
    return False


def _deconstruct(data: Any, attachments: list[bytes]) -> Any:
    t = type(data)
    if t is bytes or t is bytearray or t is memoryview:
        attachments.append(bytes(data))
        return {"_placeholder": True, "num": len(attachments) - 1}
    if t is list or t is tuple:
        return [_deconstruct(item, attachments) for item in data]
    if t is dict:
        return {key: _deconstruct(value, attachments) for key, value in data.items()}
    return data


def reconstruct(data: Any, attachments: list[bytes]) -> Any:
    """Put the binary attachments back where their placeholders stand."""
    t = type(data)
    if t is list:
        return [reconstruct(item, attachments) for item in data]
    if t is dict:
        if data.get("_placeholder") is True:
            num = data.get("num")
            if type(num) is not int or not 0 <= num < len(attachments):
                raise PacketError(f"placeholder for a missing attachment: {num!r}")
            return attachments[num]
        return {key: reconstruct(value, attachments) for key, value in data.items()}
    return data
