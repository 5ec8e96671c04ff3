"""Who is in the cluster: every worker tells the others, once a second, that it is
alive and how many clients it holds. Random picks of clients across the cluster are
weighted by those counts.

When a worker is gone. A worker that dies on this machine is known at once: the
hub sees its link close and says so (``leave``). Otherwise a worker is gone when
nothing came from it (a beat or any other message) for ``grace()``, judged only
while the bus is seen to deliver on time: each worker's beat also goes to itself
through the bus, and while that echo is late (a starved hub, a Redis backlog, this
worker's own stalled loop) nobody's silence counts, unless the bus itself is down:
then the others cannot be reached anyway, and go after the grace. The grace grows
with the machine's load: on a machine with more runnable processes than cores a
live worker may wait that much longer for the CPU between two of its beats.
"""

from __future__ import annotations

import bisect
import itertools
import os
import random
import time
from dataclasses import dataclass, field
from typing import Any

BEAT_EVERY = 1.0
GONE_AFTER = 3.5  # on an idle machine
MAX_GRACE = 120.0  # however loaded: a worker frozen this long is taken for gone
ECHO_LATE = 2 * BEAT_EVERY  # an echo older than this: the bus is not delivering on time


def load_per_core() -> float:
    """Runnable processes per core, now and over the last minute, whichever is higher."""
    cores = os.cpu_count() or 1
    try:
        with open("/proc/loadavg", "rb") as proc:
            fields = proc.read().split()
        runnable = int(fields[3].split(b"/")[0]) - 1  # this process, reading, is one
        return max(runnable, float(fields[0])) / cores
    except (OSError, IndexError, ValueError):  # not Linux
        return os.getloadavg()[0] / cores


def grace(load: float) -> float:
    """How long a live worker may stay silent at ``load`` runnable processes per core."""
    return min(MAX_GRACE, GONE_AFTER * max(1.0, load))


@dataclass
class Peer:
    tag: str
    clients: int = 0
    pid: int = 0
    seen: float = field(default_factory=time.monotonic)
    details: dict[str, Any] = field(default_factory=dict)


class Membership:
    """This worker's view of the cluster (itself included, always alive)."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.peers: dict[str, Peer] = {tag: Peer(tag)}
        self.echoed = time.monotonic()  # when this worker's own beat last came back
        self.bus_delay = 0.0  # how long that echo took
        self._echo_sent = 0.0
        self._tags: list[str] = []
        self._cumulative: list[int] | None = None  # client counts, summed, for weighted picks

    def beat(self, tag: str, clients: int, pid: int, details: dict[str, Any]) -> str:
        """A heartbeat from ``tag``: "joined" for a worker not known before,
        "restarted" when its process changed (its state was lost), else ""."""
        peer = self.peers.get(tag)
        news = ""
        if peer is None:
            peer = self.peers[tag] = Peer(tag)
            news = "joined"
        elif peer.pid != pid and peer.pid and tag != self.tag:
            news = "restarted"
        if peer.clients != clients:
            self._cumulative = None
        peer.clients = clients
        peer.pid = pid
        peer.details = details
        peer.seen = time.monotonic()
        return news

    def update_self(self, clients: int, pid: int, details: dict[str, Any]) -> None:
        self.beat(self.tag, clients, pid, details)

    def heard(self, tag: str) -> None:
        """Anything from ``tag`` says it is alive, a beat or not."""
        peer = self.peers.get(tag)
        if peer is not None:
            peer.seen = time.monotonic()

    def echo(self, sent: float) -> None:
        """This worker's beat sent at ``sent`` came back through the bus."""
        if sent > self._echo_sent:  # not an older one, overtaken
            self._echo_sent = sent
            self.echoed = time.monotonic()
            self.bus_delay = self.echoed - sent

    def on_time(self, now: float | None = None) -> bool:
        """Whether the bus has lately been delivering on time (this worker's own echo)."""
        now = time.monotonic() if now is None else now
        return now - self.echoed <= ECHO_LATE

    def expire(self, load: float = 0.0, bus_up: bool = True) -> list[str]:
        """Forget the workers silent for longer than the ``grace`` of ``load``; their
        tags. Nobody while the bus is up but late."""
        now = time.monotonic()
        if bus_up and not self.on_time(now):
            return []
        silence = grace(load)
        gone = [t for t, p in self.peers.items() if t != self.tag and now - p.seen > silence]
        for tag in gone:
            del self.peers[tag]
        if gone:
            self._cumulative = None
        return gone

    def leave(self, tag: str) -> bool:
        """``tag`` is known to be gone (its link closed); whether it was here."""
        if tag == self.tag or self.peers.pop(tag, None) is None:
            return False
        self._cumulative = None
        return True

    def alive(self) -> list[str]:
        return sorted(self.peers)

    def total(self) -> int:
        return sum(p.clients for p in self.peers.values())

    def pick(self, k: int) -> list[str]:
        """The workers of ``k`` clients drawn uniformly from the cluster's clients (a
        worker drawn twice picks two distinct clients of its own when it has them)."""
        if self._cumulative is None:
            self._weigh()
        assert self._cumulative is not None
        total = self._cumulative[-1] if self._cumulative else 0
        if total <= 0:
            return []
        tags = self._tags
        cumulative = self._cumulative
        return [tags[bisect.bisect_right(cumulative, random.random() * total)] for _ in range(k)]

    def _weigh(self) -> None:
        self._tags = [t for t, p in self.peers.items() if p.clients > 0]
        self._cumulative = list(itertools.accumulate(self.peers[t].clients for t in self._tags))

    def view(self) -> dict[str, Any]:
        return {
            "workers": len(self.peers),
            "clients": self.total(),
            "perWorker": {
                t: {"clients": p.clients, "pid": p.pid, **p.details}
                for t, p in sorted(self.peers.items())
            },
        }
