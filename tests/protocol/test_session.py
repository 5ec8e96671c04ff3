"""The per-connection state machine, driven by hand: frames and times in, events out."""

from __future__ import annotations

import pytest

from msstorm.protocol.engineio import Config
from msstorm.protocol.errors import PacketError, PayloadTooLarge, UnexpectedPacket
from msstorm.protocol.packets import ACK, BINARY_EVENT, CONNECT, DISCONNECT, EVENT
from msstorm.protocol.session import (
    IGNORED,
    PEER_CLOSED,
    TIMER_CONNECT_TIMEOUT,
    TIMER_IDLE,
    TIMER_PING,
    TIMER_PING_TIMEOUT,
    EngineSession,
    SocketSession,
)

CONFIG = Config(ping_interval=1000, ping_timeout=500, max_payload=100, connect_timeout=3000)
T0 = 100.0


@pytest.fixture
def session(session_class: type[SocketSession]) -> SocketSession:
    return session_class("engine-sid", CONFIG, T0)


def joined(session: SocketSession, namespace: str = "/") -> SocketSession:
    session.join(namespace, "socket-sid")
    return session


# -- heartbeat ----------------------------------------------------------------


def test_first_deadline_is_the_first_ping(session: SocketSession) -> None:
    assert session.deadline == T0 + 1.0


def test_ping_then_pong_keeps_the_connection(session: SocketSession) -> None:
    joined(session)
    assert session.on_timer(T0 + 1.0) == TIMER_PING
    assert session.deadline == T0 + 1.5  # the pong is due by then
    assert session.receive_text(b"3") is None
    assert session.on_timer(T0 + 1.5) == TIMER_IDLE  # pong came: nothing to do
    assert session.deadline == T0 + 2.0
    assert session.on_timer(T0 + 2.0) == TIMER_PING


def test_missing_pong_closes(session: SocketSession) -> None:
    joined(session)
    assert session.on_timer(T0 + 1.0) == TIMER_PING
    assert session.on_timer(T0 + 1.5) == TIMER_PING_TIMEOUT


def test_no_second_ping_while_one_is_unanswered() -> None:
    # pingTimeout longer than pingInterval: the silent peer must still time out.
    session = SocketSession("s", Config(ping_interval=1000, ping_timeout=2500), T0)
    session.join("/", "x")
    assert session.on_timer(T0 + 1.0) == TIMER_PING
    assert session.on_timer(T0 + 2.0) == TIMER_IDLE
    assert session.on_timer(T0 + 3.0) == TIMER_IDLE
    assert session.on_timer(T0 + 3.5) == TIMER_PING_TIMEOUT


def test_late_timer_does_not_skip_the_timeout(session: SocketSession) -> None:
    joined(session)
    session.on_timer(T0 + 1.0)
    assert session.on_timer(T0 + 9.0) == TIMER_PING_TIMEOUT


def test_connect_timeout_without_a_namespace(session: SocketSession) -> None:
    assert session.on_timer(T0 + 1.0) == TIMER_PING
    session.receive_text(b"3")
    session.on_timer(T0 + 1.5)
    assert session.on_timer(T0 + 2.0) == TIMER_PING
    session.receive_text(b"3")
    assert session.deadline <= T0 + 3.0
    assert session.on_timer(T0 + 3.0) == TIMER_CONNECT_TIMEOUT


def test_joining_a_namespace_disarms_the_connect_timeout(session: SocketSession) -> None:
    joined(session)
    for second in range(1, 10):
        assert session.on_timer(T0 + second) == TIMER_PING
        session.receive_text(b"3")
        assert session.on_timer(T0 + second + 0.5) == TIMER_IDLE


def test_engine_session_has_no_connect_timeout() -> None:
    session = EngineSession("s", CONFIG, T0)
    for second in range(1, 6):
        assert session.on_timer(T0 + second) == TIMER_PING
        session.receive_text(b"3")


# -- Engine.IO frames ---------------------------------------------------------


@pytest.mark.parametrize("frame", [b"6", b"5", b"0"])
def test_noop_upgrade_and_open_are_ignored(session: SocketSession, frame: bytes) -> None:
    assert session.receive_text(frame) is IGNORED


def test_close_packet_ends_the_session(session: SocketSession) -> None:
    assert session.receive_text(b"1") is PEER_CLOSED


@pytest.mark.parametrize(
    ("frame", "error"),
    [
        (b"", PacketError),
        (b"7", PacketError),
        (b"x", PacketError),
        (b"2", UnexpectedPacket),
        (b"2probe", UnexpectedPacket),
        (b"4" + b"x" * 100, PayloadTooLarge),
    ],
)
def test_bad_engine_frames(session: SocketSession, frame: bytes, error: type) -> None:
    with pytest.raises(error):
        session.receive_text(frame)


def test_engine_session_returns_messages() -> None:
    session = EngineSession("s", CONFIG, T0)
    assert session.receive_text("4héllo".encode()) == "héllo"
    assert session.receive_binary(b"\x00\x01") == b"\x00\x01"
    with pytest.raises(PacketError, match="UTF-8"):
        session.receive_text(b"4\xff")
    with pytest.raises(PayloadTooLarge):
        session.receive_binary(b"x" * 101)


# -- Socket.IO packets --------------------------------------------------------


def test_connect_is_handed_to_the_app(session: SocketSession) -> None:
    packet = session.receive_text(b'40/chat,{"token":"t"}')
    assert (packet.type, packet.namespace, packet.data) == (CONNECT, "/chat", {"token": "t"})
    assert session.namespaces == {}  # joined only when the app accepts


def test_second_connect_to_a_joined_namespace_is_refused(session: SocketSession) -> None:
    joined(session)
    with pytest.raises(UnexpectedPacket, match="second CONNECT"):
        session.receive_text(b"40")


def test_events_count_only_on_joined_namespaces(session: SocketSession) -> None:
    assert session.receive_text(b'42["x"]') is IGNORED
    joined(session)
    packet = session.receive_text(b'425["x",1]')
    assert (packet.type, packet.data, packet.id) == (EVENT, ["x", 1], 5)
    assert session.receive_text(b'42/other,["x"]') is IGNORED


def test_disconnect_then_leave(session: SocketSession) -> None:
    assert session.receive_text(b"41") is IGNORED
    joined(session)
    assert session.receive_text(b"41").type == DISCONNECT
    assert session.leave("/") == "socket-sid"
    assert session.leave("/") is None


def test_connect_error_from_a_client_is_refused(session: SocketSession) -> None:
    with pytest.raises(UnexpectedPacket):
        session.receive_text(b'44{"message":"no"}')


def test_binary_event_waits_for_its_attachments(session: SocketSession) -> None:
    joined(session)
    frame = b'452-["up",{"_placeholder":true,"num":1},{"_placeholder":true,"num":0}]'
    assert session.receive_text(frame) is None
    assert session.receive_text(b"3") is None  # Engine.IO packets may pass in between
    assert session.receive_binary(b"A") is None
    packet = session.receive_binary(b"B")
    assert (packet.type, packet.data, packet.attachments) == (BINARY_EVENT, ["up", b"B", b"A"], 0)


def test_binary_event_without_attachments_is_complete_at_once(session: SocketSession) -> None:
    joined(session)
    assert session.receive_text(b'450-["x"]').data == ["x"]


def test_binary_event_on_unknown_namespace_still_consumes_attachments(
    session: SocketSession,
) -> None:
    joined(session)
    assert session.receive_text(b'451-/nope,["x",{"_placeholder":true,"num":0}]') is None
    assert session.receive_binary(b"A") is IGNORED
    assert session.receive_text(b'42["y"]').data == ["y"]


def test_packet_between_attachments_is_refused(session: SocketSession) -> None:
    joined(session)
    session.receive_text(b'451-["x",{"_placeholder":true,"num":0}]')
    with pytest.raises(UnexpectedPacket, match="attachments were due"):
        session.receive_text(b'42["y"]')


def test_binary_frame_with_nothing_due_is_refused(session: SocketSession) -> None:
    joined(session)
    with pytest.raises(UnexpectedPacket, match="no attachment due"):
        session.receive_binary(b"A")


def test_attachments_over_max_payload_are_refused(session: SocketSession) -> None:
    joined(session)
    session.receive_text(b'452-["x",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]')
    session.receive_binary(b"a" * 20)
    with pytest.raises(PayloadTooLarge):
        session.receive_binary(b"b" * 20)


def test_placeholder_pointing_nowhere_is_refused(session: SocketSession) -> None:
    joined(session)
    session.receive_text(b'451-["x",{"_placeholder":true,"num":3}]')
    with pytest.raises(PacketError, match="placeholder"):
        session.receive_binary(b"A")


# -- acks the server waits for ------------------------------------------------


def test_ack_ids_are_fresh_and_taken_once(session: SocketSession) -> None:
    joined(session)
    first, second = session.expect_ack("cb1"), session.expect_ack("cb2")
    assert first != second
    packet = session.receive_text(b"43%d[1]" % second)
    assert (packet.type, packet.id, packet.data) == (ACK, second, [1])
    assert session.take_ack(second) == "cb2"
    assert session.take_ack(second) is None
    assert session.take_ack(first) == "cb1"
    assert session.ack_callbacks is None  # the table goes once empty
