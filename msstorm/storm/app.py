"""The MessageStorm application, built on the engine's public API.

Clients join namespace ``/`` and answer every ``poke`` with a ``pokeBack``;
monitors join ``/monitor`` with the token and drive operations with
``initiatePoke`` and ``statusRequest``. The contract is shared/PROTOCOL.md.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import secrets
import time
from collections import Counter, OrderedDict
from typing import Any, TypeGuard

from msstorm._fastpath import PokeBackTap, PokeFrame, send_pokes
from msstorm.protocol.errors import ConnectionRefused
from msstorm.server import Server

from .operations import Broadcast, Operation, Tree, Unicast

log = logging.getLogger("msstorm.storm")

MONITOR = "/monitor"
CLIENTS = "/"
# Pokes a broadcast sends before letting the loop serve others (answers, heartbeats).
FANOUT_SLICE = 2048
# Finished operations kept for statusRequest.
KEEP_FINISHED = 64
POLICY_VIOLATION = 1008


class Refusal(Exception):
    """An ``initiatePoke`` or ``statusRequest`` that cannot be served: ``code`` and why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def answer(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}}


class Storm:
    """MessageStorm's operations on a Socket.IO ``Server``."""

    def __init__(
        self,
        server: Server,
        *,
        token: str | None = None,
        op_timeout: float = 60.0,
        max_tree_leaves: int = 1 << 20,
        max_operations: int = 64,
    ) -> None:
        self.server = server
        self.token = token or secrets.token_urlsafe(18)
        self.op_timeout = op_timeout
        self.max_tree_leaves = max_tree_leaves
        self.max_operations = max_operations
        self.clients = server.namespace(CLIENTS)
        self.running: dict[str, Operation] = {}
        self.finished: OrderedDict[str, Operation] = OrderedDict()
        self._counts: Counter[str] = Counter()  # refusals, operations by outcome
        # Answers are recorded by the fast path (it also serves the generic handler).
        self.tap = PokeBackTap(self.running, self._answered)
        server.tap = self.tap
        self._prefix = secrets.token_hex(2) + "-"
        self._sequence = 0
        self._tasks: set[asyncio.Task[None]] = set()

        server.on("pokeBack", self.poke_back, namespace=CLIENTS)
        server.on("connect", self.monitor_connect, namespace=MONITOR)
        server.on("initiatePoke", self.initiate_poke, namespace=MONITOR)
        server.on("statusRequest", self.status_request, namespace=MONITOR, takes_ack=True)

    @property
    def counts(self) -> Counter[str]:
        """What happened: answers, refusals, operations by outcome."""
        counts = Counter(self._counts)
        counts["answers"] += self.tap.answers
        counts["answers unknown or late"] += self.tap.unknown
        counts["answers for another client's poke"] += self.tap.foreign
        return +counts  # without the zeros

    # -- monitors -------------------------------------------------------------

    def monitor_connect(self, sid: str, auth: Any) -> None:
        token = auth.get("token") if isinstance(auth, dict) else None
        if not isinstance(token, str) or not hmac.compare_digest(
            token.encode(), self.token.encode()
        ):
            self._counts["monitor refused"] += 1
            raise ConnectionRefused("invalid monitor token")

    def initiate_poke(self, sid: str, *args: Any) -> dict[str, Any]:
        try:
            op = self._start(sid, *args)
        except Refusal as refusal:
            self._counts[f"initiatePoke refused: {refusal.code}"] += 1
            return refusal.answer()
        return {"op": op.id, "expected": op.expected}

    def status_request(self, sid: str, *args: Any, ack: Any = None) -> None:
        """Answered by ack when the monitor asked for one, else with a ``status`` event."""
        status = self.status(*args)
        if ack is not None:
            ack(status)
        else:
            self.server.emit("status", status, to=sid, namespace=MONITOR)

    def status(self, *args: Any) -> dict[str, Any]:
        """What a ``statusRequest`` with these arguments is answered with."""
        request = args[0] if args else {}
        try:
            if len(args) > 1 or not isinstance(request, dict):
                raise Refusal("bad-request", "statusRequest takes no argument or one object")
            detail = request.get("detail", "full") != "summary"
            op_id = request.get("op")
            if op_id is not None and not isinstance(op_id, str):
                raise Refusal("bad-request", "op must be an operation id (a string)")
            if op_id is not None:
                op = self.running.get(op_id) or self.finished.get(op_id)
                if op is None:
                    raise Refusal("unknown-operation", f"no operation {op_id!r}")
                status = op.status(time.monotonic(), detail)
            else:
                status = self.overview(detail)
        except Refusal as refusal:
            status = refusal.answer()
        return status

    def overview(self, detail: bool) -> dict[str, Any]:
        now = time.monotonic()
        return {
            "clients": len(self.clients.members),
            "operations": [op.status(now, detail) for op in self.running.values()],
            "finished": list(self.finished),
            "counts": dict(self.counts),
        }

    # -- starting operations --------------------------------------------------

    def _start(self, monitor: str, *args: Any) -> Operation:
        if len(args) != 1 or not isinstance(args[0], dict):
            raise Refusal("bad-request", "initiatePoke takes one object")
        request = args[0]
        kind = request.get("type")
        if kind not in ("unicast", "broadcast", "tree"):
            raise Refusal("bad-type", "type must be 'unicast', 'broadcast' or 'tree'")
        if len(self.running) >= self.max_operations:
            raise Refusal("busy", f"{self.max_operations} operations are running already")
        if kind == "tree":
            leaves = request.get("treeLeaves")
            if type(leaves) is not int or leaves < 1 or leaves & (leaves - 1):
                raise Refusal("bad-tree-leaves", "treeLeaves must be a power of two (1, 2, 4...)")
            if leaves > self.max_tree_leaves:
                raise Refusal("tree-too-large", f"treeLeaves is limited to {self.max_tree_leaves}")
        if not self.clients.members:
            raise Refusal("no-clients", "no client is connected")
        now = time.monotonic()
        op_id = self._next_id()
        op: Operation
        if kind == "unicast":
            dest = request.get("destId")
            if dest is None:
                dest = self.clients.pick(1)[0]
            elif not isinstance(dest, str):
                raise Refusal("bad-dest", "destId must be a client's sid")
            elif dest not in self.clients.sockets:
                raise Refusal("unknown-client", f"no client {dest!r} is connected")
            op = Unicast(op_id, dest, monitor, now)
            self._begin(op)
            self._send(op, op.frame, [dest], 0)
        elif kind == "broadcast":
            sockets = self.clients.sockets
            op = Broadcast(op_id, list(sockets), monitor, now)
            self._begin(op)
            self._spawn(self._fan_out(op, list(sockets.values())))
        else:
            tree = Tree(op_id, request["treeLeaves"], self.clients.pick(1)[0], monitor, now)
            op = tree
            self._begin(op)
            self._send_tree(tree, tree.root_frame(), [tree.targets[0]], 0)
        self._check(op)
        return op

    def _next_id(self) -> str:
        self._sequence += 1
        return f"{self._prefix}{self._sequence:x}"

    def _begin(self, op: Operation) -> None:
        self.running[op.id] = op
        self._counts[f"{op.kind} started"] += 1
        loop = asyncio.get_running_loop()
        op.timer = loop.call_later(self.op_timeout, self._time_out, op)

    def _send(self, op: Operation, frame: PokeFrame, sids: list[str], first: int) -> None:
        sockets = self.clients.sockets
        conns = []
        for i, sid in enumerate(sids):
            conn = sockets.get(sid)
            if conn is None:
                op.table.mark_unsent(first + i)
            else:
                conns.append(conn)
        # All targets are live here (picked from the members just now), except a
        # destId that left between validation and send, handled above.
        if len(conns) == len(sids):
            send_pokes(frame, conns, 0, len(conns), first, op.table)

    def _send_tree(self, tree: Tree, frame: PokeFrame, sids: list[str], first: int) -> None:
        self._send(tree, frame, sids, first)
        for index in range(first, first + len(sids)):
            if not tree.table.is_pending(index):
                tree.lose_subtree(index)

    async def _fan_out(self, op: Broadcast, conns: list[Any]) -> None:
        table = op.table
        for start in range(0, len(conns), FANOUT_SLICE):
            if op.done:
                return
            send_pokes(op.frame, conns, start, min(start + FANOUT_SLICE, len(conns)), 0, table)
            await asyncio.sleep(0)
        self._check(op)

    # -- answers --------------------------------------------------------------

    def poke_back(self, sid: str, *args: Any) -> None:
        """The generic path of answers: what the fast path did not take (see PokeBackTap)."""
        now = time.monotonic()
        answer = args[0] if len(args) == 1 else None
        if type(answer) is not dict:
            return self._broken(sid, "pokeBack takes one object")
        poke_id = answer.get("id")
        delay = answer.get("delay")
        leaves = answer.get("treeLeaves", -1)
        if not isinstance(poke_id, str) or not _is_number(delay):
            return self._broken(sid, "pokeBack needs a string id and a numeric delay")
        if not _is_number(answer.get("serverTs")):
            return self._broken(sid, "pokeBack needs a numeric serverTs")
        if type(leaves) is not int:
            return self._broken(sid, "treeLeaves must be an integer")
        op_id, _, slot = poke_id.rpartition(".")
        try:
            index = int(slot, 16)
        except ValueError:
            index = -1
        if index < 0 or len(slot) != 8:
            self.tap.unknown += 1
            return None
        self.tap.record(sid, op_id, index, float(delay), leaves, now)
        return None

    def _answered(self, op: Operation, index: int, tree_leaves: int) -> None:
        """After the tap recorded an answer to a tree poke, or the last one of an operation."""
        if isinstance(op, Tree):
            self._grow(op, index, tree_leaves)
        self._check(op)

    def _grow(self, tree: Tree, index: int, tree_leaves: int) -> None:
        leaves = tree.leaves_below(index)
        if tree_leaves != (leaves // 2 if leaves >= 2 else -1):
            self._counts["answers with a wrong treeLeaves"] += 1  # the server's count rules
        if leaves < 2:
            return
        children = self.clients.pick(2)
        if not children:  # every client has gone: the two subtrees are lost now
            tree.unreachable += 2 * (leaves - 1)
            return
        first = tree.grow(index, children)
        self._send_tree(tree, tree.children_frame(index), children, first)

    def _broken(self, sid: str, why: str) -> None:
        self._counts["malformed pokeBacks"] += 1
        log.debug("closing client %s: %s", sid, why)
        self.server.close(sid, reason="parse error", code=POLICY_VIOLATION)

    # -- ending operations ----------------------------------------------------

    def _check(self, op: Operation) -> None:
        if not op.done and op.complete():
            self._end(op, timed_out=False)

    def _time_out(self, op: Operation) -> None:
        if not op.done:
            self._end(op, timed_out=True)

    def _end(self, op: Operation, timed_out: bool) -> None:
        op.finish(time.monotonic(), timed_out)
        if op.timer is not None:
            op.timer.cancel()
        self.running.pop(op.id, None)
        self.finished[op.id] = op
        while len(self.finished) > KEEP_FINISHED:
            self.finished.popitem(last=False)
        self._counts[f"{op.kind} {'timed out' if timed_out else 'completed'}"] += 1
        if op.monitor is not None:
            self._spawn(self._push_status(op))

    async def _push_status(self, op: Operation) -> None:
        """Send the final status to the monitor that started ``op``, building the
        per-client array a slice per loop turn."""
        chunks = []
        for chunk in op.status_chunks():
            chunks.append(chunk)
            await asyncio.sleep(0)
        status = op.status_head(time.monotonic())
        status[op.kind] = op.detail_value(b",".join(chunks))
        self.server.emit("status", status, to=op.monitor, namespace=MONITOR)

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _is_number(value: Any) -> TypeGuard[int | float]:
    return type(value) is int or type(value) is float
