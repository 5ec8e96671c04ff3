"""The MessageStorm application, built on the engine's public API, over a cluster bus.

Clients join namespace ``/`` and answer every ``poke`` with a ``pokeBack``;
monitors join ``/monitor`` with the token and drive operations with
``initiatePoke`` and ``statusRequest``. The contract is PROTOCOL.md.

Every worker runs one ``Storm``; a single process is a cluster of one (its bus
is a ``LocalBus``), so the same code serves both. How an operation travels:

- The worker the monitor talks to is its origin (``operations.Operation``).
- A broadcast is one bus message per worker; each pokes its own clients with the
  compiled fan-out and tells the origin how many (the ``expected`` of the ack).
- A unicast goes to the worker that owns the destination sid (a sid starts with
  its worker's tag), or to a worker drawn by client count for a random one.
- A tree's root goes to a worker drawn the same way; each answer to a poke with
  ``treeLeaves >= 2`` draws two clients of the cluster, and the requests for
  other workers are sent in one message per destination per loop turn.
- Answers are recorded where they arrive (``shards.Shard``, by the pokeBack fast
  path); shards report counts to the origin, on every tree answer or completed
  shard at the end of the loop turn, and every 100 ms otherwise. When the origin
  sees the operation complete, or its deadline pass, it collects the shards'
  histograms and per-client answers and pushes the status to its monitor.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import secrets
import time
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeGuard

import orjson

from msstorm._fastpath import Histogram, PokeBackTap, grow_tree, poke_tree, send_pokes
from msstorm.cluster.bus import Bus, LocalBus
from msstorm.cluster.membership import BEAT_EVERY, Membership, load_per_core
from msstorm.protocol.errors import ConnectionRefused
from msstorm.server import Server, ids
from msstorm.server.metrics import Family

from .figures import WorkerFigures
from .metrics import worker_families
from .operations import Collected, Operation
from .shards import BroadcastShard, Shard, TreeShard, UnicastShard

log = logging.getLogger("msstorm.storm")

MONITOR = "/monitor"
CLIENTS = "/"
# Pokes a broadcast sends before letting the loop serve others (answers, heartbeats).
FANOUT_SLICE = 2048
# Finished operations kept for statusRequest.
KEEP_FINISHED = 64
POLICY_VIOLATION = 1008
PROGRESS_EVERY = 0.1
# How long the origin waits for the workers' answers on the bus.
ASK_TIMEOUT = 3.0


class Refusal(Exception):
    """An ``initiatePoke`` or ``statusRequest`` that cannot be served: ``code`` and why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def answer(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}}


class Storm:
    """MessageStorm's operations on a Socket.IO ``Server``, this worker's share of them."""

    def __init__(
        self,
        server: Server,
        *,
        token: str | None = None,
        op_timeout: float = 60.0,
        max_tree_leaves: int = 1 << 20,
        max_operations: int = 64,
        bus: Bus | None = None,
    ) -> None:
        self.server = server
        self.token = token or secrets.token_urlsafe(18)
        self.op_timeout = op_timeout
        self.max_tree_leaves = max_tree_leaves
        self.max_operations = max_operations
        self.bus = bus if bus is not None else LocalBus(ids.tag())
        self.tag = self.bus.tag
        self.membership = Membership(self.tag)
        self.clients = server.namespace(CLIENTS)
        self.running: dict[str, Operation] = {}  # started here
        self.finished: OrderedDict[str, Operation] = OrderedDict()
        self.shards: dict[str, Shard] = {}  # this worker's parts, by shard key
        self._ended: OrderedDict[str, None] = OrderedDict()  # op ids whose shards are gone
        self._counts: Counter[str] = Counter()
        # Answers are recorded by the fast path (it also serves the generic handler).
        self.tap = PokeBackTap(self.shards, self._answered)
        server.tap = self.tap
        self._sequence = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._asked: dict[int, asyncio.Future[tuple[dict[str, Any], bytes]]] = {}
        self._next_question = 0
        self._dirty: set[Shard] = set()
        self._departed: set[str] = set()  # clients gone since the last tick, while pokes ran
        self._spawns: dict[str, list[list[Any]]] = {}
        self._flush_due = False
        self._timers: list[asyncio.TimerHandle] = []
        self.listener: Any = None  # the listener serving self.server, once there is one
        self.draining = False  # shutting down: no new operation
        self._last_beat = time.monotonic()
        self._pid = os.getpid()  # asked on every tree answer of a cluster: kept
        # What the shards of ended operations counted, for /metrics.
        self.rtt_history = Histogram()
        self._retired = [0, 0]  # pokes sent, answers received
        # What this worker tells the others of itself on every beat (figures.py).
        self.details: dict[str, Any] = {}
        # Bus messages of the modules that watch the storm (dashboard, admin UI), by kind.
        self.bus_handlers: dict[str, Callable[[dict[str, Any], bytes], None]] = {}
        self.figures = WorkerFigures(self)

        server.on("pokeBack", self.poke_back, namespace=CLIENTS)
        server.on("disconnect", self.client_left, namespace=CLIENTS)
        server.on("connect", self.monitor_connect, namespace=MONITOR)
        server.on("initiatePoke", self.initiate_poke, namespace=MONITOR)
        server.on("statusRequest", self.status_request, namespace=MONITOR, takes_ack=True)
        self.bus.listen(self._on_bus)

    async def start(self) -> None:
        """Join the cluster (a cluster of one needs nothing)."""
        await self.bus.start()
        self.figures.start()
        self._beat()
        self._tick()

    async def drain(self, timeout: float) -> None:
        """Refuse new operations and wait (``timeout`` at most) for the running ones to
        end, their final status pushed to their monitors."""
        self.draining = True
        deadline = time.monotonic() + timeout
        while (self.running or self._tasks) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        self.figures.close()
        for handle in self._timers:
            handle.cancel()
        for op in self.running.values():
            if op.timer is not None:
                op.timer.cancel()
        await self.bus.close()

    @property
    def counts(self) -> Counter[str]:
        """What happened here: answers, refusals, operations by outcome."""
        counts = Counter(self._counts)
        counts["answers"] += self.tap.answers
        counts["answers unknown or late"] += self.tap.unknown
        counts["answers for another client's poke"] += self.tap.foreign
        return +counts  # without the zeros

    def traffic(self) -> tuple[int, int]:
        """Pokes sent and answers received on this worker, ended operations included."""
        sent, received = self._retired
        for shard in self.shards.values():
            sent += shard.table.sent
            received += shard.table.received
        return sent, received

    async def metrics(self) -> list[Family]:
        """``/metrics``: this worker's families and every other worker's."""
        families = worker_families(self)
        others = [t for t in self.membership.alive() if t != self.tag]
        for reply in await _settle([self._ask(t, {"t": "metrics?"}) for t in others]):
            if not isinstance(reply, BaseException):
                families += [Family.from_json(f) for f in orjson.loads(reply[1])]
        return families

    def cluster(self) -> dict[str, Any]:
        """The cluster as this worker sees it (for /healthz and statusRequest)."""
        self._count_self()
        return {"worker": self.tag, **self.membership.view(), "bus": self.bus.describe()}

    # -- monitors -------------------------------------------------------------

    def monitor_connect(self, sid: str, auth: Any) -> None:
        token = auth.get("token") if isinstance(auth, dict) else None
        if not isinstance(token, str) or not hmac.compare_digest(
            token.encode(), self.token.encode()
        ):
            self._counts["monitor refused"] += 1
            raise ConnectionRefused("invalid monitor token")

    def initiate_poke(
        self, sid: str, *args: Any
    ) -> dict[str, Any] | Coroutine[Any, Any, dict[str, Any]]:
        """Acknowledged at once, unless another worker's word is needed first (then the
        server runs the returned coroutine and acknowledges with its result)."""
        try:
            started = self._start(sid, *args)
        except Refusal as refusal:
            return self._refused(refusal)
        if isinstance(started, Operation):
            return _ack_of(started)
        return self._started_later(started)

    async def _started_later(self, starting: Awaitable[Operation]) -> dict[str, Any]:
        try:
            op = await starting
        except Refusal as refusal:
            return self._refused(refusal)
        return _ack_of(op)

    async def begin(self, monitor: str | None, *args: Any) -> Operation:
        """Start an operation as ``initiatePoke`` would, for code that drives a storm in
        its own process (benchmarks); a refusal is raised."""
        started = self._start(monitor, *args)
        return started if isinstance(started, Operation) else await started

    def _refused(self, refusal: Refusal) -> dict[str, Any]:
        self._counts[f"initiatePoke refused: {refusal.code}"] += 1
        return refusal.answer()

    async def status_request(self, sid: str, *args: Any, ack: Any = None) -> None:
        """Answered by ack when the monitor asked for one, else with a ``status`` event."""
        status = await self.status(*args)
        if ack is not None:
            ack(status)
        else:
            self.server.emit("status", status, to=sid, namespace=MONITOR)

    async def status(self, *args: Any) -> Any:
        """What a ``statusRequest`` with these arguments is answered with."""
        request = args[0] if args else {}
        try:
            if len(args) > 1 or not isinstance(request, dict):
                raise Refusal("bad-request", "statusRequest takes no argument or one object")
            detail = request.get("detail", "full") != "summary"
            op_id = request.get("op")
            if op_id is not None and not isinstance(op_id, str):
                raise Refusal("bad-request", "op must be an operation id (a string)")
            if op_id is None:
                return await self.overview(detail)
            origin = op_id[: ids.TAG_SIZE]
            if origin != self.tag and origin in self.membership.peers:
                reply, blob = await self._ask(
                    origin, {"t": "status?", "op": op_id, "detail": detail}
                )
                if "error" in reply:
                    raise Refusal(reply["error"], reply["message"])
                return orjson.Fragment(blob)
            return await self._status_of(op_id, detail)
        except Refusal as refusal:
            return refusal.answer()

    async def _status_of(self, op_id: str, detail: bool) -> dict[str, Any]:
        op = self.running.get(op_id) or self.finished.get(op_id)
        if op is None:
            raise Refusal("unknown-operation", f"no operation {op_id!r}")
        if op.final is not None:  # a finished operation's status does not change
            if detail:
                return op.final
            return {key: value for key, value in op.final.items() if key != op.kind}
        parts = await self._collect(op, detail)
        return op.status(time.monotonic(), parts, detail)

    async def overview(self, detail: bool) -> dict[str, Any]:
        operations = [await self._status_of(op_id, detail) for op_id in list(self.running)]
        counts = self.counts
        others = [t for t in self.membership.alive() if t != self.tag]
        for reply in await _settle([self._ask(t, {"t": "counts?"}) for t in others]):
            if not isinstance(reply, BaseException):
                counts.update(reply[0]["counts"])  # the cluster's, not only this worker's
        return {
            "clients": self._cluster_clients(),
            "cluster": self.cluster(),
            "settings": {
                "opTimeout": self.op_timeout,
                "maxTreeLeaves": self.max_tree_leaves,
                "maxOperations": self.max_operations,
            },
            "operations": operations,
            "finished": list(self.finished),
            "counts": dict(counts),
        }

    # -- starting operations (at the origin) ----------------------------------

    def _start(self, monitor: str | None, *args: Any) -> Operation | Awaitable[Operation]:
        """The operation, started; or what starts it once other workers have answered."""
        if len(args) != 1 or not isinstance(args[0], dict):
            raise Refusal("bad-request", "initiatePoke takes one object")
        request = args[0]
        kind = request.get("type")
        if kind not in ("unicast", "broadcast", "tree"):
            raise Refusal("bad-type", "type must be 'unicast', 'broadcast' or 'tree'")
        if self.draining:
            raise Refusal("shutting-down", "the server is shutting down")
        if len(self.running) >= self.max_operations:
            raise Refusal("busy", f"{self.max_operations} operations are running already")
        leaves = request.get("treeLeaves")
        dest = request.get("destId")
        if kind == "tree":
            if type(leaves) is not int or leaves < 1 or leaves & (leaves - 1):
                raise Refusal("bad-tree-leaves", "treeLeaves must be a power of two (1, 2, 4...)")
            if leaves > self.max_tree_leaves:
                raise Refusal("tree-too-large", f"treeLeaves is limited to {self.max_tree_leaves}")
        if kind == "unicast" and dest is not None:
            if not isinstance(dest, str):
                raise Refusal("bad-dest", "destId must be a client's sid")
            if ids.owner_of(dest) != self.tag:
                return self._open_for(monitor, dest)
            if dest not in self.clients.sockets:
                raise Refusal("unknown-client", f"no client {dest!r} is connected")
        elif self._cluster_clients() == 0:
            raise Refusal("no-clients", "no client is connected")
        return self._open(monitor, kind, leaves, dest)

    async def _open_for(self, monitor: str | None, dest: str) -> Operation:
        """A unicast to another worker's client, once that worker says it has it."""
        if not await self._has_client(dest):
            raise Refusal("unknown-client", f"no client {dest!r} is connected")
        opened = self._open(monitor, "unicast", None, dest)
        assert isinstance(opened, Operation)  # a unicast needs nobody's answer
        return opened

    def _open(
        self, monitor: str | None, kind: str, leaves: Any, dest: str | None
    ) -> Operation | Awaitable[Operation]:
        self._sequence += 1
        op_id = f"{self.tag}-{self._sequence:x}"
        now = time.monotonic()
        if kind == "broadcast":
            op = Operation(op_id, kind, monitor, now, None)
        elif kind == "unicast":
            op = Operation(op_id, kind, monitor, now, 1, dest=dest)
        else:
            assert isinstance(leaves, int)
            op = Operation(op_id, kind, monitor, now, 2 * leaves - 1, leaves=leaves)
        self.running[op_id] = op
        self._counts[f"{kind} started"] += 1
        op.timer = asyncio.get_running_loop().call_later(self.op_timeout, self._time_out, op)

        if kind == "broadcast":
            others = [t for t in self.membership.alive() if t != self.tag]
            if others:
                return self._broadcast_over(op, others)
            op.planned[self.tag] = self._broadcast_here(op.id, self.tag)
            op.expected = op.planned[self.tag]
        elif kind == "unicast":
            owner = ids.owner_of(dest) if dest is not None else self._pick_workers(1)[0]
            self._request(owner, [op_id, self.tag, "unicast", 0, 0, None, dest])
        else:
            self._request(
                self._pick_workers(1)[0], [op_id, self.tag, "tree", leaves, 0, None, None]
            )
        self._flush()
        self._check(op)
        return op

    async def _broadcast_over(self, op: Operation, workers: list[str]) -> Operation:
        """A broadcast to this worker's clients and, through the bus, to ``workers``'."""
        message = {"t": "broadcast", "op": op.id, "origin": self.tag}
        answers = [self._ask(tag, dict(message)) for tag in workers]
        op.planned[self.tag] = self._broadcast_here(op.id, self.tag)
        held = {tag: self.membership.peers[tag].clients for tag in workers}
        for tag, outcome in zip(workers, await _settle(answers), strict=True):
            if isinstance(outcome, BaseException):
                # It did not answer: its clients, as its last beat counted them when
                # the monitor asked, are expected all the same, and lost.
                op.planned[tag] = held[tag]
                op.gone.add(tag)
            else:
                op.planned[tag] = outcome[0]["n"]
        op.expected = sum(op.planned.values())
        self._flush()
        self._check(op)
        return op

    async def _has_client(self, sid: str) -> bool:
        owner = ids.owner_of(sid)
        if owner == self.tag:
            return sid in self.clients.sockets
        if owner not in self.membership.peers:
            return False
        try:
            reply, _ = await self._ask(owner, {"t": "has", "sid": sid})
        except TimeoutError:
            return False
        return bool(reply.get("yes"))

    def _count_self(self) -> None:
        self.membership.update_self(len(self.clients.members), self._pid, self.details)

    def _cluster_clients(self) -> int:
        self._count_self()
        return self.membership.total()

    def _pick_workers(self, k: int) -> list[str]:
        if len(self.membership.peers) == 1:  # a cluster of one: nothing to draw
            return [self.tag] * k if self.clients.members else []
        self._count_self()
        return self.membership.pick(k)

    # -- pokes (on every worker) ----------------------------------------------

    def _broadcast_here(self, op_id: str, origin: str) -> int:
        """Poke every client of this worker for a broadcast; how many."""
        if op_id in self._ended:
            return 0  # asked too late (this worker was stalled): the broadcast is over
        sockets = self.clients.sockets
        shard = BroadcastShard(op_id, origin, self.tag, list(sockets))
        self.shards[shard.key] = shard
        conns = list(sockets.values())
        if conns:
            self._spawn(self._fan_out(shard, conns))
        else:
            self._dirty.add(shard)
            self._soon()
        return len(conns)

    async def _fan_out(self, shard: BroadcastShard, conns: list[Any]) -> None:
        frame = shard.frame()
        for start in range(0, len(conns), FANOUT_SLICE):
            if shard.key not in self.shards:
                return  # the operation ended meanwhile
            send_pokes(frame, conns, start, min(start + FANOUT_SLICE, len(conns)), 0, shard.table)
            await asyncio.sleep(0)
        self._dirty.add(shard)
        self._soon()

    def _request(self, worker: str, request: list[Any]) -> None:
        """Ask ``worker`` for a poke: [op, origin, kind, leaves, depth, parent, dest]."""
        self._spawns.setdefault(worker, []).append(request)
        self._soon()

    def _pokes_here(self, requests: list[list[Any]]) -> None:
        """Send the pokes other workers (or this one) asked for."""
        groups: dict[tuple[str, int, str | None], list[list[Any]]] = {}
        for request in requests:
            groups.setdefault((request[0], request[4], request[5]), []).append(request)
        for (op_id, depth, parent), group in groups.items():
            _, origin, kind, leaves, _, _, dest = group[0]
            if op_id in self._ended:
                continue  # too late: the operation is over
            key = f"{op_id}@{self.tag}"
            shard = self.shards.get(key)
            if kind == "unicast":
                if shard is None:
                    shard = self.shards[key] = UnicastShard(op_id, origin, self.tag)
                picked = self.clients.pick(1)
                target = dest if dest is not None else (picked[0] if picked else "")
                conn = self.clients.sockets.get(target)
                shard.targets = [target]
                if conn is None:
                    shard.table.mark_unsent(0)
                else:
                    send_pokes(shard.frame(), [conn], 0, 1, 0, shard.table)
            else:
                if shard is None:
                    shard = self.shards[key] = TreeShard(op_id, origin, self.tag, leaves)
                assert isinstance(shard, TreeShard)
                self._tree_pokes(shard, depth, parent, len(group))
            self._dirty.add(shard)
        self._soon()

    def _tree_pokes(self, shard: TreeShard, depth: int, parent: str | None, count: int) -> None:
        """``count`` pokes at ``depth`` to clients drawn here, as other workers of a
        cluster ask (a lone worker grows its trees with ``grow_tree``)."""
        clients = self.clients
        poke_tree(shard, parent, depth, clients.pick(count), count, clients.sockets)

    # -- answers ---------------------------------------------------------------

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
        key, _, slot = poke_id.rpartition(".")
        try:
            index = int(slot, 16)
        except ValueError:
            index = -1
        if index < 0 or len(slot) != 8:
            self.tap.unknown += 1
            return None
        self.tap.record(sid, key, index, float(delay), leaves, now)
        return None

    def _answered(self, shard: Shard, index: int, tree_leaves: int) -> None:
        """After the tap recorded an answer to a tree poke, or the last one of a shard."""
        if isinstance(shard, TreeShard):
            clients = self.clients
            if len(self.membership.peers) > 1:
                self._grow(shard, index, tree_leaves)
            elif not grow_tree(shard, index, tree_leaves, clients.members, clients.sockets):
                self._counts["answers with a wrong treeLeaves"] += 1  # the server's count rules
        self._dirty.add(shard)
        self._soon()

    def _grow(self, shard: TreeShard, index: int, tree_leaves: int) -> None:
        """The tree rule in a cluster: the two children may be any worker's clients."""
        depth = shard.depths[index]
        leaves = shard.leaves_at(depth)
        if tree_leaves != (leaves // 2 if leaves >= 2 else -1):
            self._counts["answers with a wrong treeLeaves"] += 1  # the server's count rules
        if leaves < 2:
            return
        parent = shard.targets[index]
        workers = self._pick_workers(2)
        if not workers:  # every client has gone: the two subtrees are lost now
            shard.unreachable += 2 * shard.subtree(depth + 1)
            return
        for worker in workers:
            self._request(
                worker, [shard.op_id, shard.origin, "tree", shard.leaves, depth + 1, parent, None]
            )

    def client_left(self, sid: str, reason: str) -> None:
        """Its pokes still waiting are lost; counted on the next tick, in one pass per
        shard for every client that left meanwhile (a swarm machine lost at once)."""
        if self.shards:
            self._departed.add(sid)

    def _broken(self, sid: str, why: str) -> None:
        self._counts["malformed pokeBacks"] += 1
        log.debug("closing client %s: %s", sid, why)
        self.server.close(sid, reason="parse error", code=POLICY_VIOLATION)

    # -- the loop turn's batch: poke requests out, progress to the origins ------

    def _soon(self) -> None:
        if not self._flush_due:
            self._flush_due = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_due = False
        spawns, self._spawns = self._spawns, {}
        for worker, requests in spawns.items():
            if worker == self.tag:
                self._pokes_here(requests)
            else:
                self.bus.send(worker, {"t": "pokes", "r": requests})
        dirty, self._dirty = self._dirty, set()
        for shard in dirty:
            self._report(shard)

    def _report(self, shard: Shard) -> None:
        counts = shard.counts()
        if counts == shard.reported:
            return
        shard.reported = counts
        if shard.origin == self.tag:
            self._progress(self.tag, shard.op_id, counts)
        else:
            self.bus.send(shard.origin, {"t": "progress", "op": shard.op_id, "c": list(counts)})

    def _tick(self) -> None:
        if self._departed:
            departed, self._departed = self._departed, set()
            for shard in self.shards.values():
                shard.forsake(departed)
        for shard in list(self.shards.values()):
            self._report(shard)
        self._timers.append(asyncio.get_running_loop().call_later(PROGRESS_EVERY, self._tick))
        del self._timers[:-2]

    def _beat(self) -> None:
        self._count_self()
        me = self.membership.peers[self.tag]
        self.bus.publish({"t": "beat", "clients": me.clients, "pid": me.pid, "d": me.details})
        now = time.monotonic()
        self.bus.echo({"t": "echo", "at": now})  # times the bus: see membership.py
        # A beat late by more than a second means this worker was the one stalled
        # (more workers than cores, a long fan-out): its peers' beats are still
        # waiting to be read, so nobody is taken for gone on this round.
        if now - self._last_beat < 2 * BEAT_EVERY:
            for tag in self.membership.expire(load_per_core(), self.bus.state == "up"):
                self._worker_gone(tag)
        self._last_beat = now
        self._timers.append(asyncio.get_running_loop().call_later(BEAT_EVERY, self._beat))
        del self._timers[:-2]

    # -- at the origin: progress, completion, deadline ---------------------------

    def _progress(self, worker: str, op_id: str, counts: tuple[int, int, int]) -> None:
        op = self.running.get(op_id)
        if op is not None:
            op.progress[worker] = counts
            self._check(op)

    def _worker_gone(self, tag: str) -> None:
        log.warning("worker %s is gone", tag)
        for op in list(self.running.values()):
            if tag in op.progress or tag in op.planned:
                op.gone.add(tag)
                self._check(op)

    def _check(self, op: Operation) -> None:
        if not op.done and op.complete():
            self._end(op, timed_out=False)

    def _time_out(self, op: Operation) -> None:
        if not op.done:
            self._end(op, timed_out=True)

    def _end(self, op: Operation, timed_out: bool) -> None:
        op.ended = time.monotonic()
        op.timed_out = timed_out
        if op.timer is not None:
            op.timer.cancel()
        self._counts[f"{op.kind} {'timed out' if timed_out else 'completed'}"] += 1
        if op.workers() <= {self.tag}:
            # Every part is here: concluded on the next turn of the loop, without a
            # task (one per operation), yet after whatever the caller sends (the ack
            # of an initiatePoke precedes its final status).
            asyncio.get_running_loop().call_soon(self._publish, op, self._collect_here(op, True))
        else:
            self._spawn(self._conclude(op))

    async def _conclude(self, op: Operation) -> None:
        """Collect the final figures from every worker, then publish them."""
        self._publish(op, await self._collect(op, detail=True))

    def _publish(self, op: Operation, parts: dict[str, Collected]) -> None:
        """Tell the monitor the final status, let the shards go."""
        status = op.status(time.monotonic(), parts, detail=True)
        op.final = status
        self.running.pop(op.id, None)
        self.finished[op.id] = op
        while len(self.finished) > KEEP_FINISHED:
            self.finished.popitem(last=False)
        if op.monitor is not None:
            self.server.emit("status", status, to=op.monitor, namespace=MONITOR)
        self.bus.publish({"t": "end", "op": op.id})
        self._drop(op.id)

    def _collect_here(self, op: Operation, detail: bool) -> dict[str, Collected]:
        """This worker's part of ``op``: it needs no trip through the bus."""
        shard = self.shards.get(f"{op.id}@{self.tag}")
        if shard is None:
            return {}
        answers = b",".join(shard.answers()) if detail else b""
        if not op.done:
            op.progress[self.tag] = shard.counts()
        return {self.tag: Collected(*shard.counts(), shard.table.rtt, shard.table.delay, answers)}

    async def _collect(self, op: Operation, detail: bool) -> dict[str, Collected]:
        workers = sorted(op.workers())
        parts = self._collect_here(op, detail) if self.tag in workers else {}
        workers = [tag for tag in workers if tag != self.tag]
        replies = await _settle(
            [self._ask(tag, {"t": "collect", "op": op.id, "detail": detail}) for tag in workers]
        )
        for tag, reply in zip(workers, replies, strict=True):
            if isinstance(reply, BaseException):
                continue  # gone or silent: its last counts stand
            message, blob = reply
            if "sizes" not in message:
                continue
            rtt_size, delay_size = message["sizes"]
            sent, received, lost = message["c"]
            parts[tag] = Collected(
                sent,
                received,
                lost,
                rtt=Histogram.from_bytes(blob[:rtt_size]),
                delay=Histogram.from_bytes(blob[rtt_size : rtt_size + delay_size]),
                answers=blob[rtt_size + delay_size :],
            )
            if not op.done:
                op.progress[tag] = (sent, received, lost)
        return parts

    def _drop(self, op_id: str) -> None:
        self._ended[op_id] = None
        while len(self._ended) > 1024:
            self._ended.popitem(last=False)
        for key in [k for k, s in self.shards.items() if s.op_id == op_id]:
            table = self.shards.pop(key).table
            self._retired[0] += table.sent
            self._retired[1] += table.received
            self.rtt_history.merge(table.rtt)

    # -- the bus ---------------------------------------------------------------

    def ask(self, worker: str, message: dict[str, Any]) -> Awaitable[tuple[dict[str, Any], bytes]]:
        """A question to another worker (a kind of ``bus_handlers`` there): its answer."""
        return self._ask(worker, message)

    def answer(self, question: dict[str, Any], reply: dict[str, Any], blob: bytes = b"") -> None:
        """Answer a question ``ask`` sent from another worker."""
        self._answer(question, reply, blob)

    def spawn(self, coroutine: Any) -> None:
        """Run ``coroutine`` as a task kept until it ends."""
        self._spawn(coroutine)

    def _ask(self, worker: str, message: dict[str, Any]) -> Awaitable[tuple[dict[str, Any], bytes]]:
        """Send ``message`` and wait (at most ASK_TIMEOUT) for the worker's answer."""
        self._next_question += 1
        question = message["q"] = self._next_question
        future: asyncio.Future[tuple[dict[str, Any], bytes]] = (
            asyncio.get_running_loop().create_future()
        )
        self._asked[question] = future
        self.bus.send(worker, message)

        async def wait() -> tuple[dict[str, Any], bytes]:
            try:
                return await asyncio.wait_for(future, ASK_TIMEOUT)
            finally:
                self._asked.pop(question, None)

        return wait()

    def _answer(self, question: dict[str, Any], reply: dict[str, Any], blob: bytes = b"") -> None:
        reply["t"] = "answer"
        reply["a"] = question["q"]
        self.bus.send(question["from"], reply, blob)

    def _on_bus(self, message: dict[str, Any], blob: bytes) -> None:
        kind = message["t"]
        sender = message.get("from", "")
        self.membership.heard(sender)  # any message says its sender is alive
        if kind == "pokes":
            self._pokes_here(message["r"])
        elif kind == "progress":
            sent, received, lost = message["c"]
            self._progress(sender, message["op"], (sent, received, lost))
        elif kind == "answer":
            future = self._asked.get(message["a"])
            if future is not None and not future.done():
                future.set_result((message, blob))
        elif kind == "beat":
            details = message.get("d") or {}
            news = self.membership.beat(sender, message["clients"], message["pid"], details)
            if news == "joined":
                log.info("worker %s joined", sender)
            elif news == "restarted":  # what it held of running operations died with it
                self._worker_gone(sender)
        elif kind == "echo":
            self.membership.echo(message["at"])
        elif kind == "left":  # the hub saw its link close: it died, or stopped
            if self.membership.leave(message["tag"]):
                self._worker_gone(message["tag"])
        elif kind == "broadcast":
            self._answer(message, {"n": self._broadcast_here(message["op"], message["origin"])})
        elif kind == "collect":
            self._hand_over(message)
        elif kind == "end":
            self._drop(message["op"])
        elif kind == "has":
            self._answer(message, {"yes": message["sid"] in self.clients.sockets})
        elif kind == "counts?":
            self._answer(message, {"counts": dict(self.counts)})
        elif kind == "metrics?":
            families = orjson.dumps([f.to_json() for f in worker_families(self)])
            self._answer(message, {}, families)
        elif kind == "status?":
            self._spawn(self._forward_status(message))
        elif kind in self.bus_handlers:
            self.bus_handlers[kind](message, blob)
        else:
            self.bus.problems["unknown messages"] += 1

    def _hand_over(self, question: dict[str, Any]) -> None:
        shard = self.shards.get(f"{question['op']}@{self.tag}")
        if shard is None:
            self._answer(question, {})
            return
        rtt = shard.table.rtt.to_bytes()
        delay = shard.table.delay.to_bytes()
        answers = b",".join(shard.answers()) if question.get("detail") else b""
        reply = {"c": list(shard.counts()), "sizes": [len(rtt), len(delay)]}
        self._answer(question, reply, rtt + delay + answers)

    async def _forward_status(self, question: dict[str, Any]) -> None:
        try:
            status = await self._status_of(question["op"], bool(question.get("detail")))
        except Refusal as refusal:
            self._answer(question, {"error": refusal.code, "message": refusal.message})
            return
        self._answer(question, {}, orjson.dumps(status))

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _ack_of(op: Operation) -> dict[str, Any]:
    """What an ``initiatePoke`` is acknowledged with."""
    return {"op": op.id, "expected": op.expected}


async def _settle(waits: list[Awaitable[Any]]) -> list[Any]:
    """Every outcome, answers and failures alike."""
    return list(await asyncio.gather(*waits, return_exceptions=True))


def _is_number(value: Any) -> TypeGuard[int | float]:
    return type(value) is int or type(value) is float
