"""The pokeBack fast path, both twins: what they take, what they leave, what they count."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import orjson
import picows.picows
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from msstorm._fastpath import connection, connection_c, pokeback, pokeback_c, rtt, rtt_c, session_c
from msstorm.protocol import session
from msstorm.protocol.engineio import Config

TWINS = [
    (pokeback, connection, rtt),
    (pokeback_c, connection_c, rtt_c),
]
# A frame reaches the tap as bytes (long-polling, fragments) or as picows's frame,
# read off its buffer uncopied (a whole WebSocket text frame).
VIAS = ["bytes", "frame"]


def joined(connection_module: Any, namespaces: dict[str, str]) -> Any:
    """A session of the connection's own twin that has joined ``namespaces``."""
    twin = session_c if connection_module is connection_c else session
    joined = twin.SocketSession("eio-sid", Config(), 0.0)
    joined.namespaces = namespaces
    return joined


class Harness:
    """A tap over one running operation of 4 pokes sent to sid-0..sid-3."""

    def __init__(
        self, twins: tuple[Any, Any, Any], grows: bool = False, via: str = "bytes"
    ) -> None:
        tap_module, connection_module, rtt_module = twins
        self.via = via
        self.after: list[tuple[Any, int, int]] = []
        table = rtt_module.PokeTable(4)
        for i in range(4):
            table.mark_sent(i, 0.0)
        self.op = SimpleNamespace(
            targets=[f"sid-{i}" for i in range(4)], table=table, expected=4, grows=grows
        )
        self.running = {"op1": self.op}
        self.tap = tap_module.PokeBackTap(self.running, lambda *a: self.after.append(a))
        self.conn = connection_module.Connection(
            SimpleNamespace(traffic=connection_module.Traffic())
        )
        self.connection_module = connection_module
        self.conn.session = joined(connection_module, {"/": "sid-1"})

    def feed(self, frame: bytes) -> bool:
        if self.via == "frame":
            ws_frame = picows.picows._make_test_ws_frame(picows.WSMsgType.TEXT, frame, True, False)
            return bool(self.tap.take(self.conn, ws_frame))
        return bool(self.tap.feed(self.conn, frame))

    def state(self) -> tuple[int, int, int, int]:
        tap = self.tap
        return tap.answers, tap.unknown, tap.foreign, self.op.table.received


def frame(answer: dict[str, Any]) -> bytes:
    return b"42" + orjson.dumps(["pokeBack", answer])


@pytest.fixture(
    params=[(twins, via) for twins in TWINS for via in VIAS],
    ids=[f"{twin}-{via}" for twin in ("python", "cython") for via in VIAS],
)
def harness(request: pytest.FixtureRequest) -> Harness:
    twins, via = request.param
    return Harness(twins, via=via)


def test_a_good_answer_is_recorded(harness: Harness) -> None:
    assert harness.feed(frame({"id": "op1.00000001", "delay": 0.5, "serverTs": 1.0}))
    assert harness.state() == (1, 0, 0, 1)
    assert harness.op.table.answered_delay(0) == 0.5


def test_unknown_and_foreign_answers_are_taken_and_counted(harness: Harness) -> None:
    assert harness.feed(frame({"id": "op1.00000002", "delay": 1, "serverTs": 1}))  # sid-2's
    assert harness.feed(frame({"id": "op9.00000001", "delay": 1, "serverTs": 1}))
    assert harness.feed(frame({"id": "op1.0000001", "delay": 1, "serverTs": 1}))  # 7 digits
    assert harness.feed(frame({"id": "op1.0000000g", "delay": 1, "serverTs": 1}))
    assert harness.state() == (0, 3, 1, 0)


def test_whitespace_order_and_tree_fields(harness: Harness) -> None:
    text = b'42["pokeBack", { "treeId" : "op1", "serverTs" : 1e3 , "treeLeaves": 4,'
    text += b' "delay": -2.5E-1, "id": "op1.00000001" } ]'
    assert harness.feed(text)
    assert harness.state() == (1, 0, 0, 1)
    assert harness.op.table.answered_delay(0) == -0.25


def test_tree_answers_call_the_application_with_tree_leaves() -> None:
    for twins in TWINS:
        h = Harness(twins, grows=True)
        h.feed(frame({"id": "op1.00000001", "delay": 1, "serverTs": 1, "treeLeaves": 8}))
        h.feed(frame({"id": "op1.00000001", "delay": 1, "serverTs": 1}))  # again: unknown
        assert [(i, leaves) for _, i, leaves in h.after] == [(1, 8)]


def test_the_last_answer_completes_the_operation() -> None:
    for twins in TWINS:
        h = Harness(twins)
        h.op.table.mark_unsent(0)
        h.op.table.mark_unsent(2)
        h.op.table.mark_unsent(3)
        h.feed(frame({"id": "op1.00000001", "delay": 1, "serverTs": 1}))
        assert [i for _, i, _ in h.after] == [1]


LEFT_TO_THE_GENERIC_PATH = [
    b'42["poke",{"id":"op1.00000001","delay":1,"serverTs":1}]',
    b'42/x,["pokeBack",{"id":"op1.00000001","delay":1,"serverTs":1}]',
    b'42["pokeBack",{"id":"op1.00000001","delay":1}]',  # serverTs missing
    b'42["pokeBack",{"id":"op1.00000001","serverTs":1}]',  # delay missing
    b'42["pokeBack",{"id":1,"delay":1,"serverTs":1}]',
    b'42["pokeBack",{"id":"op1.00000001","delay":"1","serverTs":1}]',
    b'42["pokeBack",{"id":"op1.00000001","delay":1,"serverTs":1,"extra":0}]',
    b'42["pokeBack",{"id":"op1.00000001","delay":1,"serverTs":1},2]',
    b'42["pokeBack",{"id":"op1.00000001","delay":01,"serverTs":1}]',
    b'42["pokeBack",{"id":"op1.00000001","delay":1e400,"serverTs":1}]',
    b'42["pokeBack",{"id":"op1.00000001","delay":1,"serverTs":1,"treeLeaves":2.0}]',
    b'42["pokeBack",{"id":"op1\\u002e00000001","delay":1,"serverTs":1}]',
    b'42["pokeBack",{"id":"op1.00000001","delay":1,"serverTs":1}',
    b'42["pokeBack",{"id":"op1.00000001","delay":1,"serverTs":1}] x',
    b'42["pokeBack",{"id":"op1.00000001","delay":NaN,"serverTs":1}]',
    b'42["pokeBack",[]]',
    b'42["pokeBack",{}]',
    b'42["pokeBack",',
]


@pytest.mark.parametrize("text", LEFT_TO_THE_GENERIC_PATH)
def test_anything_unusual_is_left_to_the_generic_path(harness: Harness, text: bytes) -> None:
    assert not harness.feed(text)
    assert harness.state() == (0, 0, 0, 0)


def test_a_client_not_joined_is_left_alone(harness: Harness) -> None:
    harness.conn.session = joined(harness.connection_module, {})
    assert not harness.feed(frame({"id": "op1.00000001", "delay": 1, "serverTs": 1}))


pieces = st.sampled_from(
    [
        b'42["pokeBack",',
        b"{",
        b"}",
        b"]",
        b",",
        b":",
        b" ",
        b'"id"',
        b'"delay"',
        b'"serverTs"',
        b'"treeLeaves"',
        b'"treeId"',
        b'"op1.00000001"',
        b'"op1.00000003"',
        b'"x.00000001"',
        b"0",
        b"-1.5",
        b"1e3",
        b"12345678901234567",
        b"2.0",
        b"true",
        b"null",
        b'"\\n"',
        b'"\xff"',
    ]
)


@settings(max_examples=400, deadline=None)
@given(st.lists(pieces, max_size=16).map(b"".join))
def test_twins_agree_on_any_frame(text: bytes) -> None:
    harnesses = [Harness(twins, via=via) for twins in TWINS for via in VIAS]
    assert len({(h.feed(text), h.state()) for h in harnesses}) == 1


@settings(max_examples=200, deadline=None)
@given(
    index=st.integers(min_value=0, max_value=5),
    delay=st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(2**40), 2**40),
    leaves=st.none() | st.integers(-3, 2**20),
    sid=st.sampled_from(["sid-1", "sid-2"]),
)
def test_twins_agree_on_well_formed_answers(
    index: int, delay: float, leaves: int | None, sid: str
) -> None:
    answer: dict[str, Any] = {"id": f"op1.{index:08x}", "delay": delay, "serverTs": 1.5}
    if leaves is not None:
        answer["treeLeaves"] = leaves
    results = []
    for twins in TWINS:
        for via in VIAS:
            h = Harness(twins, grows=True, via=via)
            h.conn.session = joined(h.connection_module, {"/": sid})
            results.append((h.feed(frame(answer)), h.state(), [(i, t) for _, i, t in h.after]))
    assert all(result == results[0] for result in results)
    assert results[0][0]  # a well-formed answer is always taken
