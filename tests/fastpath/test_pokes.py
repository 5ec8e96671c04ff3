"""Poke frames, both twins: the same bytes, valid JSON, and what the contract names."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from msstorm._fastpath import pokes as pokes_py
from msstorm._fastpath import pokes_c
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
