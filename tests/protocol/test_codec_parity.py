"""Property tests: the compiled codec, its plain twin and python-socketio agree.

python-socketio's ``socketio.packet.Packet`` is the oracle for what a packet
means; the two msstorm codecs must produce the very same bytes and errors.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from socketio.packet import Packet as OraclePacket

from msstorm._fastpath import codec_c
from msstorm.protocol import packets as codec_py
from msstorm.protocol.errors import PacketError
from msstorm.protocol.packets import (
    ACK,
    CONNECT,
    CONNECT_ERROR,
    DISCONNECT,
    EVENT,
    RESERVED_EVENTS,
)

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

keys = st.text(max_size=8).filter(lambda k: not k.startswith("_placeholder"))
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=12,
)
values_with_bytes = st.recursive(
    scalars | st.binary(max_size=16),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=12,
)
namespaces = st.just("/") | st.text(
    st.characters(blacklist_characters=",?", blacklist_categories=["Cs"]), min_size=1, max_size=10
).map(lambda s: "/" + s)
ack_ids = st.none() | st.integers(min_value=0, max_value=2**53 - 1)
event_names = st.text(max_size=12).filter(lambda s: s not in RESERVED_EVENTS)


@st.composite
def packets(draw: st.DrawFn, leaf_values: st.SearchStrategy[Any] = json_values) -> tuple[Any, ...]:
    """A valid (type, namespace, data, id) as an application would send it."""
    kind = draw(st.sampled_from([CONNECT, DISCONNECT, EVENT, ACK, CONNECT_ERROR]))
    namespace = draw(namespaces)
    if kind == EVENT:
        data = [draw(event_names), *draw(st.lists(leaf_values, max_size=4))]
        return kind, namespace, data, draw(ack_ids)
    if kind == ACK:
        ack_id = draw(st.integers(min_value=0, max_value=2**53 - 1))
        return kind, namespace, draw(st.lists(leaf_values, max_size=4)), ack_id
    if kind == CONNECT:
        return (
            kind,
            namespace,
            draw(st.none() | st.dictionaries(keys, json_values, max_size=4)),
            None,
        )
    if kind == CONNECT_ERROR:
        return (
            kind,
            namespace,
            draw(st.dictionaries(keys, json_values, max_size=3) | st.text()),
            None,
        )
    return kind, namespace, None, None


def _plain(value: Any) -> Any:
    """What a value looks like after a trip through JSON and attachments."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    return value


@SETTINGS
@given(packets(values_with_bytes))
def test_both_codecs_encode_the_same_bytes(packet: tuple[Any, ...]) -> None:
    assert codec_c.encode(*packet) == codec_py.encode(*packet)


@SETTINGS
@given(packets(values_with_bytes))
def test_decode_undoes_encode(packet: tuple[Any, ...]) -> None:
    kind, namespace, data, ack_id = packet
    encoded = codec_c.encode(kind, namespace, data, ack_id)
    frame, attachments = (encoded[0], encoded[1:]) if isinstance(encoded, list) else (encoded, [])
    for codec in (codec_c, codec_py):
        decoded = codec.decode(frame, 1)
        assert decoded.namespace == namespace
        assert decoded.id == ack_id
        assert decoded.attachments == len(attachments)
        assert _plain(codec.reconstruct(decoded.data, attachments)) == _plain(data)


@SETTINGS
@given(packets())
def test_python_socketio_reads_what_we_write(packet: tuple[Any, ...]) -> None:
    kind, namespace, data, ack_id = packet
    frame = codec_c.encode(kind, namespace, data, ack_id)
    oracle = OraclePacket(encoded_packet=frame[1:].decode())
    assert oracle.packet_type == kind
    assert (oracle.namespace or "/") == namespace
    assert oracle.id == ack_id
    assert oracle.data == data


@SETTINGS
@given(packets())
def test_we_read_what_python_socketio_writes(packet: tuple[Any, ...]) -> None:
    kind, namespace, data, ack_id = packet
    wire = OraclePacket(kind, data=data, namespace=namespace, id=ack_id).encode()
    for codec in (codec_c, codec_py):
        decoded = codec.decode(wire.encode())
        assert (decoded.type, decoded.namespace, decoded.id) == (kind, namespace, ack_id)
        assert decoded.data == data


@SETTINGS
@given(packets(values_with_bytes))
def test_binary_packets_match_python_socketio(packet: tuple[Any, ...]) -> None:
    kind, namespace, data, ack_id = packet
    if kind not in (EVENT, ACK) or not codec_py.has_binary(data):
        return
    ours = codec_c.encode(kind, namespace, data, ack_id)
    theirs = OraclePacket(kind, data=_plain(data), namespace=namespace, id=ack_id).encode()
    assert ours[1:] == theirs[1:]  # the attachments, in the same order
    # The header text up to the JSON, then the JSON by value (python escapes non-ASCII).
    head = f"{kind + 3}{len(ours) - 1}-"
    head += f"{namespace}," if namespace != "/" else ""
    head += str(ack_id) if ack_id is not None else ""
    assert theirs[0].startswith(head) and ours[0].startswith(b"4" + head.encode())
    assert orjson.loads(ours[0][1 + len(head.encode()) :]) == orjson.loads(theirs[0][len(head) :])


near_packets = st.lists(
    st.sampled_from(
        [
            "0",
            "1",
            "2",
            "3",
            "4",
            "5",
            "6",
            "9",
            "-",
            "/",
            ",",
            "x",
            "[",
            "]",
            "{",
            "}",
            '"',
            "12",
            '"a"',
            "null",
            "/nsp,",
            '{"_placeholder":true,"num":0}',
            "\xe9",
        ]
    ),
    max_size=12,
).map(lambda parts: "".join(parts).encode())


@SETTINGS
@given(near_packets | st.binary(max_size=40))
def test_both_codecs_accept_and_refuse_the_same_input(wire: bytes) -> None:
    """Fuzz: any input is either a packet or a PacketError, the same in both twins."""
    outcomes = []
    for codec in (codec_c, codec_py):
        try:
            p = codec.decode(wire)
            outcomes.append(("ok", p.type, p.namespace, p.data, p.id, p.attachments))
        except PacketError as exc:
            outcomes.append(("error", str(exc).split(":")[0]))
    assert outcomes[0] == outcomes[1]


@pytest.mark.parametrize("codec", [codec_c, codec_py], ids=["cython", "python"])
def test_decode_accepts_only_bytes_in_both(codec: Any) -> None:
    with pytest.raises(TypeError):
        codec.decode('42["x"]')
