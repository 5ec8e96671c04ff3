"""The heartbeat's tick (``serve_due``) over many connections, both twins, no socket and
no clock: time is an argument, so every deadline is exact."""

from __future__ import annotations

import itertools
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from msstorm._fastpath import connection, connection_c, session_c, timers, timers_c
from msstorm.protocol import session
from msstorm.protocol.engineio import Config

TWINS = {
    "python": (connection, session, timers),
    "cython": (connection_c, session_c, timers_c),
}
INTERVAL = 25.0  # the defaults, in seconds
TIMEOUT = 20.0
RESOLUTION = 0.25  # what server.heartbeat picks for them
T0 = 1000.0


class Swarm:
    """``n`` joined connections of one twin, opened at ``T0 + i * spread``; what they
    are sent waits in ``held`` (no socket)."""

    def __init__(self, twin: str, n: int, spread: float = 0.0) -> None:
        connection_module, session_module, timers_module = TWINS[twin]
        self.connection_module = connection_module
        stats = SimpleNamespace(ignored=0, trims_refused=0)
        app = SimpleNamespace(traffic=connection_module.Traffic(), tap=None, stats=stats)
        self.wheel = timers_module.TimerWheel(RESOLUTION, T0)
        config = Config(int(INTERVAL * 1000), int(TIMEOUT * 1000))
        self.conns: list[Any] = []
        self.failed: list[Any] = []
        self.outbox: dict[int, list[bytes]] = {}  # what each was sent, kept past its close
        for i in range(n):
            conn = connection_module.Connection(app)
            conn.held = self.outbox[id(conn)] = []
            conn.session = session_module.SocketSession(f"s{i}", config, T0 + i * spread)
            conn.session.join("/", f"sid{i}")
            self.wheel.schedule(conn, conn.session.deadline)
            self.conns.append(conn)

    def tick(self, now: float) -> int:
        due: int = self.connection_module.serve_due(self.wheel, now, self.failed.append)
        return due

    def run(self, until: float, answering: Any) -> None:
        """Tick every ``RESOLUTION`` up to ``until``; after each tick the connections
        ``answering(i)`` says yes to answer the pings they were sent."""
        now = self.now
        while now <= until:
            self.tick(now)
            for i, conn in enumerate(self.conns):
                if self.unanswered(conn):
                    self.pinged.setdefault(i, []).append(now)
                    if answering(i) and not conn.closed:
                        conn.receive(b"3", False)
                    self.answered[id(conn)] = self.pings(conn)
            now += RESOLUTION
        self.now = now

    answered: dict[int, int]
    pinged: dict[int, list[float]]  # when each connection's pings were sent
    now: float

    def pings(self, conn: Any) -> int:
        return sum(1 for frame in self.outbox[id(conn)] if frame == b"2")

    def unanswered(self, conn: Any) -> bool:
        return self.pings(conn) > self.answered.setdefault(id(conn), 0)

    def trace(self) -> list[tuple[int, bool, Any]]:
        return [(self.pings(c), c.closed, c.close_reason) for c in self.conns]


def swarm(twin: str, n: int, spread: float = 0.0) -> Swarm:
    made = Swarm(twin, n, spread)
    made.answered, made.pinged, made.now = {}, {}, T0
    return made


@pytest.mark.parametrize("twin", TWINS)
def test_every_connection_is_pinged_once_per_interval(twin: str) -> None:
    n = 5000
    s = swarm(twin, n, spread=INTERVAL / n)  # opened over one interval, as a ramp does
    end = T0 + 5 * INTERVAL
    s.run(end, answering=lambda i: True)
    assert s.failed == []
    for i, conn in enumerate(s.conns):
        opened, sent = T0 + i * INTERVAL / n, s.pinged[i]
        # The first ping an interval after the open, each next one an interval after
        # the last (at most a tick late each time), and none missing at the end.
        assert opened + INTERVAL <= sent[0] <= opened + INTERVAL + RESOLUTION, i
        gaps = [b - a for a, b in itertools.pairwise(sent)]
        assert all(INTERVAL <= gap <= INTERVAL + RESOLUTION for gap in gaps), (i, gaps)
        assert end - sent[-1] <= INTERVAL + RESOLUTION and not conn.closed, i
        assert s.pings(conn) == len(sent) >= 3


@pytest.mark.parametrize("twin", TWINS)
def test_a_missing_pong_closes_exactly_that_connection(twin: str) -> None:
    n, silent = 3000, 1234
    s = swarm(twin, n)
    s.run(T0 + INTERVAL + RESOLUTION, answering=lambda i: i != silent)
    (first_ping,) = s.pinged[silent]
    assert all(s.pinged[i] == [first_ping] for i in range(n))  # opened together
    s.run(first_ping + TIMEOUT - RESOLUTION, answering=lambda i: i != silent)
    assert not any(c.closed for c in s.conns)  # the pong is not overdue yet
    s.run(first_ping + TIMEOUT + RESOLUTION, answering=lambda i: i != silent)
    closed = [i for i, c in enumerate(s.conns) if c.closed]
    assert closed == [silent] and s.conns[silent].close_reason == "ping timeout"
    # The others go on: their second ping comes one interval after the first.
    s.run(first_ping + INTERVAL + RESOLUTION, answering=lambda i: True)
    assert all(s.pings(c) == 2 for i, c in enumerate(s.conns) if i != silent)
    assert s.pings(s.conns[silent]) == 1  # no ping while its pong is due, none after
    assert s.failed == []


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(min_value=1, max_value=60),
    spread=st.floats(min_value=0.0, max_value=1.0),
    silent=st.frozensets(st.integers(min_value=0, max_value=59), max_size=10),
    late=st.frozensets(st.integers(min_value=0, max_value=59), max_size=10),
    steps=st.lists(st.floats(min_value=0.001, max_value=30.0), min_size=1, max_size=12),
)
def test_both_twins_tick_alike(
    n: int, spread: float, silent: frozenset[int], late: frozenset[int], steps: list[float]
) -> None:
    """Uneven ticks (a loop late by up to 30 s), silent and slow peers: the same pings,
    the same closes, at the same ticks."""
    traces = []
    for twin in TWINS:
        s = swarm(twin, n, spread)
        now, trace = T0, []
        for step in steps:
            now += step
            due = s.tick(now)
            for i, conn in enumerate(s.conns):
                # A late peer answers only on every other tick.
                answers = i not in silent and (i not in late or len(trace) % 2)
                if answers and not conn.closed and s.unanswered(conn):
                    conn.receive(b"3", False)
                    s.answered[id(conn)] = s.pings(conn)
            trace.append((due, s.trace(), s.wheel.count))
        assert s.failed == []
        traces.append(trace)
    assert traces[0] == traces[1]


@pytest.mark.parametrize("twin", TWINS)
def test_a_connection_that_fails_its_turn_is_handed_over_alone(twin: str) -> None:
    s = swarm(twin, 100)

    class Broken:
        def on_timer(self, wheel: Any, now: float) -> None:
            raise RuntimeError("broken")

    broken = Broken()
    s.wheel.schedule(broken, T0 + 1.0)
    assert s.tick(T0 + INTERVAL + RESOLUTION) == 101
    assert s.failed == [broken]
    assert all(s.pings(c) == 1 for c in s.conns)


def test_the_twins_are_what_they_claim() -> None:
    for module in (connection_c, session_c, timers_c):
        assert isinstance(module, ModuleType) and (module.__file__ or "").endswith(".so")
