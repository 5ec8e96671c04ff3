"""MessageStorm operations as their origin sees them: what they expect, what came back.

The worker a monitor talks to is the origin of the operations it starts. The
pokes go out from whichever workers hold the recipients (see shards.py); each
reports its counts to the origin, which decides when the operation is
complete: every expected answer received or known lost, or the deadline
passed, when the missing answers count as lost. Then the origin collects the
shards' histograms and per-client answers and builds the status.

Status messages follow the contract (PROTOCOL.md): the seed's field
(``unicast``, ``broadcast`` or ``tree``) plus ``op``, ``type``, ``done`` and
``summary``; ``timedOut``, ``workersLost``, ``treeLeaves`` and ``destId``
when they apply.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from msstorm._fastpath import Histogram


@dataclass
class Collected:
    """What one shard handed over: its counts, histograms and answers (JSON text)."""

    sent: int = 0
    received: int = 0
    lost: int = 0
    rtt: Any = None  # Histogram
    delay: Any = None
    answers: bytes = b""


@dataclass
class Operation:
    """One operation started at this worker."""

    id: str
    kind: str
    monitor: str | None
    started: float  # monotonic seconds
    expected: int | None  # None until every worker said how many it pokes (broadcast)
    leaves: int = 0  # a tree's treeLeaves
    dest: str | None = None  # a unicast's destId, when given
    ended: float | None = None
    timed_out: bool = False
    timer: Any = None
    progress: dict[str, tuple[int, int, int]] = field(default_factory=dict)  # tag -> counts
    planned: dict[str, int] = field(default_factory=dict)  # a broadcast's recipients per worker
    gone: set[str] = field(default_factory=set)  # workers that died while it ran
    final: dict[str, Any] | None = None  # the status pushed when it ended
    histograms: tuple[Any, Any] | None = None  # once ended: its RTT and pingDelay, merged

    @property
    def done(self) -> bool:
        return self.ended is not None

    @property
    def received(self) -> int:
        return sum(counts[1] for counts in self.progress.values())

    @property
    def lost(self) -> int:
        """Answers known to be missing (all of the missing ones once done)."""
        if self.done and self.expected is not None:
            return self.expected - self.received
        lost = sum(counts[2] for counts in self.progress.values())
        for tag in self.gone:  # what a dead worker had not had answered never will be
            if self.kind == "broadcast":
                lost += self.planned.get(tag, 0) - self.progress.get(tag, (0, 0, 0))[1]
            elif self.kind == "unicast":
                lost += 1 - self.received
        return lost

    def complete(self) -> bool:
        return self.expected is not None and self.received + self.lost >= self.expected

    def workers(self) -> set[str]:
        """The workers holding a part of it."""
        return (set(self.progress) | set(self.planned)) - self.gone

    # -- status ---------------------------------------------------------------

    def summary(self, now: float, parts: dict[str, Collected]) -> dict[str, Any]:
        rtt, delay = Histogram(), Histogram()
        for part in parts.values():
            if part.rtt is not None:
                rtt.merge(part.rtt)
                delay.merge(part.delay)
        end = self.ended if self.ended is not None else now
        if self.done:  # kept for those who watch (the dashboard's distribution)
            self.histograms = (rtt, delay)
        return {
            "expected": self.expected if self.expected is not None else 0,
            "received": self.received,
            "lost": self.lost,
            "elapsedMs": round((end - self.started) * 1000.0, 3),
            "rtt": rtt.summary(),
            "pingDelay": delay.summary(),
        }

    def status(self, now: float, parts: dict[str, Collected], detail: bool) -> dict[str, Any]:
        status: dict[str, Any] = {"op": self.id, "type": self.kind, "done": self.done}
        if self.timed_out:
            status["timedOut"] = True
        if self.gone:
            status["workersLost"] = sorted(self.gone)
        if self.kind == "tree":
            status["treeLeaves"] = self.leaves
        if self.dest is not None:
            status["destId"] = self.dest
        status["summary"] = self.summary(now, parts)
        if detail:
            answers = [part.answers for part in parts.values() if part.answers]
            if self.kind == "unicast":
                status["unicast"] = orjson.Fragment(answers[0]) if answers else None
            else:
                status[self.kind] = orjson.Fragment(b"[" + b",".join(answers) + b"]")
        return status
