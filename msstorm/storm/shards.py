"""A worker's part of an operation: the pokes it sent, and their answers.

An operation spans the cluster: its origin (the worker its monitor talks to)
counts, and each worker holding recipients keeps a ``Shard`` of it. A poke's
id is ``"<shard key>.<slot>"`` with the shard key ``"<op id>@<worker tag>"``,
so an answer, which comes back on the connection its poke went out on, finds
its shard and slot where it arrives; the pokeBack fast path records it there.
The shard reports its counts to the origin, and hands over its histograms and
its per-client answers (already written as JSON) when the origin collects.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import orjson

from msstorm._fastpath import PokeFrame, PokeTable

if TYPE_CHECKING:  # the compiled table has the same API as its plain twin
    from msstorm._fastpath.rtt import PokeTable as PokeTableAPI

# Answers written as JSON per slice: a slice per loop turn keeps other clients served.
ANSWERS_SLICE = 65536
TREE_START = 1024  # slots a tree shard starts with; it doubles when full


class Shard:
    """This worker's pokes of operation ``op_id``, started by worker ``origin``."""

    grows = False  # whether an answer causes more pokes (trees)

    def __init__(self, op_id: str, origin: str, kind: str, tag: str, capacity: int) -> None:
        self.op_id = op_id
        self.origin = origin
        self.kind = kind
        self.key = f"{op_id}@{tag}"
        self.expected = capacity  # answers that complete this shard (not for trees)
        self.table: PokeTableAPI = PokeTable(capacity)
        self.targets: list[str] = []  # the sid each slot's poke went to
        self.reported: tuple[int, int, int] = (0, 0, 0)
        self.forsaken = 0  # pokes sent to clients that left before answering

    @property
    def lost(self) -> int:
        """Pokes of this shard that will never be answered, known so far."""
        return self.table.unsent + self.forsaken

    def forsake(self, departed: set[str]) -> None:
        """Count as lost the pokes still waiting on clients that have left (an answer
        comes back on its poke's connection, and a sid is never used again)."""
        table = self.table
        for index, sid in enumerate(self.targets):
            if sid in departed and table.is_pending(index):
                self._forsake(index)

    def _forsake(self, index: int) -> None:
        self.forsaken += 1

    def counts(self) -> tuple[int, int, int]:
        """(pokes sent, answers received, lost) as the origin counts them."""
        return self.table.sent, self.table.received, self.lost

    def frame(self) -> PokeFrame:
        return PokeFrame(self.key)

    def answers(self) -> Iterator[bytes]:
        """The per-client array's JSON text, a slice at a time (no brackets)."""
        received = self.table.received
        for start in range(0, received, ANSWERS_SLICE):
            yield self.table.answers_json(start, start + ANSWERS_SLICE)


class UnicastShard(Shard):
    def __init__(self, op_id: str, origin: str, tag: str) -> None:
        super().__init__(op_id, origin, "unicast", tag, 1)

    def answers(self) -> Iterator[bytes]:
        table = self.table
        if table.received:
            yield orjson.dumps(
                {
                    "clientId": self.targets[table.answered_index(0)],
                    "pingDelay": round(table.answered_delay(0), 3),
                    "rtt": round(table.answered_rtt(0), 3),
                }
            )


class BroadcastShard(Shard):
    def __init__(self, op_id: str, origin: str, tag: str, targets: list[str]) -> None:
        super().__init__(op_id, origin, "broadcast", tag, len(targets))
        self.targets = targets


class TreeShard(Shard):
    """A tree's pokes on this worker: each slot knows its parent's sid and its depth,
    so this worker can write its entries of the tree's status by itself. The slots are
    booked by ``poke_tree`` (``msstorm._fastpath``), which sends their pokes."""

    grows = True

    def __init__(self, op_id: str, origin: str, tag: str, leaves: int) -> None:
        super().__init__(op_id, origin, "tree", tag, min(TREE_START, 2 * leaves - 1))
        self.leaves = leaves  # the root's treeLeaves
        self.parents: list[str | None] = []  # sid of the client whose answer caused the poke
        self.depths = bytearray()
        self.unreachable = 0  # pokes never to be sent: subtrees of pokes that were not
        self.frames: list[PokeFrame | None] = []  # one per depth, reparented (poke_tree)

    @property
    def lost(self) -> int:
        return self.unreachable

    def _forsake(self, index: int) -> None:
        self.unreachable += self.subtree(self.depths[index])  # it and all below it

    def leaves_at(self, depth: int) -> int:
        return self.leaves >> depth

    def subtree(self, depth: int) -> int:
        """Pokes in a subtree whose root is at ``depth``."""
        return 2 * self.leaves_at(depth) - 1

    def answers(self) -> Iterator[bytes]:
        received = self.table.received
        for start in range(0, received, ANSWERS_SLICE):
            yield self.table.answers_json(
                start, start + ANSWERS_SLICE, self.targets, self.parents, self.depths
            )
