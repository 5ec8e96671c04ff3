"""Who is in the cluster: every worker tells the others, once a second, that it is
alive and how many clients it holds; a worker not heard of for a few seconds is
gone. Random picks of clients across the cluster are weighted by those counts.
"""

from __future__ import annotations

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
        return gone

    def alive(self) -> list[str]:
        return sorted(self.peers)

    def total(self) -> int:
        return sum(p.clients for p in self.peers.values())

    def pick(self, k: int) -> list[str]:
        """The workers of ``k`` distinct clients drawn uniformly from the cluster's
        (with repeats only when the cluster has fewer than ``k`` clients)."""
        counts = {t: p.clients for t, p in self.peers.items() if p.clients > 0}
        total = sum(counts.values())
        picks: list[str] = []
        for _ in range(k):
            if total <= 0:  # fewer clients than picks: draw again from all of them
                counts = {t: p.clients for t, p in self.peers.items() if p.clients > 0}
                total = sum(counts.values())
                if total <= 0:
                    return picks
            tag = random.choices(list(counts), list(counts.values()))[0]
            picks.append(tag)
            counts[tag] -= 1  # that client is taken
            total -= 1
        return picks

    def view(self) -> dict[str, Any]:
        return {
            "workers": len(self.peers),
            "clients": self.total(),
            "perWorker": {
                t: {"clients": p.clients, "pid": p.pid, **p.details}
                for t, p in sorted(self.peers.items())
            },
        }
