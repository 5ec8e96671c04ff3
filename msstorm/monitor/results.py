"""What an operation's final status says, kept compact.

The per-answer array of a status (``unicast``, ``broadcast`` or ``tree``) has
one entry per answer; only its numbers are kept (RTT, pingDelay and, for
trees, depth), in flat arrays, for the totals and the plot. The array itself is
kept only when asked for (``--json --details``).
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

# The percentiles of a summary, as the server names them, by exact fraction.
PERCENTILES = (("p50", 50, 100), ("p90", 90, 100), ("p99", 99, 100), ("p999", 999, 1000))
STAT_KEYS = ("min", "p50", "p90", "p99", "p999", "max", "mean")


@dataclass
class OpResult:
    """One finished (or given up) operation."""

    label: str  # "broadcast", "tree:1024", "unicast:SID": what was asked for
    op: str
    kind: str
    status: dict[str, Any]  # the final status without its per-answer array
    gave_up: bool = False  # the monitor stopped waiting before the server ended it
    detail: Any = None  # the per-answer array, when kept
    rtt: array[float] = field(default_factory=lambda: array("d"))
    delay: array[float] = field(default_factory=lambda: array("d"))
    depth: array[int] = field(default_factory=lambda: array("H"))  # trees only
    client_id: str | None = None  # the client a unicast answered from

    @classmethod
    def from_status(
        cls,
        label: str | None,
        status: dict[str, Any],
        *,
        gave_up: bool = False,
        keep: bool = False,
    ) -> OpResult:
        """``label`` None: made from the status (``tree:L`` for a tree)."""
        label = label or label_of(status)
        status = dict(status)
        kind = str(status.get("type", "?"))
        detail = status.pop(kind, None)
        result = cls(label, str(status.get("op", "?")), kind, status, gave_up)
        if keep:
            result.detail = detail
        result._take(detail)
        return result

    def _take(self, detail: Any) -> None:
        if self.kind == "unicast" and isinstance(detail, dict):
            self.client_id = detail.get("clientId")
            self.rtt.append(float(detail["rtt"]))
            self.delay.append(float(detail["pingDelay"]))
        elif self.kind == "broadcast" and isinstance(detail, list):
            for delay, rtt in detail:  # [pingDelay, rtt], as the seed has it
                self.delay.append(delay)
                self.rtt.append(rtt)
        elif self.kind == "tree" and isinstance(detail, list):
            for entry in detail:
                self.rtt.append(entry["rtt"])
                self.delay.append(entry["pingDelay"])
                self.depth.append(entry.get("depth", 0))

    @property
    def summary(self) -> dict[str, Any]:
        summary: dict[str, Any] = self.status.get("summary") or {}
        return summary

    @property
    def expected(self) -> int:
        return int(self.summary.get("expected", 0))

    @property
    def received(self) -> int:
        return int(self.summary.get("received", 0))

    @property
    def lost(self) -> int:
        return int(self.summary.get("lost", 0))

    @property
    def missing(self) -> int:
        """Answers that did not come: lost, or still awaited when the monitor gave up."""
        return max(self.expected - self.received, self.lost)

    @property
    def done(self) -> bool:
        return bool(self.status.get("done"))

    @property
    def timed_out(self) -> bool:
        """The server's timeout ended it, or the monitor's passed first."""
        return bool(self.status.get("timedOut")) or self.gave_up

    @property
    def ok(self) -> bool:
        return self.done and not self.timed_out and self.missing == 0

    @property
    def state(self) -> str:
        if self.gave_up:
            return "gave up"
        if not self.done:
            return "running"
        if self.status.get("timedOut"):
            return "timed out"
        if self.missing:
            return "lost"
        return "ok"

    @property
    def tree_leaves(self) -> int | None:
        return (self.expected + 1) // 2 if self.kind == "tree" else None


def label_of(status: dict[str, Any]) -> str:
    """An operation's label from its status alone (which does not say what was asked)."""
    kind = str(status.get("type", "?"))
    if kind == "tree":
        expected = int((status.get("summary") or {}).get("expected", 1))
        return f"tree:{(expected + 1) // 2}"
    return kind


def summarize(values: Iterable[float]) -> dict[str, float | None]:
    """min, p50, p90, p99, p999 (nearest rank), max and mean, like the server's summary
    but exact; all None without values."""
    ordered = sorted(values)
    n = len(ordered)
    if n == 0:
        return dict.fromkeys(STAT_KEYS)
    stats: dict[str, float | None] = {"min": ordered[0]}
    for name, numerator, denominator in PERCENTILES:
        rank = max(1, -(-numerator * n // denominator))  # ceil, in integers
        stats[name] = ordered[rank - 1]
    stats["max"] = ordered[-1]
    stats["mean"] = round(math.fsum(ordered) / n, 3)
    return stats


@dataclass
class Totals:
    """The operations of a run added up; percentiles over all their answers."""

    operations: int
    expected: int
    received: int
    lost: int
    timed_out: int
    elapsed_ms: float
    rtt: dict[str, float | None]
    delay: dict[str, float | None]

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.timed_out == 0

    def to_json(self) -> dict[str, Any]:
        return {
            "operations": self.operations,
            "expected": self.expected,
            "received": self.received,
            "lost": self.lost,
            "timedOut": self.timed_out,
            "elapsedMs": round(self.elapsed_ms, 3),
            "rtt": self.rtt,
            "pingDelay": self.delay,
        }


def totals(results: Sequence[OpResult]) -> Totals:
    rtt: list[float] = []
    delay: list[float] = []
    for result in results:
        rtt.extend(result.rtt)
        delay.extend(result.delay)
    return Totals(
        operations=len(results),
        expected=sum(r.expected for r in results),
        received=sum(r.received for r in results),
        lost=sum(r.missing for r in results),
        timed_out=sum(1 for r in results if r.timed_out),
        elapsed_ms=math.fsum(float(r.summary.get("elapsedMs") or 0.0) for r in results),
        rtt=summarize(rtt),
        delay=summarize(delay),
    )


def by_depth(results: Sequence[OpResult]) -> dict[int, tuple[list[float], list[float]]]:
    """The RTTs and pingDelays of tree pokes, by depth (0 for the root)."""
    depths: dict[int, tuple[list[float], list[float]]] = {}
    for result in results:
        for d, rtt, delay in zip(result.depth, result.rtt, result.delay, strict=False):
            rtts, delays = depths.setdefault(d, ([], []))
            rtts.append(rtt)
            delays.append(delay)
    return dict(sorted(depths.items()))
