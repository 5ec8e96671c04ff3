"""MessageStorm operations: a unicast, a broadcast or a tree of pokes, and their status.

An operation owns a ``PokeTable`` with a slot per poke it may send; a poke's
id is ``"<operation id>.<slot>"``, so an answer finds its operation and slot
without a per-poke Python object. An operation is complete when every poke it
expects is answered or known lost, or when its deadline passes; then the
missing answers count as lost.

Status messages follow the contract (shared PROTOCOL.md): the seed's field
(``unicast``, ``broadcast`` or ``tree``) plus ``op``, ``type``, ``done`` and
``summary``. The per-client arrays are written by the fast path as JSON text in
slices (``status_chunks``) and embedded without re-encoding.
"""

from __future__ import annotations

import time
from array import array
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import orjson

from msstorm._fastpath import PokeFrame, PokeTable

if TYPE_CHECKING:  # the compiled table has the same API as its plain twin
    from msstorm._fastpath.rtt import PokeTable as PokeTableAPI

# Answers formatted per slice when building a status: small enough not to stall
# the event loop for other clients, large enough to cost nothing.
STATUS_SLICE = 65536


class Operation:
    """What every kind of operation shares."""

    kind = ""
    grows = False  # whether answers cause more pokes (trees)

    def __init__(self, op_id: str, expected: int, monitor: str | None, started: float) -> None:
        self.id = op_id
        self.expected = expected  # answers that complete it
        self.monitor = monitor  # sid of the monitor that started it
        self.started = started  # monotonic seconds
        self.ended: float | None = None
        self.timed_out = False
        self.table: PokeTableAPI = PokeTable(expected)
        self.targets: list[str] = []  # the sid each poke went to, by slot
        self.timer: Any = None  # the loop's handle for the deadline

    @property
    def done(self) -> bool:
        return self.ended is not None

    @property
    def lost(self) -> int:
        """Answers known to be missing (all of the missing ones once done)."""
        if self.done:
            return self.expected - self.table.received
        return self.table.unsent

    def complete(self) -> bool:
        return self.table.received + self.lost >= self.expected

    def finish(self, now: float, timed_out: bool = False) -> None:
        self.ended = now
        self.timed_out = timed_out

    def sent_to(self, index: int) -> str | None:
        """The sid poke ``index`` went to, or None for a slot never used."""
        return self.targets[index] if 0 <= index < len(self.targets) else None

    # -- status ---------------------------------------------------------------

    def summary(self, now: float) -> dict[str, Any]:
        table = self.table
        end = self.ended if self.ended is not None else now
        return {
            "expected": self.expected,
            "received": table.received,
            "lost": self.lost,
            "elapsedMs": round((end - self.started) * 1000.0, 3),
            "rtt": table.rtt.summary(),
            "pingDelay": table.delay.summary(),
        }

    def status_head(self, now: float) -> dict[str, Any]:
        head: dict[str, Any] = {"op": self.id, "type": self.kind, "done": self.done}
        if self.timed_out:
            head["timedOut"] = True
        head["summary"] = self.summary(now)
        return head

    def status_chunks(self) -> Iterator[bytes]:
        """The per-client array's JSON text, a slice at a time (without brackets)."""
        return iter(())

    def status(self, now: float, detail: bool = True) -> dict[str, Any]:
        """The whole status at once (see ``status_chunks`` for big operations)."""
        head = self.status_head(now)
        if detail:
            head[self.kind] = self.detail_value(b",".join(self.status_chunks()))
        return head

    def detail_value(self, joined: bytes) -> Any:
        return orjson.Fragment(b"[" + joined + b"]")


class Unicast(Operation):
    """One poke to one client."""

    kind = "unicast"

    def __init__(self, op_id: str, target: str, monitor: str | None, started: float) -> None:
        super().__init__(op_id, 1, monitor, started)
        self.targets = [target]
        self.frame = PokeFrame(op_id)

    def detail_value(self, joined: bytes) -> Any:
        table = self.table
        if not table.received:
            return None
        return {
            "clientId": self.targets[0],
            "pingDelay": round(table.answered_delay(0), 3),
            "rtt": round(table.answered_rtt(0), 3),
        }


class Broadcast(Operation):
    """One poke to every client connected when it started."""

    kind = "broadcast"

    def __init__(self, op_id: str, targets: list[str], monitor: str | None, started: float):
        super().__init__(op_id, len(targets), monitor, started)
        self.targets = targets
        self.frame = PokeFrame(op_id)

    def status_chunks(self) -> Iterator[bytes]:
        received = self.table.received
        for start in range(0, received, STATUS_SLICE):
            yield self.table.answers_json(start, start + STATUS_SLICE)


class Tree(Operation):
    """A random tree of pokes: each answer to a poke with ``treeLeaves = L >= 2``
    sends two pokes with ``L/2`` to two random clients; done when the ``L`` leaves
    (and so all ``2L - 1`` pokes) have answered."""

    kind = "tree"
    grows = True

    def __init__(self, op_id: str, leaves: int, root: str, monitor: str | None, started: float):
        super().__init__(op_id, 2 * leaves - 1, monitor, started)
        self.leaves = leaves
        self.targets = [root]
        self.parents = array("i", [-1])  # slot of the poke whose answer caused each poke
        self.depths = bytearray(1)
        self.unreachable = 0  # pokes never to be sent: the subtrees of unsent pokes

    @property
    def lost(self) -> int:
        if self.done:
            return self.expected - self.table.received
        return self.unreachable

    def leaves_below(self, index: int) -> int:
        """The ``treeLeaves`` of poke ``index``."""
        return self.leaves >> self.depths[index]

    def root_frame(self) -> PokeFrame:
        return PokeFrame(self.id, self.leaves, None)

    def children_frame(self, parent: int) -> PokeFrame:
        return PokeFrame(self.id, self.leaves_below(parent) // 2, self.targets[parent])

    def grow(self, parent: int, children: list[str]) -> int:
        """Add the pokes caused by ``parent``'s answer, sent to ``children``; the
        slot of the first."""
        first = len(self.targets)
        depth = self.depths[parent] + 1
        for sid in children:
            self.targets.append(sid)
            self.parents.append(parent)
            self.depths.append(depth)
        return first

    def lose_subtree(self, index: int) -> None:
        """Poke ``index`` was not sent: neither it nor anything below it will be."""
        self.unreachable += 2 * self.leaves_below(index) - 1

    def status_chunks(self) -> Iterator[bytes]:
        received = self.table.received
        for start in range(0, received, STATUS_SLICE):
            yield self.table.answers_json(
                start, start + STATUS_SLICE, self.targets, self.parents, self.depths
            )


def monotonic() -> float:
    """The clock of send and answer times (the fast path reads CLOCK_MONOTONIC too)."""
    return time.monotonic()
