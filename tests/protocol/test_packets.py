"""The Socket.IO codec on the examples and rules of the published protocol, both twins."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest

from msstorm.protocol.errors import PacketError
from msstorm.protocol.packets import (
    ACK,
    BINARY_ACK,
    BINARY_EVENT,
    CONNECT,
    CONNECT_ERROR,
    DISCONNECT,
    EVENT,
)

PH0 = {"_placeholder": True, "num": 0}
PH1 = {"_placeholder": True, "num": 1}

# (wire text without the Engine.IO "4", type, namespace, data, id, attachments)
SPEC_EXAMPLES: list[tuple[str, int, str, Any, int | None, int]] = [
    ("0", CONNECT, "/", None, None, 0),
    (
        '0/admin,{"sid":"oSO0OpakMV_3jnilAAAA"}',
        CONNECT,
        "/admin",
        {"sid": "oSO0OpakMV_3jnilAAAA"},
        None,
        0,
    ),
    ('0{"token":"123"}', CONNECT, "/", {"token": "123"}, None, 0),
    ('4{"message":"Not authorized"}', CONNECT_ERROR, "/", {"message": "Not authorized"}, None, 0),
    ('2["foo"]', EVENT, "/", ["foo"], None, 0),
    ('2/admin,["bar"]', EVENT, "/admin", ["bar"], None, 0),
    ('51-["baz",{"_placeholder":true,"num":0}]', BINARY_EVENT, "/", ["baz", PH0], None, 1),
    (
        '52-/admin,["baz",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]',
        BINARY_EVENT,
        "/admin",
        ["baz", PH0, PH1],
        None,
        2,
    ),
    ('212["foo"]', EVENT, "/", ["foo"], 12, 0),
    ('3/admin,13["bar"]', ACK, "/admin", ["bar"], 13, 0),
    ('61-15["bar",{"_placeholder":true,"num":0}]', BINARY_ACK, "/", ["bar", PH0], 15, 1),
    ("1", DISCONNECT, "/", None, None, 0),
    ("1/admin,", DISCONNECT, "/admin", None, None, 0),
    ('3456[1,"2",{"3":[false]}]', ACK, "/", [1, "2", {"3": [False]}], 456, 0),
    ("3/x,7[]", ACK, "/x", [], 7, 0),
    ('2/ünï,["é",{"k":"∑"}]', EVENT, "/ünï", ["é", {"k": "∑"}], None, 0),
]


@pytest.mark.parametrize(
    ("text", "kind", "namespace", "data", "ack_id", "attachments"), SPEC_EXAMPLES
)
def test_decode_spec_examples(
    codec: ModuleType,
    text: str,
    kind: int,
    namespace: str,
    data: Any,
    ack_id: int | None,
    attachments: int,
) -> None:
    packet = codec.decode(text.encode())
    assert (packet.type, packet.namespace, packet.data, packet.id, packet.attachments) == (
        kind,
        namespace,
        data,
        ack_id,
        attachments,
    )


@pytest.mark.parametrize(
    ("text", "kind", "namespace", "data", "ack_id", "attachments"), SPEC_EXAMPLES
)
def test_encode_spec_examples(
    codec: ModuleType,
    text: str,
    kind: int,
    namespace: str,
    data: Any,
    ack_id: int | None,
    attachments: int,
) -> None:
    blobs = [b"\x01\x02", b"\x03"][:attachments]
    if attachments:  # the placeholders stand for real bytes
        data = codec.reconstruct(data, blobs)
    encoded = codec.encode(kind, namespace, data, ack_id)
    expected = b"4" + text.encode()
    assert encoded == ([expected, *blobs] if attachments else expected)


def test_decode_from_an_offset(codec: ModuleType) -> None:
    packet = codec.decode(b'42/chat,7["hi"]', 1)
    assert (packet.type, packet.namespace, packet.id, packet.data) == (EVENT, "/chat", 7, ["hi"])


def test_namespace_without_a_comma_ends_the_packet(codec: ModuleType) -> None:
    assert codec.decode(b"0/random").namespace == "/random"


def test_encode_turns_bytes_into_attachments(codec: ModuleType) -> None:
    frames = codec.encode(EVENT, "/", ["up", b"\x01\x02", {"x": [bytearray(b"\x03")]}])
    assert frames == [
        b'452-["up",{"_placeholder":true,"num":0},{"x":[{"_placeholder":true,"num":1}]}]',
        b"\x01\x02",
        b"\x03",
    ]
    ack = codec.encode(ACK, "/a", [b"z"], 9)
    assert ack == [b'461-/a,9[{"_placeholder":true,"num":0}]', b"z"]


def test_encode_tuples_as_arrays_and_empty_binary_packets(codec: ModuleType) -> None:
    assert codec.encode(EVENT, "/", ("a", (1, 2))) == b'42["a",[1,2]]'
    assert codec.encode(BINARY_EVENT, "/", ["a"]) == [b'450-["a"]']


def test_encode_refuses_an_unknown_type(codec: ModuleType) -> None:
    with pytest.raises(ValueError, match=r"unknown Socket\.IO packet type"):
        codec.encode(9, "/", None)


def test_reconstruct_puts_attachments_back(codec: ModuleType) -> None:
    data = ["x", PH1, {"deep": [PH0]}, {"_placeholder": False, "num": 0}]
    assert codec.reconstruct(data, [b"a", b"b"]) == [
        "x",
        b"b",
        {"deep": [b"a"]},
        {"_placeholder": False, "num": 0},
    ]


@pytest.mark.parametrize("bad_num", [2, -1, "0", None, 1.0])
def test_reconstruct_refuses_a_placeholder_without_attachment(
    codec: ModuleType, bad_num: Any
) -> None:
    with pytest.raises(PacketError, match="placeholder"):
        codec.reconstruct([{"_placeholder": True, "num": bad_num}], [b"a", b"b"])


def test_has_binary(codec: ModuleType) -> None:
    assert codec.has_binary([1, {"a": (2, memoryview(b"x"))}])
    assert not codec.has_binary([1, {"a": (2, "x")}, None, 3.5])


# Every malformed packet is refused with PacketError, and a message that says why.
MALFORMED = [
    (b"", "empty"),
    (b"7", "unknown Socket.IO packet type"),
    (b"a", "unknown Socket.IO packet type"),
    (b"bc", "unknown Socket.IO packet type"),
    (b"2{}", "non-empty array"),
    (b"2[]", "non-empty array"),
    (b'2"x"', "non-empty array"),
    (b"2[1]", "event name must be a string"),
    (b'2["connect"]', "reserved"),
    (b'2["disconnect",1]', "reserved"),
    (b"3[1]", "ack without an id"),
    (b'3{"a":1}', "ack payload must be an array"),
    (b'5["x"]', "attachment count"),
    (b'5-["x"]', "attachment count"),
    (b'5x-["x"]', "attachment count"),
    (b"51", "attachment count"),
    (b'512345-["x"]', "more than 1000 attachments"),
    (b'51001-["x"]', "more than 1000 attachments"),
    (b"0[]", "CONNECT payload must be an object"),
    (b'0"token"', "CONNECT payload must be an object"),
    (b"1{}", "DISCONNECT carries no payload"),
    (b"44", "CONNECT_ERROR payload"),
    (b'2abc["message-with-ack",1]', "not valid JSON"),
    (b'2["x",', "not valid JSON"),
    (b'2["x",NaN]', "not valid JSON"),
    (b"2[" * 2000 + b"]" * 2000, "not valid JSON"),
    (b'2["x",1e99999]', "not valid JSON"),
    (b'212345678901234567["x"]', "ack id out of range"),
    (b'29007199254740992["x"]', "ack id out of range"),
    (b'2/\xff\xfe,["x"]', "namespace is not valid UTF-8"),
    (b'2["\xff"]', "not valid JSON"),
]


@pytest.mark.parametrize(("wire", "why"), MALFORMED)
def test_malformed_packets_are_refused(codec: ModuleType, wire: bytes, why: str) -> None:
    with pytest.raises(PacketError, match=why):
        codec.decode(wire)


def test_largest_ack_id_is_accepted(codec: ModuleType) -> None:
    assert codec.decode(b'29007199254740991["x"]').id == 2**53 - 1
