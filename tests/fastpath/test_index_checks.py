"""Bad indices at the compiled modules' public entry points: the same answer as the
plain twin's (the same exception type, or the same result), never a read or a
write past the end of an array. The loops inside run unchecked, so each entry
point checks what it is given."""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from msstorm._fastpath import (
    codec_c,
    connection,
    connection_c,
    histogram,
    histogram_c,
    pokeback,
    pokeback_c,
    pokes,
    pokes_c,
    rtt,
    rtt_c,
    swarm_client,
    swarm_client_c,
    timers,
    timers_c,
)
from msstorm.protocol import packets
from msstorm.protocol.errors import PacketError

# (plain, compiled) for each module pair.
RTT = (rtt, rtt_c)
POKES = ((pokes, connection, rtt), (pokes_c, connection_c, rtt_c))
indices = st.integers(min_value=-(2**40), max_value=2**40)
small = st.integers(min_value=-40, max_value=40)


def outcome(call: Any, *args: Any) -> Any:
    """What ``call(*args)`` gave: its result, or the type of what it raised."""
    try:
        return call(*args)
    except Exception as exc:
        return type(exc)


def table_with_answers(module: Any, capacity: int, answered: int) -> Any:
    table = module.PokeTable(capacity)
    for i in range(answered):
        table.mark_sent(i, 1.0)
        table.answer(i, 1.0 + i / 1000, float(i))
    return table


# -- PokeTable ------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(index=indices, capacity=st.integers(min_value=0, max_value=16))
def test_a_slot_out_of_the_table_is_an_index_error_in_both(index: int, capacity: int) -> None:
    for name in ("mark_sent", "mark_unsent", "answered_index", "answered_rtt", "answered_delay"):
        args = (index, 1.0) if name == "mark_sent" else (index,)
        got = [outcome(getattr(m.PokeTable(capacity), name), *args) for m in RTT]
        assert got[0] == got[1], name
        in_range = 0 <= index < (capacity if name.startswith("mark") else 0)
        assert in_range or got[0] is IndexError, name
    plain, compiled = (m.PokeTable(capacity) for m in RTT)
    assert plain.answer(index, 1.0, 0.0) == compiled.answer(index, 1.0, 0.0) == -1.0
    assert plain.is_pending(index) == compiled.is_pending(index) is False


@settings(max_examples=300, deadline=None)
@given(start=small, stop=small, answered=st.integers(min_value=0, max_value=8))
def test_answers_json_slices_alike_and_refuses_a_negative_start(
    start: int, stop: int, answered: int
) -> None:
    tables = [table_with_answers(m, 8, answered) for m in RTT]
    targets = [f"sid{i}" for i in range(8)]
    parents: list[str | None] = [None] + [f"sid{i // 2}" for i in range(7)]
    depths = [i.bit_length() for i in range(8)]
    pairs = [outcome(t.answers_json, start, stop) for t in tables]
    trees = [outcome(t.answers_json, start, stop, targets, parents, depths) for t in tables]
    assert pairs[0] == pairs[1] and trees[0] == trees[1]
    if start < 0:
        assert pairs[0] is IndexError and trees[0] is IndexError
    else:  # a stop past the last answer stops there
        assert pairs[0].count(b"[") == max(0, min(stop, answered) - start)


@pytest.mark.parametrize("module", RTT, ids=["python", "cython"])
def test_tree_answers_need_the_tree_s_arrays_whole(module: Any) -> None:
    table = table_with_answers(module, 4, 4)
    with pytest.raises(IndexError):
        table.answers_json(0, 4, ["sid0"], [None], [0])  # three pokes missing


def test_a_slot_sent_again_is_answered_again_without_overflowing() -> None:
    """More answers than slots (a poke sent twice): the compiled table makes room."""
    tables = [m.PokeTable(1) for m in RTT]
    for round_ in range(50):
        for table in tables:
            table.mark_sent(0, float(round_))
            assert table.answer(0, round_ + 0.5, 1.0) == 500.0
    plain, compiled = tables
    assert plain.received == compiled.received == 50
    assert plain.answers_json(0, 100) == compiled.answers_json(0, 100)
    assert compiled.answered_index(49) == 0 and compiled.answered_rtt(49) == 500.0


# -- poke fan-out and trees -----------------------------------------------------------


def connections(connection_module: Any, n: int) -> list[Any]:
    conns = []
    for _ in range(n):
        conn = connection_module.Connection(SimpleNamespace(traffic=connection_module.Traffic()))
        conn.held = []  # what it is sent waits here: no socket in this test
        conns.append(conn)
    return conns


@settings(max_examples=300, deadline=None)
@given(start=small, stop=small, n=st.integers(min_value=0, max_value=6))
def test_send_pokes_refuses_a_range_beyond_its_connections(start: int, stop: int, n: int) -> None:
    got = []
    for pokes_module, connection_module, rtt_module in POKES:
        conns = connections(connection_module, n)
        table = rtt_module.PokeTable(64)
        frame = pokes_module.PokeFrame("op")
        got.append(outcome(pokes_module.send_pokes, frame, conns, start, stop, 0, table))
    assert got[0] == got[1]
    if start < 0 or stop > n:
        assert got[0] is IndexError
    else:
        assert got[0] == max(0, stop - start)


def a_tree(rtt_module: Any, slots: int) -> SimpleNamespace:
    table = rtt_module.PokeTable(max(slots, 1))
    return SimpleNamespace(
        key="t-1@w",
        op_id="t-1",
        leaves=8,
        targets=[f"c{i}" for i in range(slots)],
        parents=[None] * slots,
        depths=bytearray(slots),
        table=table,
        unreachable=0,
    )


@settings(max_examples=200, deadline=None)
@given(index=small, slots=st.integers(min_value=0, max_value=4))
def test_grow_tree_refuses_a_poke_the_tree_does_not_have(index: int, slots: int) -> None:
    got = []
    for pokes_module, connection_module, rtt_module in POKES:
        tree = a_tree(rtt_module, slots)
        members = ["c0", "c1"]
        sockets = dict(zip(members, connections(connection_module, 2), strict=True))
        got.append(outcome(pokes_module.grow_tree, tree, index, 4, members, sockets))
    assert got[0] == got[1]
    assert got[0] is IndexError or 0 <= index < slots


def test_grow_tree_checks_targets_as_well_as_depths() -> None:
    for pokes_module, _, rtt_module in POKES:
        tree = a_tree(rtt_module, 2)
        tree.targets = ["c0"]  # slot 1 has a depth and no target
        with pytest.raises(IndexError):
            pokes_module.grow_tree(tree, 1, 4, [], {})


@pytest.mark.parametrize("depth", [-1, -(2**40), 0, 3, 63, 64, 200])
def test_poke_tree_shifts_by_any_depth_as_python_does(depth: int) -> None:
    got = []
    for pokes_module, connection_module, rtt_module in POKES:
        tree = a_tree(rtt_module, 1)
        sockets = {"c0": connections(connection_module, 1)[0]}
        result = outcome(pokes_module.poke_tree, tree, "c0", depth, ["c0"], 2, sockets)
        got.append((result, tree.unreachable, list(tree.depths)))
    assert got[0][1:] == got[1][1:]
    assert (got[0][0] is ValueError) == (got[1][0] is ValueError) == (depth < 0 or depth > 255)


# -- pokeBack bookkeeping -------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(index=indices)
def test_record_counts_any_index_off_the_operation_as_foreign(index: int) -> None:
    got = []
    for tap_module, rtt_module in ((pokeback, rtt), (pokeback_c, rtt_c)):
        table = table_with_answers(rtt_module, 4, 0)
        for i in range(4):
            table.mark_sent(i, 0.0)
        op = SimpleNamespace(targets=["s"] * 4, table=table, expected=4, grows=False)
        tap = tap_module.PokeBackTap({"op": op}, lambda *a: None)
        got.append((tap.record("s", "op", index, 1.0, -1, 1.0), tap.foreign, tap.answers))
    assert got[0] == got[1]
    assert got[0][0] == (pokeback.RECORDED if 0 <= index < 4 else pokeback.FOREIGN)


# -- the codec ------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(start=small, message=st.sampled_from([b"", b"2", b'42["a"]', b'2["x",1]']))
def test_decode_from_any_start_alike(start: int, message: bytes) -> None:
    got = [outcome(m.decode, message, start) for m in (packets, codec_c)]
    assert got[0] == got[1]
    if start < 0 or start >= len(message):
        assert got[0] is PacketError


# -- histograms and the timer wheel ---------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    fraction=st.floats(allow_nan=True, allow_infinity=True),
    values=st.lists(st.floats(min_value=-1e3, max_value=1e6), max_size=20),
)
def test_a_percentile_of_any_fraction_alike(fraction: float, values: list[float]) -> None:
    got = []
    for module in (histogram, histogram_c):
        h = module.Histogram()
        for v in values:
            h.record(v)
        got.append(outcome(h.percentile, fraction))
    assert got[0] == got[1]
    assert (got[0] is ValueError) == math.isnan(fraction)


@settings(max_examples=200, deadline=None)
@given(
    due=st.floats(min_value=-1e15, max_value=1e15) | st.sampled_from([math.nan, math.inf]),
    now=st.floats(min_value=0.0, max_value=1e6),
)
def test_the_wheel_takes_any_deadline_alike(due: float, now: float) -> None:
    got = []
    for module in (timers, timers_c):
        wheel = module.TimerWheel(0.01, 0.0, 8)
        scheduled = outcome(wheel.schedule, "x", due)
        got.append((scheduled, outcome(wheel.advance, now), wheel.count))
    assert got[0] == got[1]


# -- the swarm's client: a poke the server got wrong ----------------------------------


@pytest.mark.parametrize(
    "frame", [b'42["poke"]', b"42[]", b'42["poke",{}]', b'42["poke",[]]', b'42["poke",{"id":1}]']
)
def test_a_poke_short_of_its_fields_is_counted_not_read_past(frame: bytes) -> None:
    for module in (swarm_client, swarm_client_c):
        swarm = BadPokes()
        module.SwarmClient(swarm, 0).answer(frame)
        assert swarm.bad == [frame], module.__name__


class BadPokes:
    """What a swarm hears of a client's pokes, here the ones it could not answer."""

    def __init__(self) -> None:
        self.bad: list[bytes] = []

    def bad_poke(self, client: Any, data: bytes) -> None:
        self.bad.append(data)
