"""Who is in the cluster: every worker tells the others, once a second, that it is
alive and how many clients it holds; a worker not heard of for a few seconds is
gone. Random picks of clients across the cluster are weighted by those counts.
"""

from __future__ import annotations

import bisect
import itertools
import random
import time
from dataclasses import dataclass, field
from typing import Any

BEAT_EVERY = 1.0
GONE_AFTER = 3.5


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

    def expire(self) -> list[str]:
        """Forget the workers not heard of for a while; their tags."""
        now = time.monotonic()
        gone = [t for t, p in self.peers.items() if t != self.tag and now - p.seen > GONE_AFTER]
        for tag in gone:
            del self.peers[tag]
        if gone:
            self._cumulative = None
        return gone

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
