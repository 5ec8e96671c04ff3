"""What a worker tells the others of itself once a second, for those who watch the storm.

Every worker samples its own figures on a one-second tick: connections and
their transports, connects and disconnects per second, the input it refused by
kind, its CPU (a fraction of one core over the last second) and its resident
memory. They travel in the membership's beat (``Storm.details``), so any worker
can show the whole cluster (``Membership.view``) without asking anyone: the
dashboard and the admin UI read them there. Aggregates only, whatever the
number of clients.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import Storm

SAMPLE_EVERY = 1.0
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def resident_bytes() -> int:
    """This process's resident memory (``/proc/self/statm``), 0 where there is none."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return 0


def cpu_seconds() -> float:
    """User and system CPU this process has used."""
    times = os.times()
    return times.user + times.system


class WorkerFigures:
    """Samples one worker's figures into ``storm.details`` every second."""

    def __init__(self, storm: Storm) -> None:
        self.storm = storm
        self.started = time.time()
        self._last = (time.monotonic(), cpu_seconds(), 0, 0)
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self.sample()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def sample(self) -> None:
        self.storm.details = self.now()
        self._timer = asyncio.get_running_loop().call_later(SAMPLE_EVERY, self.sample)

    def now(self) -> dict[str, Any]:
        """The figures, rates over the time since the last call."""
        server = self.storm.server
        stats = server.stats
        wall, cpu = time.monotonic(), cpu_seconds()
        handshakes, disconnects = stats.handshakes, sum(stats.disconnects.values())
        last_wall, last_cpu, last_handshakes, last_disconnects = self._last
        self._last = (wall, cpu, handshakes, disconnects)
        span = max(wall - last_wall, 1e-3)
        polling = sum(1 for session in server.polling.values() if not session.upgraded)
        rss = resident_bytes()
        refused = dict(stats.refused)
        for name, n in self.storm.counts.items():
            if name.startswith(("monitor refused", "initiatePoke refused", "malformed")):
                refused[name] = n
        return {
            "node": self.storm.tag[:2],
            "uptime": round(time.time() - self.started, 1),
            "connections": stats.connections,
            "polling": polling,
            "websocket": stats.connections - polling,
            "handshakes": handshakes,
            "disconnects": disconnects,
            "connectsPerSec": round((handshakes - last_handshakes) / span, 1),
            "disconnectsPerSec": round((disconnects - last_disconnects) / span, 1),
            "refused": refused,
            "cpu": round((cpu - last_cpu) / span, 4),
            "rss": rss,
            "rssPerConnection": round(rss / stats.connections) if stats.connections else None,
        }
