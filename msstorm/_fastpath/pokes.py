"""Poke frames and the fan-out loop: encode once, send many.

A poke's id names its operation and its slot in the operation's
``PokeTable``: ``"<op>.<index as 8 hex digits>"``; its ``ts`` is the server's
wall clock in milliseconds, written with a fixed width (17 characters, until
the year 2286). So every poke of a broadcast (or the two children of a tree
node) has the same bytes but for two fixed-width fields: a ``PokeFrame`` is
that text once, and ``send_pokes`` patches the two fields in place for each
recipient and hands the same buffer to the socket.

``grow_tree`` is the tree rule on a worker that holds every client: the answer
to one poke makes two pokes to clients drawn at random, booked and sent in one
call, once per tree answer. The draws come from a small generator of their own
(xorshift64*, ``below``), which the compiled twin runs in C; a tree keeps one
frame per depth (``tree.frames``) and patches the parent's id into it
(``reparent``) rather than writing a new frame for every answer.

This is the plain-Python twin of ``pokes_c.pyx``: same frames, same table
entries, the same draws from the same seed; the compiled loop makes no Python
call per recipient.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from typing import Any

INDEX_WIDTH = 8
TS_WIDTH = 17
MAX_POKES = 16**INDEX_WIDTH
MAX_TS_MS = 1e13 - 0.0005  # 13 digits before the point
_MASK = (1 << 64) - 1
_MULTIPLIER = 0x2545F4914F6CDD1D
_UNIT = 1.0 / 9007199254740992.0  # 2**-53
_state = int.from_bytes(os.urandom(8), "little") | 1


def seed(value: int) -> None:
    """Start the draws over from ``value`` (both twins then draw alike)."""
    global _state
    _state = (value & _MASK) or 0x9E3779B97F4A7C15  # xorshift never leaves 0


def below(n: int) -> int:
    """A number drawn uniformly from ``0..n-1`` (``n >= 1``)."""
    global _state
    x = _state
    x ^= x >> 12
    x ^= (x << 25) & _MASK
    x ^= x >> 27
    _state = x
    drawn = int((((x * _MULTIPLIER) & _MASK) >> 11) * _UNIT * n)
    return drawn if drawn < n else n - 1


class PokeFrame:
    """The text of a poke, with its index and ts left to fill in.

    ``op_id`` starts every poke id; a tree poke also names its tree (``tree_id``,
    the same unless given) and the client whose answer caused it (``parent_id``).
    """

    __slots__ = ("_head", "_leaves", "_middle", "_tail", "_tree")

    def __init__(
        self,
        op_id: str,
        tree_leaves: int = 0,
        parent_id: str | None = None,
        tree_id: str | None = None,
    ) -> None:
        if "." in op_id or '"' in op_id or "\\" in op_id:
            raise ValueError(f"unusable operation id {op_id!r}")
        self._head = f'42["poke",{{"id":"{op_id}.'
        self._middle = '","ts":'
        self._leaves = tree_leaves
        self._tree = op_id if tree_id is None else tree_id
        self.reparent(parent_id)

    def reparent(self, parent_id: str | None) -> None:
        """Make this the frame of the pokes ``parent_id``'s answer causes (a tree's)."""
        tail = ""
        if self._leaves:
            parent = "-1" if parent_id is None else f'"{parent_id}"'
            tail = f',"treeLeaves":{self._leaves},"treeId":"{self._tree}","parentId":{parent}'
        self._tail = tail + "}]"

    def render(self, index: int, wall_ms: float) -> bytes:
        """The frame for poke ``index`` sent at ``wall_ms`` (UNIX ms)."""
        if not 0 <= index < MAX_POKES:
            raise ValueError(f"poke index out of range: {index}")
        if not 0.0 <= wall_ms < MAX_TS_MS:
            raise ValueError(f"wall clock out of range: {wall_ms}")
        # Rounded to the microsecond as the compiled twin does it, then written
        # space-padded: JSON allows blanks before a number, not leading zeros.
        micros = math.floor(wall_ms * 1000.0 + 0.5)
        ts = f"{micros // 1000}.{micros % 1000:03d}".rjust(TS_WIDTH)
        return f"{self._head}{index:0{INDEX_WIDTH}x}{self._middle}{ts}{self._tail}".encode()


def send_pokes(
    frame: PokeFrame,
    conns: Sequence[Any],
    start: int,
    stop: int,
    first_index: int,
    table: Any,
) -> int:
    """Send poke ``first_index + i`` to ``conns[i]`` for ``i`` in ``start..stop``.

    Each send is timed in ``table``; a connection that has closed gets its poke
    marked unsent instead. Returns the number sent. ``start..stop`` lies within
    ``conns`` (an IndexError otherwise: no index from the end).
    """
    if start < 0 or stop > len(conns):
        raise IndexError(f"pokes {start}..{stop} of {len(conns)} connections")
    sent = 0
    for i in range(start, stop):
        conn = conns[i]
        index = first_index + i
        if conn.closed or conn.paused:  # gone, or not reading: the poke is lost
            table.mark_unsent(index)
            continue
        data = frame.render(index, time.time() * 1000.0)
        table.mark_sent(index, time.monotonic())
        conn.send_text(data)
        sent += 1
    return sent


def grow_tree(
    tree: Any, index: int, tree_leaves: int, members: Sequence[str], sockets: dict[str, Any]
) -> bool:
    """The answer to poke ``index`` of ``tree`` makes two pokes, one level down, to
    clients drawn from ``members`` (distinct when there are two; ``sockets`` maps
    them to their connections), as ``poke_tree`` sends them.

    ``tree_leaves`` is what the answer said (-1: nothing); returns whether that was
    half its poke's ``treeLeaves``, as the contract asks (a leaf's answer says nothing).
    """
    if not 0 <= index < min(len(tree.depths), len(tree.targets)):
        raise IndexError(f"no poke {index} in the tree")
    depth = tree.depths[index]
    leaves = tree.leaves >> depth
    right = tree_leaves == (leaves >> 1 if leaves >= 2 else -1)
    if leaves < 2:
        return right
    n = len(members)
    drawn: list[str] = []
    if n:
        first = below(n)
        second = first
        if n >= 2:
            second = below(n - 1)
            if second >= first:
                second += 1
        drawn = [members[first], members[second]]
    poke_tree(tree, tree.targets[index], depth + 1, drawn, 2, sockets)
    return right


def poke_tree(
    tree: Any, parent: Any, depth: int, sids: Sequence[str], count: int, sockets: dict[str, Any]
) -> None:
    """``count`` pokes at ``depth`` of ``tree``, caused by ``parent``'s answer (None for
    the root), to the clients ``sids`` (``sockets`` maps them to their connections):
    booked in ``tree``, timed in its table, sent. A poke that cannot be sent, or has no
    client drawn for it, loses its whole subtree (``tree.unreachable``).

    ``tree`` is a tree's shard: ``key``, ``op_id``, ``leaves`` (the root's),
    ``targets``, ``parents``, ``depths`` (a bytearray), ``table``, ``unreachable``,
    ``frames`` (a list: the frame of each depth so far, reparented as it is reused).
    """
    leaves = tree.leaves >> depth
    slot = len(tree.targets)
    table = tree.table
    conns = []
    for sid in sids:
        conn = sockets.get(sid)
        if conn is None:
            continue
        if len(tree.targets) >= table.capacity:
            table.grow(2 * table.capacity)
        tree.targets.append(sid)
        tree.parents.append(parent)
        tree.depths.append(depth)
        conns.append(conn)
    sent = 0
    if conns:
        frames = tree.frames
        while len(frames) <= depth:
            frames.append(None)
        frame = frames[depth]
        if frame is None:
            frame = frames[depth] = PokeFrame(tree.key, leaves, parent, tree.op_id)
        else:
            frame.reparent(parent)
        sent = send_pokes(frame, conns, 0, len(conns), slot, table)
    tree.unreachable += (count - sent) * (2 * leaves - 1)
