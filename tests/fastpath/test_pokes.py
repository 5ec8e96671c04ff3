"""Poke frames and a tree's growth, both twins: the same bytes, valid JSON, what the
contract names."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from msstorm._fastpath import connection, connection_c, pokes_c, rtt_c
from msstorm._fastpath import pokes as pokes_py
from msstorm._fastpath import rtt as rtt_py
from msstorm.protocol import packets


@settings(max_examples=200, deadline=None)
@given(
    op=st.text(alphabet="abcdef0123456789-", min_size=1, max_size=12),
    index=st.integers(min_value=0, max_value=16**8 - 1),
    wall_ms=st.floats(min_value=0.0, max_value=4e12),  # up to the year 2096
    leaves=st.sampled_from([0, 1, 2, 64, 1 << 20]),
    parent=st.none() | st.text(alphabet="abcXYZ_-09", min_size=20, max_size=20),
)
def test_frames_are_identical_and_decode(
    op: str, index: int, wall_ms: float, leaves: int, parent: str | None
) -> None:
    plain = pokes_py.PokeFrame(op, leaves, parent).render(index, wall_ms)
    compiled = pokes_c.PokeFrame(op, leaves, parent).render(index, wall_ms)
    assert plain == compiled
    packet = packets.decode(plain, 1)
    name, poke = packet.data
    assert name == "poke"
    assert poke["id"] == f"{op}.{index:08x}"
    assert poke["ts"] == pytest.approx(wall_ms, abs=0.001)
    if leaves:
        assert poke["treeLeaves"] == leaves and poke["treeId"] == op
        assert poke["parentId"] == (parent if parent is not None else -1)
    else:
        assert set(poke) == {"id", "ts"}


@pytest.mark.parametrize("module", [pokes_py, pokes_c], ids=["python", "cython"])
def test_frames_refuse_what_cannot_be_written(module: object) -> None:
    frame_class = module.PokeFrame  # type: ignore[attr-defined]
    with pytest.raises(ValueError):
        frame_class("bad.op")
    frame = frame_class("op")
    with pytest.raises(ValueError):
        frame.render(16**8, 1.0)
    with pytest.raises(ValueError):
        frame.render(-1, 1.0)
    with pytest.raises(ValueError):
        frame.render(0, 1e20)


@settings(max_examples=200, deadline=None)
@given(
    seed=st.integers(min_value=-(2**70), max_value=2**70),
    sizes=st.lists(st.integers(min_value=1, max_value=2**40), min_size=1, max_size=50),
)
def test_both_twins_draw_alike_and_within_bounds(seed: int, sizes: list[int]) -> None:
    draws = []
    for module in (pokes_py, pokes_c):
        module.seed(seed)
        draws.append([module.below(n) for n in sizes])
    assert draws[0] == draws[1]
    assert all(0 <= d < n for d, n in zip(draws[0], sizes, strict=True))


def test_the_draws_are_uniform() -> None:
    pokes_c.seed(12345)
    counts = [0] * 10
    for _ in range(100_000):
        counts[pokes_c.below(10)] += 1
    assert all(9_500 < c < 10_500 for c in counts), counts  # 5 standard deviations: ~1.5%
    with pytest.raises(ValueError):
        pokes_c.below(0)


sids = st.text(alphabet="abcXYZ_-09", min_size=1, max_size=24)


@settings(max_examples=200, deadline=None)
@given(
    leaves=st.sampled_from([0, 1, 2, 64, 1 << 20]),
    first=st.none() | sids,
    parents=st.lists(st.none() | sids, min_size=1, max_size=8),
    index=st.integers(min_value=0, max_value=16**8 - 1),
)
def test_a_reparented_frame_is_the_frame_of_its_new_parent(
    leaves: int, first: str | None, parents: list[str | None], index: int
) -> None:
    """A tree reuses one frame per depth, its parent's id patched in place when it can
    be: the bytes are those of a frame made for that parent, on both twins."""
    for module in (pokes_py, pokes_c):
        frame = module.PokeFrame("t-1@w", leaves, first, "t-1")
        for parent in parents:
            frame.reparent(parent)
            made = module.PokeFrame("t-1@w", leaves, parent, "t-1")
            assert frame.render(index, 1.5e12) == made.render(index, 1.5e12)
            assert frame.render(index, 1.5e12) == pokes_py.PokeFrame(
                "t-1@w", leaves, parent, "t-1"
            ).render(index, 1.5e12)


class FakeConnection:
    def __init__(self, closed: bool = False) -> None:
        self.closed = closed
        self.paused = False
        self.sent: list[bytes] = []

    def send_text(self, frame: bytes) -> None:
        self.sent.append(frame)


def test_plain_fan_out_times_each_poke_and_skips_the_closed() -> None:
    conns = [FakeConnection(), FakeConnection(closed=True), FakeConnection()]
    table = rtt_py.PokeTable(13)
    sent = pokes_py.send_pokes(pokes_py.PokeFrame("op"), conns, 0, 3, 10, table)
    assert sent == 2 and (table.sent, table.unsent) == (2, 1)
    assert orjson.loads(conns[0].sent[0][2:])[1]["id"] == "op.0000000a"
    assert orjson.loads(conns[2].sent[0][2:])[1]["id"] == "op.0000000c"
    assert table.is_pending(10) and not table.is_pending(11) and table.is_pending(12)


# -- a tree's growth on one worker, both twins ----------------------------------------

GROW_TWINS = [(pokes_py, connection, rtt_py), (pokes_c, connection_c, rtt_c)]


def tree_of(rtt_module: Any, leaves: int, capacity: int = 1) -> SimpleNamespace:
    """A tree's shard whose root (slot 0, depth 0) went to "c0"."""
    table = rtt_module.PokeTable(capacity)
    table.mark_sent(0, 0.0)
    return SimpleNamespace(
        key="t-1@w",
        op_id="t-1",
        leaves=leaves,
        targets=["c0"],
        parents=[None],
        depths=bytearray([0]),
        table=table,
        unreachable=0,
        frames=[],
    )


def clients(connection_module: Any, n: int, closed: frozenset[int] = frozenset()) -> Any:
    members = [f"c{i}" for i in range(n)]
    sockets = {}
    for i, sid in enumerate(members):
        conn = connection_module.Connection(SimpleNamespace(traffic=connection_module.Traffic()))
        conn.held = []  # what it is sent waits here: no socket in this test
        conn.closed = i in closed
        sockets[sid] = conn
    return members, sockets


def grown(twins: Any, leaves: int, n: int, closed: frozenset[int] = frozenset(), said: int = 0):
    pokes_module, connection_module, rtt_module = twins
    tree = tree_of(rtt_module, leaves)
    members, sockets = clients(connection_module, n, closed)
    pokes_module.seed(7)
    right = pokes_module.grow_tree(tree, 0, said if said else leaves // 2, members, sockets)
    sent = {
        sid: [orjson.loads(frame[2:])[1] for frame in conn.held]
        for sid, conn in sockets.items()
        if conn.held
    }
    for pokes in sent.values():
        for poke in pokes:
            del poke["ts"]  # each twin's own clock
    table = (tree.table.sent, tree.table.unsent, tree.table.capacity)
    return right, tree.targets, tree.parents, list(tree.depths), tree.unreachable, table, sent


@pytest.mark.parametrize(
    ("leaves", "n", "closed"),
    [(8, 10, frozenset()), (8, 10, frozenset(range(10))), (2, 1, frozenset()), (1 << 20, 3, {1})],
    ids=["two-clients", "all-closed", "one-client", "deep-one-closed"],
)
def test_both_twins_grow_a_tree_alike(leaves: int, n: int, closed: frozenset[int]) -> None:
    plain, compiled = (grown(t, leaves, n, frozenset(closed)) for t in GROW_TWINS)
    assert plain == compiled
    right, targets, parents, depths, unreachable, table, sent = plain
    assert right
    children = targets[1:]
    assert parents == [None] + ["c0"] * len(children) and depths == [0] + [1] * len(children)
    assert len(set(children)) == len(children) or n == 1  # distinct when there are two
    below = 2 * (leaves // 2) - 1  # pokes in a child's subtree
    assert unreachable == (2 - table[0] + 1) * below  # table[0]: the root and the sent
    for sid, pokes in sent.items():
        assert sid in children  # nobody else was poked
        for poke in pokes:
            assert poke["treeLeaves"] == leaves // 2 and poke["parentId"] == "c0"
            assert poke["treeId"] == "t-1" and poke["id"].startswith("t-1@w.")
    assert table[2] >= len(targets)  # the table grew to hold every slot


@pytest.mark.parametrize("twins", GROW_TWINS, ids=["python", "cython"])
def test_a_leaf_grows_nothing_and_a_wrong_tree_leaves_is_said(twins: Any) -> None:
    right, targets, *_ = grown(twins, 1, 4, said=-1)
    assert right and targets == ["c0"]  # a leaf: its answer says no treeLeaves
    right, targets, *_ = grown(twins, 1, 4, said=3)
    assert not right and targets == ["c0"]
    right, targets, *_ = grown(twins, 8, 4, said=2)  # half of 8 is 4
    assert not right and len(targets) == 3  # counted by the caller, grown all the same


@pytest.mark.parametrize("twins", GROW_TWINS, ids=["python", "cython"])
def test_with_no_client_both_subtrees_are_lost(twins: Any) -> None:
    right, targets, _, _, unreachable, *_ = grown(twins, 16, 0)
    assert right and targets == ["c0"] and unreachable == 2 * 15


@pytest.mark.parametrize("twins", GROW_TWINS, ids=["python", "cython"])
def test_poke_tree_sends_what_it_can_and_loses_the_rest(twins: Any) -> None:
    """The cluster's path: pokes other workers asked for, fewer clients than pokes."""
    pokes_module, connection_module, rtt_module = twins
    tree = tree_of(rtt_module, 8)
    _, sockets = clients(connection_module, 3, closed=frozenset({2}))
    pokes_module.poke_tree(tree, "c0", 1, ["c1", "c2", "gone"], 5, sockets)
    assert tree.targets == ["c0", "c1", "c2"] and tree.depths == bytearray([0, 1, 1])
    assert tree.parents == [None, "c0", "c0"]
    assert (tree.table.sent, tree.table.unsent) == (2, 1)  # the root and c1; c2 had closed
    assert tree.unreachable == (5 - 1) * 7  # four subtrees of a depth-1 poke (4 leaves)
    (poke,) = [orjson.loads(f[2:])[1] for f in sockets["c1"].held]
    assert poke["treeLeaves"] == 4 and poke["parentId"] == "c0"
    # The next answers at that depth reuse its frame: each names its own parent.
    pokes_module.poke_tree(tree, "c1", 1, ["c0"], 1, sockets)
    pokes_module.poke_tree(tree, "c0", 1, ["c1"], 1, sockets)
    assert len(tree.frames) == 2 and tree.frames[0] is None  # depth 1's frame, no other
    assert orjson.loads(sockets["c0"].held[-1][2:])[1]["parentId"] == "c1"
    second = orjson.loads(sockets["c1"].held[-1][2:])[1]
    assert second["parentId"] == "c0" and second["id"] == "t-1@w.00000004"
