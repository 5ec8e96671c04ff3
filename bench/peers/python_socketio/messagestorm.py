"""MessageStorm on python-socketio's ``AsyncServer``: the Python peer msstorm is measured against.

Clients join namespace ``/`` and answer every ``poke`` with a ``pokeBack``;
monitors join ``/monitor`` with ``auth={"token": ...}`` and drive operations
with ``initiatePoke`` and ``statusRequest`` (the contract: shared/PROTOCOL.md).
It behaves as msstorm-server does (msstorm/storm/app.py and operations.py):
same flags, acks, error codes, status shapes and counters. It is written the way
a python-socketio user would write it: ``AsyncServer`` (async_mode "aiohttp")
served by aiohttp on uvloop, one ``sio.emit(..., to=sid)`` per poke, plain
Python objects for the bookkeeping, python-socketio's defaults but compression.
With ``--workers N`` above 1 it runs as python-socketio's documentation has it
deployed beyond one process: N processes on one port (SO_REUSEPORT), each with an
``AsyncRedisManager`` on a Redis server (cluster.py).

    python messagestorm.py --port 3000 --monitor-token s3cret
    python messagestorm.py --port 3000 --monitor-token s3cret --workers 3 --redis redis://127.0.0.1:6379/0
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import contextvars
import hmac
import importlib.metadata
import logging
import math
import os
import random
import secrets
import signal
import sys
import time
from collections import OrderedDict
from typing import Any

import socketio
import uvloop
from aiohttp import web

log = logging.getLogger("messagestorm")

MONITOR = "/monitor"
CLIENTS = "/"
KEEP_FINISHED = 64  # finished operations kept for statusRequest
INDEX_WIDTH = 8  # a poke id is "<op>.<slot as 8 hex digits>"
PERCENTILES = (("p50", 0.50), ("p90", 0.90), ("p99", 0.99), ("p999", 0.999))

PENDING = 1
ANSWERED = 2
LOST = 3  # never sent: its client had gone


def parser() -> argparse.ArgumentParser:
    """The same flags as msstorm-server."""
    p = argparse.ArgumentParser(
        prog="messagestorm.py",
        description="MessageStorm on python-socketio's AsyncServer (aiohttp, uvloop).",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s)")
    p.add_argument("--port", type=int, default=3000, help="port to listen on (default %(default)s)")
    group = p.add_argument_group("Socket.IO options (as Socket.IO's, milliseconds and bytes)")
    group.add_argument("--ping-interval", type=int, default=25000, metavar="MS")
    group.add_argument("--ping-timeout", type=int, default=20000, metavar="MS")
    group.add_argument("--max-payload", type=int, default=1_000_000, metavar="BYTES")
    group.add_argument(
        "--connect-timeout",
        type=int,
        default=45000,
        metavar="MS",
        help="accepted for parity with msstorm-server; python-socketio has no such timeout",
    )
    storm = p.add_argument_group("MessageStorm")
    storm.add_argument(
        "--monitor-token",
        default=os.environ.get("MSSTORM_MONITOR_TOKEN"),
        help="token monitors must present (default: $MSSTORM_MONITOR_TOKEN, "
        "else a random one, printed at start)",
    )
    storm.add_argument("--op-timeout", type=float, default=60.0, metavar="SECONDS")
    storm.add_argument("--max-tree-leaves", type=int, default=1 << 20, metavar="L")
    storm.add_argument("--max-operations", type=int, default=64, metavar="N")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    procs = p.add_argument_group("more than one process")
    procs.add_argument(
        "--workers", type=int, default=1, metavar="N", help="processes on the port (default 1)"
    )
    procs.add_argument(
        "--redis", metavar="URL", help="the Redis server of the processes (with --workers above 1)"
    )
    return p


# -- statistics ------------------------------------------------------------------


def distribution(values: list[float]) -> dict[str, float | None]:
    """min, percentiles, max and mean in ms. Exact: the values are sorted (nearest
    rank), where msstorm reads them from a log-linear histogram (within 0.4%)."""
    if not values:
        return dict.fromkeys(("min", "p50", "p90", "p99", "p999", "max", "mean"))
    ordered = sorted(values)
    n = len(ordered)
    result = {"min": round(ordered[0], 3)}
    for name, fraction in PERCENTILES:
        rank = max(1, min(n, math.ceil(fraction * n)))
        result[name] = round(ordered[rank - 1], 3)
    result["max"] = round(ordered[-1], 3)
    result["mean"] = round(sum(values) / n, 3)
    return result


class Refusal(Exception):
    """An ``initiatePoke`` or ``statusRequest`` that cannot be served."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def answer(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}}


# -- operations ------------------------------------------------------------------


class Operation:
    kind = ""

    def __init__(self, op_id: str, expected: int, monitor: str) -> None:
        self.id = op_id
        self.expected = expected  # answers that complete it
        self.monitor = monitor  # sid of the monitor that started it
        self.started = time.monotonic()
        self.ended: float | None = None
        self.timed_out = False
        self.timer: asyncio.TimerHandle | None = None
        self.targets: list[str] = []  # the client each poke went to, by slot
        self.sent_at: dict[int, float] = {}
        self.state: dict[int, int] = {}
        self.answers: list[tuple[int, float, float]] = []  # (slot, rtt, delay) as they came
        self.unsent = 0

    @property
    def done(self) -> bool:
        return self.ended is not None

    @property
    def received(self) -> int:
        return len(self.answers)

    @property
    def lost(self) -> int:
        return self.expected - self.received if self.done else self.unsent

    def complete(self) -> bool:
        return self.received + self.lost >= self.expected

    def poke_id(self, index: int) -> str:
        return f"{self.id}.{index:0{INDEX_WIDTH}x}"

    def summary(self) -> dict[str, Any]:
        end = self.ended if self.ended is not None else time.monotonic()
        return {
            "expected": self.expected,
            "received": self.received,
            "lost": self.lost,
            "elapsedMs": round((end - self.started) * 1000.0, 3),
            "rtt": distribution([rtt for _, rtt, _ in self.answers]),
            "pingDelay": distribution([delay for _, _, delay in self.answers]),
        }

    def status(self, detail: bool = True) -> dict[str, Any]:
        status: dict[str, Any] = {"op": self.id, "type": self.kind, "done": self.done}
        if self.timed_out:
            status["timedOut"] = True
        status["summary"] = self.summary()
        if detail:
            status[self.kind] = self.detail()
        return status

    def detail(self) -> Any:
        return [[round(delay, 3), round(rtt, 3)] for _, rtt, delay in self.answers]


class Unicast(Operation):
    kind = "unicast"

    def __init__(self, op_id: str, target: str, monitor: str) -> None:
        super().__init__(op_id, 1, monitor)
        self.targets = [target]

    def detail(self) -> Any:
        if not self.answers:
            return None
        _, rtt, delay = self.answers[0]
        return {"clientId": self.targets[0], "pingDelay": round(delay, 3), "rtt": round(rtt, 3)}


class Broadcast(Operation):
    kind = "broadcast"

    def __init__(self, op_id: str, targets: list[str], monitor: str) -> None:
        super().__init__(op_id, len(targets), monitor)
        self.targets = targets


class Tree(Operation):
    kind = "tree"

    def __init__(self, op_id: str, leaves: int, root: str, monitor: str) -> None:
        super().__init__(op_id, 2 * leaves - 1, monitor)
        self.leaves = leaves
        self.targets = [root]
        self.parents = [-1]  # the slot of the poke whose answer caused each poke
        self.depths = [0]
        self.unreachable = 0  # pokes never to be sent: the subtrees of unsent pokes

    @property
    def lost(self) -> int:
        return self.expected - self.received if self.done else self.unreachable

    def leaves_below(self, index: int) -> int:
        return self.leaves >> self.depths[index]

    def grow(self, parent: int, children: list[str]) -> int:
        first = len(self.targets)
        for sid in children:
            self.targets.append(sid)
            self.parents.append(parent)
            self.depths.append(self.depths[parent] + 1)
        return first

    def detail(self) -> Any:
        entries = []
        for index, rtt, delay in self.answers:
            parent = self.parents[index]
            entries.append(
                {
                    "parent": self.targets[parent] if parent >= 0 else -1,
                    "rtt": round(rtt, 3),
                    "pingDelay": round(delay, 3),
                    "clientId": self.targets[index],
                    "depth": self.depths[index],
                }
            )
        return entries


# -- the application -------------------------------------------------------------

# Whether the event being handled asked for an ack. python-socketio does not tell
# a handler, and statusRequest must answer with a "status" event when it did not;
# the server below sets this around each event (python-socketio 5.18's hook).
ACK_REQUESTED: contextvars.ContextVar[bool] = contextvars.ContextVar("ack", default=True)


class AsyncServer(socketio.AsyncServer):
    async def _handle_event_internal(  # type: ignore[no-untyped-def]
        self, server, sid, eio_sid, data, namespace, id
    ):
        ACK_REQUESTED.set(id is not None)
        return await super()._handle_event_internal(server, sid, eio_sid, data, namespace, id)


class Storm:
    """MessageStorm's operations on a python-socketio ``AsyncServer``."""

    def __init__(
        self,
        sio: socketio.AsyncServer,
        *,
        token: str | None = None,
        op_timeout: float = 60.0,
        max_tree_leaves: int = 1 << 20,
        max_operations: int = 64,
    ) -> None:
        self.sio = sio
        self.token = token or secrets.token_urlsafe(18)
        self.op_timeout = op_timeout
        self.max_tree_leaves = max_tree_leaves
        self.max_operations = max_operations
        # Connected clients in a list, for a uniform random pick.
        self.members: list[str] = []
        self.where: dict[str, int] = {}
        self.running: dict[str, Operation] = {}
        self.finished: OrderedDict[str, Operation] = OrderedDict()
        self.counts: dict[str, int] = {}  # answers, refusals, operations by outcome
        self.prefix = secrets.token_hex(2) + "-"
        self.sequence = 0
        self.tasks: set[asyncio.Task[None]] = set()

        sio.on("connect", self.client_connect, namespace=CLIENTS)
        sio.on("disconnect", self.client_disconnect, namespace=CLIENTS)
        sio.on("pokeBack", self.poke_back, namespace=CLIENTS)
        sio.on("connect", self.monitor_connect, namespace=MONITOR)
        sio.on("initiatePoke", self.initiate_poke, namespace=MONITOR)
        sio.on("statusRequest", self.status_request, namespace=MONITOR)

    def count(self, key: str) -> None:
        self.counts[key] = self.counts.get(key, 0) + 1

    # -- clients ------------------------------------------------------------------

    async def client_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        self.where[sid] = len(self.members)
        self.members.append(sid)

    async def client_disconnect(self, sid: str, reason: Any = None) -> None:
        position = self.where.pop(sid, None)
        if position is None:
            return
        last = self.members.pop()
        if position < len(self.members):
            self.members[position] = last
            self.where[last] = position

    def pick(self, k: int) -> list[str]:
        """``k`` sids drawn uniformly at random, distinct when there are enough."""
        if not self.members:
            return []
        if len(self.members) >= k:
            return random.sample(self.members, k)
        return [random.choice(self.members) for _ in range(k)]

    def is_connected(self, sid: str) -> bool:
        return self.sio.manager.is_connected(sid, CLIENTS)

    # -- monitors -----------------------------------------------------------------

    async def monitor_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        token = auth.get("token") if isinstance(auth, dict) else None
        if not isinstance(token, str) or not hmac.compare_digest(
            token.encode(), self.token.encode()
        ):
            self.count("monitor refused")
            raise socketio.exceptions.ConnectionRefusedError("invalid monitor token")

    async def initiate_poke(self, sid: str, *args: Any) -> dict[str, Any]:
        try:
            op = await self.start(sid, *args)
        except Refusal as refusal:
            self.count(f"initiatePoke refused: {refusal.code}")
            return refusal.answer()
        return {"op": op.id, "expected": op.expected}

    async def status_request(self, sid: str, *args: Any) -> Any:
        """Answered by ack when the monitor asked for one, else with a ``status`` event."""
        status = await self.status(*args)
        if ACK_REQUESTED.get():
            return status
        await self.sio.emit("status", status, to=sid, namespace=MONITOR)
        return None

    async def status(self, *args: Any) -> Any:
        request = args[0] if args else {}
        try:
            if not isinstance(request, dict):
                raise Refusal("bad-request", "statusRequest takes no argument or one object")
            detail = request.get("detail", "full") != "summary"
            op_id = request.get("op")
            if op_id is None:
                return await self.whole_overview(detail)
            op = None
            if isinstance(op_id, str):  # (msstorm fails on a list or an object here)
                op = self.running.get(op_id) or self.finished.get(op_id)
            if op is not None:
                return op.status(detail)
            status = await self.status_elsewhere(op_id, detail)
            if status is None:
                raise Refusal("unknown-operation", f"no operation {op_id!r}")
            return status
        except Refusal as refusal:
            return refusal.answer()

    async def whole_overview(self, detail: bool) -> dict[str, Any]:
        """The overview of the whole server (one process: this one's)."""
        return self.overview(detail)

    async def status_elsewhere(self, op_id: Any, detail: bool) -> dict[str, Any] | None:
        """The status of an operation this process does not hold (one process: none)."""
        return None

    def overview(self, detail: bool) -> dict[str, Any]:
        return {
            "clients": len(self.members),
            "operations": [op.status(detail) for op in self.running.values()],
            "finished": list(self.finished),
            "counts": dict(self.counts),
        }

    # -- starting operations ------------------------------------------------------

    def check_request(self, *args: Any) -> dict[str, Any]:
        """The request of an ``initiatePoke``, checked as far as this process alone can."""
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
        return request

    async def start(self, monitor: str, *args: Any) -> Operation:
        request = self.check_request(*args)
        kind = request["type"]
        if not self.members:
            raise Refusal("no-clients", "no client is connected")
        self.sequence += 1
        op_id = f"{self.prefix}{self.sequence:x}"
        op: Operation
        if kind == "unicast":
            dest = request.get("destId")
            if dest is None:
                dest = self.pick(1)[0]
            elif not isinstance(dest, str):
                raise Refusal("bad-dest", "destId must be a client's sid")
            elif not self.is_connected(dest):
                raise Refusal("unknown-client", f"no client {dest!r} is connected")
            op = Unicast(op_id, dest, monitor)
            self.begin(op)
            await self.send(op, 0)
        elif kind == "broadcast":
            op = Broadcast(op_id, list(self.members), monitor)
            self.begin(op)
            for index in range(len(op.targets)):
                await self.send(op, index)
        else:
            tree = Tree(op_id, request["treeLeaves"], self.pick(1)[0], monitor)
            op = tree
            self.begin(op)
            await self.send_tree(tree, 0, -1)
        self.check(op)
        return op

    def begin(self, op: Operation) -> None:
        self.running[op.id] = op
        self.count(f"{op.kind} started")
        op.timer = asyncio.get_running_loop().call_later(self.op_timeout, self.time_out, op)

    async def send(self, op: Operation, index: int, **extra: Any) -> bool:
        """Poke slot ``index`` of ``op``; False when its client has gone (a lost poke)."""
        sid = op.targets[index]
        if not self.is_connected(sid):
            op.state[index] = LOST
            op.unsent += 1
            return False
        poke = {"id": op.poke_id(index), "ts": round(time.time() * 1000.0, 3), **extra}
        op.state[index] = PENDING
        op.sent_at[index] = time.monotonic()
        await self.sio.emit("poke", poke, to=sid, namespace=CLIENTS)
        return True

    async def send_tree(self, tree: Tree, index: int, parent_id: str | int) -> None:
        leaves = tree.leaves_below(index)
        sent = await self.send(tree, index, treeLeaves=leaves, treeId=tree.id, parentId=parent_id)
        if not sent:  # neither it nor anything below it will be sent
            tree.unreachable += 2 * leaves - 1

    # -- answers ------------------------------------------------------------------

    async def read_answer(self, sid: str, *args: Any) -> tuple[dict[str, Any], str, int] | None:
        """A ``pokeBack``'s argument and its poke's operation id and slot ("<op>.<slot
        in hex>"; the id "" when it is not of that form); None when the client broke
        the rules (and was closed)."""
        answer = args[0] if len(args) == 1 else None
        if type(answer) is not dict:
            await self.broken(sid, "pokeBack takes one object")
            return None
        poke_id = answer.get("id")
        if not isinstance(poke_id, str) or not is_number(answer.get("delay")):
            await self.broken(sid, "pokeBack needs a string id and a numeric delay")
            return None
        if not is_number(answer.get("serverTs")):
            await self.broken(sid, "pokeBack needs a numeric serverTs")
            return None
        op_id, _, slot = poke_id.rpartition(".")
        try:
            return answer, op_id, int(slot, 16)
        except ValueError:
            return answer, "", -1

    async def poke_back(self, sid: str, *args: Any) -> None:
        now = time.monotonic()
        read = await self.read_answer(sid, *args)
        if read is None:
            return None
        answer, op_id, index = read
        delay = answer["delay"]
        op = self.running.get(op_id)
        if op is None:
            self.count("answers unknown or late")
            return None
        if not 0 <= index < len(op.targets) or op.targets[index] != sid:
            self.count("answers for another client's poke")
            return None
        if op.state.get(index) != PENDING:
            self.count("answers unknown or late")
            return None
        op.state[index] = ANSWERED
        op.answers.append((index, (now - op.sent_at[index]) * 1000.0, float(delay)))
        self.count("answers")
        if isinstance(op, Tree):
            await self.grow(op, index, answer)
        self.check(op)
        return None

    def grows(self, leaves: int, answer: dict[str, Any]) -> bool:
        """Whether the answer to a poke with ``leaves`` makes two more; one whose
        treeLeaves is not half of them is counted (the server's count rules)."""
        if answer.get("treeLeaves") != (leaves // 2 if leaves >= 2 else None):
            self.count("answers with a wrong treeLeaves")
        return leaves >= 2

    async def grow(self, tree: Tree, index: int, answer: dict[str, Any]) -> None:
        if not self.grows(tree.leaves_below(index), answer):
            return
        first = tree.grow(index, self.pick(2))
        for child in range(first, len(tree.targets)):
            await self.send_tree(tree, child, tree.targets[index])

    async def broken(self, sid: str, why: str) -> None:
        self.count("malformed pokeBacks")
        log.debug("closing client %s: %s", sid, why)
        # close its connection, as msstorm and Node's socket.disconnect(true) do
        # (sio.disconnect(sid) would only take it out of the namespace)
        eio_sid = self.sio.manager.eio_sid_from_sid(sid, CLIENTS)
        if eio_sid is not None:
            await self.sio.eio.disconnect(eio_sid)

    # -- ending operations --------------------------------------------------------

    def check(self, op: Operation) -> None:
        if not op.done and op.complete():
            self.end(op, timed_out=False)

    def time_out(self, op: Operation) -> None:
        if not op.done:
            self.end(op, timed_out=True)

    def end(self, op: Operation, timed_out: bool) -> None:
        op.ended = time.monotonic()
        op.timed_out = timed_out
        if op.timer is not None:
            op.timer.cancel()
        self.running.pop(op.id, None)
        self.finished[op.id] = op
        while len(self.finished) > KEEP_FINISHED:
            self.finished.popitem(last=False)
        self.count(f"{op.kind} {'timed out' if timed_out else 'completed'}")
        # the final status goes to the monitor that started the operation
        task = asyncio.ensure_future(
            self.sio.emit("status", op.status(), to=op.monitor, namespace=MONITOR)
        )
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)


def is_number(value: Any) -> bool:
    return type(value) is int or type(value) is float


# -- main ------------------------------------------------------------------------


def make_server(args: argparse.Namespace, **options: Any) -> AsyncServer:
    return AsyncServer(
        async_mode="aiohttp",
        ping_interval=args.ping_interval / 1000.0,
        ping_timeout=args.ping_timeout / 1000.0,
        max_http_buffer_size=args.max_payload,
        http_compression=False,  # compression off, as msstorm (see README.md)
        **options,
    )


def storm_settings(args: argparse.Namespace) -> dict[str, Any]:
    """``Storm``'s settings from the command line."""
    return {
        "token": args.monitor_token,
        "op_timeout": args.op_timeout,
        "max_tree_leaves": args.max_tree_leaves,
        "max_operations": args.max_operations,
    }


async def listen(
    sio: socketio.AsyncServer, args: argparse.Namespace, *, reuse_port: bool = False
) -> web.AppRunner:
    app = web.Application()
    sio.attach(app)
    # no access log: a line per closed connection is noise at 100,000 connections
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, args.host, args.port, reuse_port=reuse_port or None)
    await site.start()
    return runner


async def until_signalled() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def version() -> str:
    return importlib.metadata.version("python-socketio")


async def serve(args: argparse.Namespace) -> None:
    sio = make_server(args)
    storm = Storm(sio, **storm_settings(args))
    runner = await listen(sio, args)
    if args.monitor_token is None:
        log.info("monitor token: %s", storm.token)
    log.info(
        "listening on http://%s:%d (python-socketio %s, pid %d)",
        args.host,
        args.port,
        version(),
        os.getpid(),
    )
    await until_signalled()
    log.info("shutting down: closing %d connections", len(sio.eio.sockets))
    await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    if args.workers < 1:
        p.error("--workers: at least 1")
    if args.workers > 1:
        if not args.redis:
            p.error("--workers above 1 needs --redis URL")
        # cluster.py imports this module: let it find this one, not load a second copy
        sys.modules.setdefault("messagestorm", sys.modules[__name__])
        import cluster

        return cluster.run(args)
    try:
        with contextlib.suppress(KeyboardInterrupt):
            uvloop.run(serve(args))
    except OSError as exc:
        print(f"messagestorm.py: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
