"""The pokeBack fast path: read an answer straight off its frame and count it.

Answers are the server's hottest input: one per recipient of every broadcast.
A ``PokeBackTap`` sees each text frame of namespace ``/`` before the generic
decoder does: a WebSocket frame as picows received it (``take``: compiled, the
scanner reads picows's buffer, nothing is copied), a frame of a long-polling
payload or of fragments as bytes (``feed``). A frame that is exactly
``42["pokeBack",{...}]`` with the contract's fields (``id``, ``delay``,
``serverTs``, ``treeLeaves``, ``treeId``) is parsed without building Python
objects for it and recorded by ``record``; anything else returns False and
takes the generic path, which validates it, refuses it if broken, and ends in
the same ``record``.

``record`` does the bookkeeping of one answer: find the operation, check the
poke went to this client, time it in the operation's table, and call the
application back only when there is something to do (a tree grows, an
operation completes). Counters of what it refused are kept here.

This is the plain-Python twin of ``pokeback_c.pyx``.
"""

from __future__ import annotations

import math
import time
from typing import Any, TypeGuard

import orjson

PREFIX = b'42["pokeBack",'
FIELDS = frozenset(("id", "delay", "serverTs", "treeLeaves", "treeId"))

# What ``record`` made of an answer.
RECORDED = 0
UNKNOWN = 1  # no running operation has that poke waiting (late, finished, made up)
FOREIGN = 2  # the poke went to another client


class PokeBackTap:
    """Answers to the pokes of ``running`` operations (shared with the application).

    ``after`` is called as ``after(op, index, tree_leaves)`` after an answer to a
    tree poke is recorded, or when an answer completes a non-tree operation.
    """

    __slots__ = ("after", "answers", "foreign", "running", "unknown")

    def __init__(self, running: dict[str, Any], after: Any) -> None:
        self.running = running
        self.after = after
        self.answers = 0
        self.unknown = 0
        self.foreign = 0

    def feed(self, conn: Any, frame: bytes) -> bool:
        """Take the frame if it is a well-formed pokeBack of a joined client."""
        if not frame.startswith(PREFIX):
            return False
        now = time.monotonic()
        sid = conn.session.namespaces.get("/")
        if sid is None:
            return False
        try:
            event = orjson.loads(memoryview(frame)[2:])
        except orjson.JSONDecodeError:
            return False
        if len(event) != 2 or type(event[1]) is not dict:
            return False
        answer = event[1]
        poke_id = answer.get("id")
        delay = answer.get("delay")
        leaves = answer.get("treeLeaves", -1)
        tree_id = answer.get("treeId")
        if (
            not FIELDS.issuperset(answer)
            or type(poke_id) is not str
            or not _is_number(delay)
            or not _is_number(answer.get("serverTs"))
            or type(leaves) is not int
            or not -(10**16) < leaves < 10**16
            or (tree_id is not None and type(tree_id) is not str)
            or b"\\" in frame  # escapes: left to the generic path, as the compiled twin does
        ):
            return False
        op_id, _, slot = poke_id.rpartition(".")
        if len(slot) != 8 or not _is_hex(slot):
            self.unknown += 1
            return True
        self.record(sid, op_id, int(slot, 16), float(delay), leaves, now)
        return True

    def take(self, conn: Any, frame: Any) -> bool:
        """``feed`` for a whole text frame of picows (the compiled twin reads it in place)."""
        return self.feed(conn, frame.get_payload_as_bytes())

    def record(
        self, sid: str, op_id: str, index: int, delay: float, tree_leaves: int, now: float
    ) -> int:
        """Count one answer; RECORDED, UNKNOWN or FOREIGN."""
        op = self.running.get(op_id)
        if op is None:
            self.unknown += 1
            return UNKNOWN
        targets = op.targets
        if not 0 <= index < len(targets) or targets[index] != sid:
            self.foreign += 1
            return FOREIGN
        table = op.table
        if table.answer(index, now, delay) < 0:
            self.unknown += 1
            return UNKNOWN
        self.answers += 1
        if op.grows or table.received + table.unsent >= op.expected:
            self.after(op, index, tree_leaves)
        return RECORDED


def _is_number(value: Any) -> TypeGuard[int | float]:
    return (type(value) is int or type(value) is float) and math.isfinite(value)


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)
