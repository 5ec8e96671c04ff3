"""MessageStorm on python-socketio beyond one process, as its documentation deploys it:
N processes serving one port (aiohttp's ``reuse_port``: the kernel spreads the
connections), each an ``AsyncServer`` whose client manager is an
``socketio.AsyncRedisManager`` on one Redis server.

No sticky sessions: the clients here, msstorm's swarm and monitor, use the WebSocket
transport only, one connection that stays in the process that accepted it. HTTP
long-polling, whose requests may reach any process, would need them.

How an operation crosses processes. The process whose monitor sent the
``initiatePoke`` is the operation's origin: it keeps the operation (answers, timeout,
final status to that monitor). Every process pokes its own clients only and times
each poke on its own clock from write to answer, as one process does; it sends the
answers to the origin. The processes talk over Redis pub/sub channels of their own,
beside the manager's ("socketio"): ``messagestorm`` reaches all, ``messagestorm.<i>``
process i alone.

- Questions to all the others, each answering on the asker's channel: a census of
  clients (before an operation, for a uniform random pick over the cluster), "poke
  all your clients" (a broadcast: one message per process), an overview, an
  operation's status. Each process knows how many there are (``--workers``); an
  answer not in within ``QUESTION_TIMEOUT`` is done without, as Node's adapter does.
- Mail to one process: pokes it is to send (unicasts, tree children drawn on it) and
  answers for the origin, batched per event-loop turn; the end of an operation, to all.

A tree's pokes are numbered as a heap (the root 0, the children of s are 2s+1 and
2s+2), so that the process answering a poke names its children without asking anyone.
A process emits its pokes with ``ignore_queue=True``: each goes to a client of its own,
which the manager would otherwise also publish to every process, for all but this one
to drop.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import logging
import os
import random
import secrets
import signal
import sys
import time
from collections.abc import Coroutine
from typing import Any

import socketio
import uvloop
from messagestorm import (
    ANSWERED,
    CLIENTS,
    INDEX_WIDTH,
    PENDING,
    Operation,
    Refusal,
    Storm,
    listen,
    make_server,
    storm_settings,
    until_signalled,
    version,
)
from redis import asyncio as aioredis

log = logging.getLogger("messagestorm")

CHANNEL = "messagestorm"
QUESTION_TIMEOUT = 5.0  # seconds, as @socket.io/cluster-adapter's
SLOTS = 1 << 24  # a process's broadcast pokes are slots index * SLOTS + i: unique ids
KEEP_ENDED = 1024  # ended operations remembered, so that late pokes are not sent


def depth_of(slot: int) -> int:
    return (slot + 1).bit_length() - 1


def poke_id(op: str, slot: int) -> str:
    return f"{op}.{slot:0{INDEX_WIDTH}x}"


# -- an operation, at its origin ---------------------------------------------------


class Outcome(Operation):
    """An operation as its origin sees it: the answers every process sent it."""

    def __init__(self, op_id: str, kind: str, expected: int | None, monitor: str) -> None:
        super().__init__(op_id, expected or 0, monitor)
        self.kind = kind
        self.known = expected is not None  # a broadcast's: once every process said
        self.reported_lost = 0  # pokes never sent (a tree: with their subtrees)
        self.who: list[tuple[str | None, Any, int | None, int | None]] = []  # by answer

    @property
    def lost(self) -> int:
        return self.expected - self.received if self.done else self.reported_lost

    def complete(self) -> bool:
        return self.known and super().complete()

    def detail(self) -> Any:
        if self.kind == "broadcast":
            return super().detail()
        if self.kind == "unicast":
            if not self.answers:
                return None
            _, rtt, delay = self.answers[0]
            return {"clientId": self.who[0][0], "pingDelay": round(delay, 3), "rtt": round(rtt, 3)}
        return [
            {
                "parent": parent,
                "rtt": round(rtt, 3),
                "pingDelay": round(delay, 3),
                "clientId": sid,
                "depth": depth,
                "worker": worker,
            }
            for (_, rtt, delay), (sid, parent, depth, worker) in zip(
                self.answers, self.who, strict=True
            )
        ]


class Part:
    """A process's share of an operation: the pokes it sent its own clients."""

    def __init__(
        self,
        op: str,
        origin: int,
        kind: str,
        leaves: int = 0,
        census: list[dict[str, int]] | None = None,
    ) -> None:
        self.op = op
        self.origin = origin
        self.kind = kind
        self.leaves = leaves
        self.census = census or []  # a tree's: the clients of each process when it started
        self.targets: dict[int, str] = {}
        self.sent_at: dict[int, float] = {}
        self.state: dict[int, int] = {}
        self.parents: dict[int, Any] = {}  # slot -> the parent's sid (-1 for the root)

    def leaves_below(self, slot: int) -> int:
        return self.leaves >> depth_of(slot)


# -- the processes' own channels ---------------------------------------------------------


class Gather:
    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.answers: list[Any] = []
        self.done = asyncio.get_running_loop().create_future()

    def add(self, answer: Any) -> None:
        self.answers.append(answer)
        if len(self.answers) >= self.expected and not self.done.done():
            self.done.set_result(None)


class Bus:
    """Questions and mail between the processes, on Redis pub/sub."""

    def __init__(self, url: str, index: int, workers: int) -> None:
        self.index = index
        self.workers = workers
        self.redis = aioredis.Redis.from_url(url)
        self.pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        self.gathers: dict[int, Gather] = {}
        self.asked = 0
        self.listener: asyncio.Task[None] | None = None

    async def start(self, storm: ClusterStorm) -> None:
        # subscribed before the port is served: no question is missed
        await self.pubsub.subscribe(CHANNEL, f"{CHANNEL}.{self.index}")
        self.listener = asyncio.ensure_future(self.listen(storm))

    async def close(self) -> None:
        if self.listener is not None:
            self.listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.listener
        await self.pubsub.aclose()
        await self.redis.aclose()

    async def publish(self, to: int | None, message: dict[str, Any]) -> None:
        channel = CHANNEL if to is None else f"{CHANNEL}.{to}"
        await self.redis.publish(channel, json.dumps(message, separators=(",", ":")))

    async def ask(self, question: dict[str, Any]) -> list[Any]:
        """Every other process's answer to ``question`` (those in within the timeout)."""
        if self.workers < 2:
            return []
        self.asked += 1
        rid = self.asked
        gather = self.gathers[rid] = Gather(self.workers - 1)
        try:
            await self.publish(None, {**question, "from": self.index, "rid": rid})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(gather.done), QUESTION_TIMEOUT)
        finally:
            del self.gathers[rid]
        return [answer for answer in gather.answers if answer is not None]

    async def listen(self, storm: ClusterStorm) -> None:
        async for message in self.pubsub.listen():
            try:
                data = json.loads(message["data"])
                if "rid" in data:  # a question (this process hears its own too)
                    if data["from"] != self.index:
                        storm.spawn(self.answer(storm, data))
                elif "reply" in data:
                    gather = self.gathers.get(data["reply"])
                    if gather is not None:
                        gather.add(data["answer"])
                else:
                    await storm.receive(data)
            except Exception:
                log.exception("bad message on %s", message.get("channel"))

    async def answer(self, storm: ClusterStorm, question: dict[str, Any]) -> None:
        answer = storm.answer(question)
        await self.publish(question["from"], {"reply": question["rid"], "answer": answer})


# -- the application, one per process -----------------------------------------------------


class ClusterStorm(Storm):
    """MessageStorm on one process of several: its clients, and the operations it started."""

    def __init__(self, sio: socketio.AsyncServer, bus: Bus, index: int, **settings: Any) -> None:
        super().__init__(sio, **settings)
        self.bus = bus
        self.index = index
        self.prefix = f"{secrets.token_hex(2)}-{index}-"  # op ids unique in the cluster
        self.parts: dict[str, Part] = {}
        self.ended: dict[str, None] = {}  # insertion-ordered: the oldest goes first
        self.outbox: dict[int, dict[str, list[Any]]] = {}

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # -- talking to the other processes ----------------------------------------------

    def answer(self, q: dict[str, Any]) -> Any:
        kind = q.get("q")
        if kind == "census":
            has = isinstance(q.get("sid"), str) and q["sid"] in self.where
            return {"worker": self.index, "clients": len(self.members), "has": has}
        if kind == "broadcast":
            return {"expected": self.broadcast_here(q["op"], q["origin"])}
        if kind == "overview":
            return self.mine(bool(q.get("detail")))
        if kind == "status":
            op = self.running.get(q["op"]) or self.finished.get(q["op"])
            return None if op is None else op.status(bool(q.get("detail")))
        return None

    def box(self, worker: int) -> dict[str, list[Any]]:
        box = self.outbox.get(worker)
        if box is None:
            if not self.outbox:
                asyncio.get_running_loop().call_soon(self.flush)
            box = self.outbox[worker] = {"pokes": [], "answers": [], "lost": []}
        return box

    def flush(self) -> None:
        boxes, self.outbox = self.outbox, {}
        for worker, box in boxes.items():
            self.spawn(self.bus.publish(worker, box))

    async def receive(self, mail: dict[str, Any]) -> None:
        for op in mail.get("ended", ()):
            self.forget(op)
        for poke in mail.get("pokes", ()):
            await self.poke_here(poke)
        for answer in mail.get("answers", ()):
            self.absorb(answer)
        for op, n in mail.get("lost", ()):
            self.absorb_lost(op, n)

    async def post(self, worker: int, poke: dict[str, Any]) -> None:
        """A poke for process ``worker`` to send."""
        if worker == self.index:
            await self.poke_here(poke)
        else:
            self.box(worker)["pokes"].append(poke)

    def report(self, origin: int, answer: list[Any]) -> None:
        """An answer for the origin: [op, rtt, delay, sid, parent, depth, worker]."""
        if origin == self.index:
            self.absorb(answer)
        else:
            self.box(origin)["answers"].append(answer)

    def lose(self, origin: int, op: str, n: int) -> None:
        if origin == self.index:
            self.absorb_lost(op, n)
        else:
            self.box(origin)["lost"].append([op, n])

    # -- the cluster's clients --------------------------------------------------------

    async def census(self, sid: str | None) -> list[dict[str, Any]]:
        question = {"q": "census", "sid": sid}
        return [self.answer(question), *await self.bus.ask(question)]

    @staticmethod
    def draw(census: list[dict[str, Any]], k: int) -> list[tuple[int, int]]:
        """``k`` clients drawn uniformly at random among the census's (distinct when
        there are enough), each as (process, position among its clients)."""
        total = sum(c["clients"] for c in census)
        if total >= k:
            positions = random.sample(range(total), k)
        else:
            positions = [random.randrange(total) for _ in range(k)]
        drawn = []
        for p in positions:
            for c in census:
                if p < c["clients"]:
                    drawn.append((c["worker"], p))
                    break
                p -= c["clients"]
        return drawn

    # -- monitors ---------------------------------------------------------------------

    async def whole_overview(self, detail: bool) -> dict[str, Any]:
        return await self.cluster_overview(detail)

    async def status_elsewhere(self, op_id: Any, detail: bool) -> dict[str, Any] | None:
        if not isinstance(op_id, str):
            return None
        found = await self.bus.ask({"q": "status", "op": op_id, "detail": detail})
        return found[0] if found else None

    def mine(self, detail: bool) -> dict[str, Any]:
        return {
            "worker": self.index,
            "pid": os.getpid(),
            "clients": len(self.members),
            "operations": [op.status(detail) for op in self.running.values()],
            "finished": list(self.finished),
            "counts": self.counts,
        }

    async def cluster_overview(self, detail: bool) -> dict[str, Any]:
        every = [self.mine(detail), *await self.bus.ask({"q": "overview", "detail": detail})]
        every.sort(key=lambda w: w["worker"])
        clients = sum(w["clients"] for w in every)
        counts: dict[str, int] = {}
        for w in every:
            for key, n in w["counts"].items():
                counts[key] = counts.get(key, 0) + n
        per_worker = {str(w["worker"]): {"clients": w["clients"], "pid": w["pid"]} for w in every}
        return {
            "clients": clients,
            "cluster": {
                "worker": self.index,
                "workers": len(every),
                "clients": clients,
                "perWorker": per_worker,
            },
            "operations": [status for w in every for status in w["operations"]],
            "finished": [op for w in every for op in w["finished"]],
            "counts": counts,
        }

    # -- starting operations, at the origin ---------------------------------------------

    async def start(self, monitor: str, *args: Any) -> Operation:
        request = self.check_request(*args)
        kind = request["type"]
        dest = request.get("destId") if kind == "unicast" else None
        census = await self.census(dest if isinstance(dest, str) else None)
        if not any(c["clients"] for c in census):
            raise Refusal("no-clients", "no client is connected")
        self.sequence += 1
        op_id = f"{self.prefix}{self.sequence:x}"
        poke: dict[str, Any] = {"op": op_id, "origin": self.index, "kind": kind, "slot": 0}
        if kind == "unicast":
            if dest is None:
                ((worker, poke["pick"]),) = self.draw(census, 1)
            elif not isinstance(dest, str):
                raise Refusal("bad-dest", "destId must be a client's sid")
            else:
                holder = next((c for c in census if c["has"]), None)
                if holder is None:
                    raise Refusal("unknown-client", f"no client {dest!r} is connected")
                worker, poke["sid"] = holder["worker"], dest
            op = Outcome(op_id, kind, 1, monitor)
            self.begin(op)
            await self.post(worker, poke)
        elif kind == "broadcast":
            op = Outcome(op_id, kind, None, monitor)
            self.begin(op)
            asking = asyncio.ensure_future(
                self.bus.ask({"q": "broadcast", "op": op_id, "origin": self.index})
            )
            here = self.broadcast_here(op_id, self.index)
            there = await asking
            if not op.done:
                op.expected = here + sum(a["expected"] for a in there)
                op.known = True
        else:
            op = Outcome(op_id, kind, 2 * request["treeLeaves"] - 1, monitor)
            self.begin(op)
            ((worker, poke["pick"]),) = self.draw(census, 1)
            poke["leaves"] = request["treeLeaves"]
            poke["census"] = [{"worker": c["worker"], "clients": c["clients"]} for c in census]
            poke["parent"] = -1
            await self.post(worker, poke)
        self.check(op)
        return op

    # -- this process's pokes -------------------------------------------------------------

    def part(self, poke: dict[str, Any]) -> Part:
        part = self.parts.get(poke["op"])
        if part is None:
            part = Part(
                poke["op"], poke["origin"], poke["kind"], poke.get("leaves", 0), poke.get("census")
            )
            self.parts[part.op] = part
        return part

    async def send_here(self, part: Part, slot: int, sid: str, **extra: Any) -> bool:
        if not self.is_connected(sid):
            return False
        poke = {"id": poke_id(part.op, slot), "ts": round(time.time() * 1000.0, 3), **extra}
        part.targets[slot] = sid
        part.state[slot] = PENDING
        part.sent_at[slot] = time.monotonic()
        await self.sio.emit("poke", poke, to=sid, namespace=CLIENTS, ignore_queue=True)
        return True

    def broadcast_here(self, op: str, origin: int) -> int:
        """A broadcast's poke to each client of this process, sent from a task; how
        many there are (said at once: sending them takes seconds here)."""
        if op in self.ended:
            return 0
        part = self.part({"op": op, "origin": origin, "kind": "broadcast"})
        targets = list(self.members)
        self.spawn(self.poke_all(part, targets))
        return len(targets)

    async def poke_all(self, part: Part, targets: list[str]) -> None:
        unsent = 0
        for slot, sid in enumerate(targets, self.index * SLOTS):
            if not await self.send_here(part, slot, sid):
                unsent += 1
        if unsent:
            self.lose(part.origin, part.op, unsent)

    async def poke_here(self, poke: dict[str, Any]) -> None:
        """A unicast's or a tree's poke, to a client of this process (by sid, or its
        position among them when drawn)."""
        if poke["op"] in self.ended:
            return  # over: nothing more is sent for it
        part = self.part(poke)
        sid = poke.get("sid")
        if sid is None and self.members:
            sid = self.members[poke["pick"] % len(self.members)]
        slot = poke["slot"]
        tree = part.kind == "tree"
        extra = (
            {"treeLeaves": part.leaves_below(slot), "treeId": part.op, "parentId": poke["parent"]}
            if tree
            else {}
        )
        if sid is not None and await self.send_here(part, slot, sid, **extra):
            if tree:
                part.parents[slot] = poke["parent"]
        else:  # never sent, nor anything below it
            self.lose(part.origin, part.op, 2 * part.leaves_below(slot) - 1 if tree else 1)

    async def poke_back(self, sid: str, *args: Any) -> None:
        now = time.monotonic()
        read = await self.read_answer(sid, *args)
        if read is None:
            return
        answer, op_id, slot = read
        part = self.parts.get(op_id)
        if part is None:
            self.count("answers unknown or late")
            return
        if part.targets.get(slot) != sid:
            self.count("answers for another client's poke")
            return
        if part.state.get(slot) != PENDING:
            self.count("answers unknown or late")
            return
        part.state[slot] = ANSWERED
        rtt = (now - part.sent_at[slot]) * 1000.0
        self.count("answers")
        delay = float(answer["delay"])
        if part.kind == "broadcast":
            self.report(part.origin, [part.op, rtt, delay])
            return
        tree = part.kind == "tree"
        parent = part.parents.get(slot) if tree else None
        depth = depth_of(slot) if tree else None
        self.report(part.origin, [part.op, rtt, delay, sid, parent, depth, self.index])
        if tree:
            await self.grow_here(part, slot, sid, answer)

    async def grow_here(self, part: Part, slot: int, sid: str, answer: dict[str, Any]) -> None:
        """The tree rule, in the process that got the answer: two children drawn over
        the cluster."""
        if not self.grows(part.leaves_below(slot), answer):
            return
        for i, (worker, pick) in enumerate(self.draw(part.census, 2)):
            child = {
                "op": part.op,
                "origin": part.origin,
                "kind": part.kind,
                "leaves": part.leaves,
                "census": part.census,
                "slot": 2 * slot + 1 + i,
                "pick": pick,
                "parent": sid,
            }
            await self.post(worker, child)

    # -- answers, at the origin ---------------------------------------------------------

    def absorb(self, answer: list[Any]) -> None:
        op_id, rtt, delay, *who = answer
        op = self.running.get(op_id)
        if not isinstance(op, Outcome):
            self.count("answers in after their operation ended")
            return
        op.answers.append((0, rtt, delay))
        op.who.append((who[0], who[1], who[2], who[3]) if who else (None, None, None, None))
        self.check(op)

    def absorb_lost(self, op_id: str, n: int) -> None:
        op = self.running.get(op_id)
        if isinstance(op, Outcome):
            op.reported_lost += n
            self.check(op)

    def end(self, op: Operation, timed_out: bool) -> None:
        if isinstance(op, Outcome) and not op.known:  # a process never said
            op.expected = op.received + op.reported_lost
            op.known = True
        super().end(op, timed_out)
        self.forget(op.id)
        self.spawn(self.bus.publish(None, {"ended": [op.id]}))

    def forget(self, op: str) -> None:
        self.parts.pop(op, None)
        self.ended[op] = None
        if len(self.ended) > KEEP_ENDED:
            del self.ended[next(iter(self.ended))]


# -- the processes ---------------------------------------------------------------------------


async def serve_worker(args: argparse.Namespace, index: int) -> None:
    sio = make_server(args, client_manager=socketio.AsyncRedisManager(args.redis))
    bus = Bus(args.redis, index, args.workers)
    storm = ClusterStorm(sio, bus, index, **storm_settings(args))
    await bus.start(storm)
    runner = await listen(sio, args, reuse_port=True)
    log.info(
        "listening on http://%s:%d (python-socketio %s, worker %d, pid %d)",
        args.host,
        args.port,
        version(),
        index,
        os.getpid(),
    )
    try:
        await until_signalled()
        log.info("shutting down: closing %d connections", len(sio.eio.sockets))
        await runner.cleanup()
    finally:
        await bus.close()


def worker(args: argparse.Namespace, index: int) -> int:
    # SIGTERM when the parent dies, however it dies
    ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    try:
        with contextlib.suppress(KeyboardInterrupt):
            uvloop.run(serve_worker(args, index))
    except OSError as exc:
        print(f"messagestorm.py: worker {index}: {exc}", file=sys.stderr)
        return 1
    return 0


def run(args: argparse.Namespace) -> int:
    """Fork ``args.workers`` processes, pass SIGTERM and SIGINT on, wait for them."""
    if args.monitor_token is None:  # one token for all (each would draw its own)
        args.monitor_token = secrets.token_urlsafe(18)
        log.info("monitor token: %s", args.monitor_token)
    children: dict[int, int] = {}
    for index in range(args.workers):
        pid = os.fork()  # before any event loop or thread: nothing to inherit but modules
        if pid == 0:
            code = 1
            try:
                code = worker(args, index)
            except BaseException:
                log.exception("worker %d failed", index)
            finally:
                os._exit(code)
        children[pid] = index
    stopping = False

    def stop(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("%d workers (parent pid %d)", args.workers, os.getpid())
    status = 0
    while children:
        pid, code = os.wait()
        index = children.pop(pid, -1)
        if not stopping:
            # not replaced: its clients were lost, and a benchmark must see it
            log.error("worker %d (pid %d) ended with status %d", index, pid, code)
            status = 1
    return status
