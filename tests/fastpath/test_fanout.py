"""The fan-out of one frame to many connections, both twins: the same connections get
the same frames, the closed are skipped, and the count says so."""

from __future__ import annotations

from types import ModuleType, SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from msstorm._fastpath import connection, connection_c, fanout, fanout_c

TWINS = [(fanout, connection), (fanout_c, connection_c)]


class Recording:
    """What reached each connection, through its own send_text/send_binary (a connection
    with no WebSocket transport: long-polling, or held)."""

    def __init__(self, module: ModuleType, n: int, closed: frozenset[int]) -> None:
        self.conns = []
        for i in range(n):
            conn = module.Connection(SimpleNamespace(traffic=module.Traffic()))
            conn.closed = i in closed
            conn.hold()  # no transport: frames are kept in held, in order
            self.conns.append(conn)

    def frames(self) -> list[list[object]]:
        return [list(conn.held or []) for conn in self.conns]


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(min_value=0, max_value=40),
    closed=st.frozensets(st.integers(min_value=0, max_value=39)),
    frame=st.binary(max_size=300),
    binary=st.booleans(),
    bounds=st.tuples(st.integers(0, 40), st.integers(0, 40)),
)
def test_both_twins_send_alike(
    n: int, closed: frozenset[int], frame: bytes, binary: bool, bounds: tuple[int, int]
) -> None:
    start, stop = min(bounds[0], n), min(max(bounds), n)
    results = []
    for fan, conn_module in TWINS:
        recording = Recording(conn_module, n, closed)
        count = fan.send_frame(frame, recording.conns, start, stop, binary)
        results.append((count, recording.frames()))
    assert results[0] == results[1]
    count, frames = results[0]
    assert count == sum(1 for i in range(start, stop) if i not in closed)
    for i, got in enumerate(frames):
        wanted = [bytearray(frame) if binary else frame] if start <= i < stop else []
        assert got == ([] if i in closed else wanted)


def test_the_compiled_twin_refuses_what_is_not_a_connection() -> None:
    with pytest.raises(TypeError):
        fanout_c.send_frame(b"x", [object()], 0, 1)
    with pytest.raises(IndexError):
        fanout_c.send_frame(b"x", [], 0, 1)
