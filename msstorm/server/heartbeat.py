"""The heartbeat: one timer per process drives every connection's deadlines.

Each connection sits in a timer wheel under its session's next deadline (ping
due, pong overdue, CONNECT overdue). One ``call_at`` per tick collects the due
connections and lets each act (``Connection.on_timer``): no asyncio handle or
Task per connection, and one compiled loop (``serve_due``) with no Python call per
connection.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from msstorm._fastpath import TimerWheel, serve_due

log = logging.getLogger("msstorm.server")

# Bounds on the tick: fine enough for test-sized intervals, coarse for real ones.
MIN_RESOLUTION = 0.005
MAX_RESOLUTION = 0.25


def resolution_for(*intervals_ms: int) -> float:
    """A tick a tenth of the shortest interval, within the bounds above."""
    shortest = min(intervals_ms) / 1000.0
    return min(MAX_RESOLUTION, max(MIN_RESOLUTION, shortest / 10.0))


class Heartbeat:
    """The timer wheel of one process and the tick that advances it."""

    def __init__(self, loop: asyncio.AbstractEventLoop, resolution: float) -> None:
        self.loop = loop
        self.resolution = resolution
        self.wheel = TimerWheel(resolution, loop.time())
        self._handle: asyncio.TimerHandle | None = None
        self.ticks = 0
        self.served = 0  # connections handed their turn by the ticks

    def watch(self, connection: Any) -> None:
        """Start serving ``connection``'s session deadlines."""
        self.schedule(connection, connection.session.deadline)

    def schedule(self, item: Any, deadline: float) -> None:
        """Call ``item.on_timer(wheel, now)`` once ``deadline`` has passed."""
        self.wheel.schedule(item, deadline)
        if self._handle is None:
            self._handle = self.loop.call_at(self.loop.time() + self.resolution, self._tick)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _tick(self) -> None:
        now = self.loop.time()
        self.tick(now)
        if self.wheel.count:
            self._handle = self.loop.call_at(now + self.resolution, self._tick)
        else:
            self._handle = None

    def tick(self, now: float) -> int:
        """Let every connection due by ``now`` act; how many were due."""
        self.ticks += 1
        due: int = serve_due(self.wheel, now, _failed)
        self.served += due
        return due


def _failed(connection: Any) -> None:
    """One broken connection must not stop everyone's heartbeat: it alone is closed."""
    log.exception("heartbeat failed for a connection; closing it")
    connection.close(reason="transport error")
