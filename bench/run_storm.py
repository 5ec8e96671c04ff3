"""End to end, side by side: msstorm, Node socket.io and python-socketio in one run.

    python bench/run_storm.py --quick             # under 5 minutes: fewer repeats, N = 10,000
    python bench/run_storm.py                     # the README's figures
    python bench/run_storm.py --servers msstorm,node --conns 5000

Each server in turn, fresh (``msstorm-server --workers 1``; the Node socket.io
peer, bench/peers/node_socketio; the python-socketio peer on aiohttp and uvloop,
bench/peers/python_socketio), compression off and its defaults otherwise (ping
interval 25 s), is driven by the same msstorm swarm (``msstorm-client``) and the
same monitor (``msstorm.monitor.client`` in this process):

1. handshake rate from cold: N clients connect to a server started fresh; the
   time from the first client the server counts to the N-th (``statusRequest``
   polled every 20 ms); repeated on a fresh server each time (``--ramps``);
2. memory per idle connection: server VmRSS with the last ramp's N clients
   settled, less VmRSS before it, over N (user space only; the kernel's part is
   bench/run_engine.py's business);
3. broadcast: the time from the monitor's ``initiatePoke`` to the final
   ``status`` it receives (the server's own ``summary.elapsedMs`` beside it),
   server CPU per recipient over that time;
4. trees of 4,096 leaves (8,191 pokes; 65,536 leaves too in full mode): pokes
   per second and server CPU per poke, timed alike;
5. unicast RTT p50/p99 (the server's ``rtt``) over sequential unicasts, with the
   N clients connected and idle.
Above what one process holds (``PROCESS_CONNS``: the open-file limit is 20,000
here), every server runs in its multi-process form with the same number of
workers (``--workers``, else one per ``WORKER_CONNS`` clients): ``msstorm-server
--workers W``; the Node peer under the cluster module with
@socket.io/cluster-adapter; the python-socketio peer as W processes with
``AsyncRedisManager`` on a redis-server started here on a free loopback port.
Server CPU and memory are then those of all its processes summed (the primary
or supervisor too, and that redis-server).
The swarm's CPU (its processes summed) is shown under every figure. CPU comes
from /proc: each thread's ``se.sum_exec_runtime`` summed (ns resolution), with
utime+stime from /proc/PID/stat (10 ms steps) kept in the JSON as a check.

Floors: the echo floor (bench/peers/picows_echo.py, one loopback connection) is
measured here, a round before each server and one at the end, back to back and
again with round trips PACED_GAP_MS apart as the sequential unicasts are (an idle
process's wake-up is part of their RTT, not of a back-to-back echo's); the send floor is
quoted from bench/results/broadcast.jsonl (bench/run_broadcast.py, which
``make bench`` runs just before this).

Quick mode: 2 ramps, 5 broadcasts, 3 trees of 4,096 leaves, 200 unicasts per
server, 3 s of settling. Full mode: 3 ramps, 9 broadcasts, 7 trees of 4,096 and 3
of 65,536 leaves, 1,000 unicasts, 5 s.

Results: bench/results/storm.jsonl (appended, one object per figure) and
bench/results/storm.md (rewritten; storm-quick.md in quick mode, storm-workers.md and
storm-workers-quick.md for the multi-process forms).
Every wait has a timeout: a server that cannot take N clients is reported with
what it reached. The exit status is 1 when msstorm could not be measured in full
or lost answers; a peer falling short is a finding, reported, not a failure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import importlib.metadata
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import uvloop

from bench import common
from bench.processes import BenchError, Child, free_port, kill_leftovers, wait_listening
from msstorm.monitor.client import MonitorClient, MonitorError

PY = sys.executable
PEERS = common.BENCH_DIR / "peers"
NODE_DIR = PEERS / "node_socketio"
NODE_PACKAGES = ("socket.io", "engine.io", "ws")
NODE_CLUSTER_PACKAGES = ("@socket.io/cluster-adapter",)
PROCESS_CONNS = 19_000  # above this, one server process is not enough (20,000 fds here)
WORKER_CONNS = 15_000  # clients per worker: room for the kernel's uneven spread
WORKERS_TIMEOUT = 60.0  # seconds for every worker of a server to be seen by the others
PACED_GAP_MS = 1.0  # the paced echo floor: ms between round trips, about a unicast's monitor time
PACED_ROUND_TRIPS = 500
POLL = 0.02  # seconds between two client counts while the swarm connects
PAUSE = 0.5  # seconds between two operations: late work of one stays out of the next
TICK = 5.0  # seconds between two progress lines while one operation runs
STALL = 30.0  # seconds without a new client before the ramp is given up
SERVER_GRACE = 8.0  # seconds a server has to exit after SIGTERM, its swarm gone
GOAL_KIB = 4.0


# -- what is measured, and how long ------------------------------------------------


@dataclass(frozen=True)
class Plan:
    conns: int
    broadcasts: int
    trees: tuple[tuple[int, int], ...]  # (leaves, repeats)
    unicasts: int
    settle: float  # seconds between the last join and the memory reading
    echo_round_trips: int
    op_timeout: float  # the servers' --op-timeout
    connect_timeout: float
    swarm_procs: int | None
    workers: int = 1  # processes of every server (its multi-process form above 1)
    ramps: int = 1  # handshake ramps, each on a fresh server (the last one stays)


def make_plan(args: argparse.Namespace) -> Plan:
    if args.quick:
        trees: tuple[tuple[int, int], ...] = ((4096, 3),)
        plan = Plan(args.conns, 5, trees, 200, 3.0, 2000, 120.0, 90.0, args.swarm_procs, ramps=2)
    else:
        trees = ((4096, 7), (65536, 3))
        plan = Plan(args.conns, 9, trees, 1000, 5.0, 10000, 600.0, 300.0, args.swarm_procs, ramps=3)
    if args.trees is not None:
        repeats = plan.trees[0][1]
        plan = dataclasses.replace(plan, trees=tuple((leaves, repeats) for leaves in args.trees))
    if args.repeats is not None:
        trees = tuple((leaves, args.repeats) for leaves, _ in plan.trees)
        plan = dataclasses.replace(plan, broadcasts=args.repeats, trees=trees)
    if args.unicasts is not None:
        plan = dataclasses.replace(plan, unicasts=args.unicasts)
    if args.ramps is not None:
        plan = dataclasses.replace(plan, ramps=max(1, args.ramps))
    return dataclasses.replace(plan, workers=args.workers or workers_for(args.conns))


def workers_for(conns: int) -> int:
    """One process up to PROCESS_CONNS clients; beyond, one per WORKER_CONNS."""
    return 1 if conns <= PROCESS_CONNS else -(-conns // WORKER_CONNS)


# -- the servers -------------------------------------------------------------------


@dataclass(frozen=True)
class Server:
    name: str
    label: str
    program: tuple[str, ...]
    always_workers: bool = False  # --workers even when 1 (msstorm: else one per core)
    needs_redis: bool = False  # its multi-process form runs on a redis-server

    def command(self, port: int, token: str, plan: Plan, redis_url: str | None) -> list[str]:
        command = [
            *self.program,
            "--host", "127.0.0.1", "--port", str(port),
            "--monitor-token", token,
            "--op-timeout", str(plan.op_timeout),
            "--log-level", "warning",
        ]  # fmt: skip
        if plan.workers > 1 or self.always_workers:
            command += ["--workers", str(plan.workers)]
        if redis_url is not None:
            command += ["--redis", redis_url]
        return command


SERVERS = {
    s.name: s
    for s in (
        Server("msstorm", "msstorm", (PY, "-m", "msstorm.storm.cli"), always_workers=True),
        Server("node", "Node socket.io", ("node", str(NODE_DIR / "messagestorm.mjs"))),
        Server(
            "python-socketio",
            "python-socketio",
            (PY, str(PEERS / "python_socketio" / "messagestorm.py")),
            needs_redis=True,
        ),
    )
}
PEER_NAMES = ("node", "python-socketio")


# -- child processes -----------------------------------------------------------------

# -- measuring -----------------------------------------------------------------------


@dataclass
class Cpu:
    """CPU seconds used so far: the server (fine, and in ticks), the swarm, this process."""

    server: float
    server_ticks: float
    swarm: float
    monitor: float

    def __sub__(self, other: Cpu) -> Cpu:
        return Cpu(
            self.server - other.server,
            self.server_ticks - other.server_ticks,
            self.swarm - other.swarm,
            self.monitor - other.monitor,
        )


class Meter:
    """CPU and memory of a server: its process, the processes it started (workers,
    a primary's or supervisor's children) and its helpers (a redis-server)."""

    def __init__(self, server: Child, helpers: Sequence[Child] = ()) -> None:
        self.server = server
        self.helpers = list(helpers)
        self.swarm: Child | None = None

    def swarm_pids(self) -> list[int]:
        if self.swarm is None:
            return []
        return [self.swarm.pid, *common.descendants(self.swarm.pid)]

    def server_pids(self) -> list[int]:
        """Its own first; empty when it has exited."""
        if self.server.exited() is not None:
            return []
        pids = [self.server.pid, *common.descendants(self.server.pid)]
        return pids + [h.pid for h in self.helpers if h.exited() is None]

    def memory(self) -> dict[str, int]:
        """kB, every process of the server summed (each key /proc gave for all)."""
        total: dict[str, int] = {}
        readings = []
        for pid in self.server_pids():
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                readings.append(common.process_memory(pid))
        for key in set.intersection(*(set(r) for r in readings)) if readings else ():
            total[key] = sum(r[key] for r in readings)
        return total

    def read(self) -> Cpu:
        pids = self.server_pids()
        try:
            server = common.process_cpu(self.server.pid)
        except FileNotFoundError:
            pids = []
        if not pids:
            raise BenchError(
                f"{self.server.name} exited with status {self.server.exited()}\n"
                + self.server.tail()
            ) from None
        fine = server["threads"] if server["threads"] is not None else server["ticks"]
        assert fine is not None and server["ticks"] is not None
        ticks = server["ticks"]
        for pid in pids[1:]:
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                cpu = common.process_cpu(pid)
                assert cpu["ticks"] is not None
                fine += cpu["threads"] if cpu["threads"] is not None else cpu["ticks"]
                ticks += cpu["ticks"]
        swarm = 0.0
        for pid in self.swarm_pids():
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                swarm += common.cpu_seconds(pid)
        return Cpu(fine, ticks, swarm, time.process_time())


@contextlib.asynccontextmanager
async def ticking(label: str) -> AsyncIterator[None]:
    """A progress line every few seconds while a long step runs; asks the server nothing."""
    started = time.monotonic()

    async def tick() -> None:
        while True:
            await asyncio.sleep(TICK)
            common.progress(f"{label}: {time.monotonic() - started:.0f} s so far")

    task = asyncio.ensure_future(tick())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@dataclass
class ServerRun:
    """Everything measured on one server."""

    name: str
    asked: int
    reached: int = 0
    problems: list[str] = field(default_factory=list)  # what kept a figure from being taken
    notes: list[str] = field(default_factory=list)  # what a reader should know besides
    ramps: list[dict[str, Any]] = field(default_factory=list)  # one per swarm connected
    memory: dict[str, Any] = field(default_factory=dict)
    broadcasts: list[dict[str, Any]] = field(default_factory=list)
    trees: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    unicasts: dict[str, Any] = field(default_factory=dict)
    swarm_summary: dict[str, Any] | None = None
    swarm_procs: int = 0
    workers: int = 1  # server processes serving the port (its primary or supervisor apart)
    helpers: list[str] = field(default_factory=list)  # what else its figures count
    exit_status: int | None = None
    wall_s: float = 0.0


def operation_sample(
    waited: Any, wall: float, cpu: Cpu, status_cpu: float | None = None
) -> dict[str, Any]:
    summary = waited.status.get("summary") or {}
    expected = summary.get("expected") or waited.ack.get("expected") or 0
    received = summary.get("received") or 0
    return {
        "op": waited.ack.get("op"),
        "expected": expected,
        "received": received,
        "lost": expected - received,
        "gave_up": waited.gave_up,
        "timed_out": bool(waited.status.get("timedOut")),
        "wall_ms": wall * 1000.0,
        "elapsed_ms": summary.get("elapsedMs"),
        "rtt": summary.get("rtt"),
        "server_cpu_s": cpu.server,
        "server_cpu_ticks_s": cpu.server_ticks,
        "swarm_cpu_s": cpu.swarm,
        "monitor_cpu_s": cpu.monitor,
        "status_cpu_s": status_cpu,
    }


class Session:
    """One server's run: it, its swarm, the monitor."""

    def __init__(self, server: Server, plan: Plan, workdir: Path, token: str) -> None:
        self.kind = server
        self.plan = plan
        self.workdir = workdir
        self.token = token
        self.run = ServerRun(server.name, plan.conns, workers=plan.workers)
        self.tag = f"[{server.name}]"

    def say(self, message: str) -> None:
        common.progress(f"{self.tag} {message}")

    async def measure(self) -> ServerRun:
        """Every figure of this server: ``plan.ramps`` fresh servers connected to in turn,
        the last one kept for memory and the operations."""
        started = time.monotonic()
        try:
            for index in range(self.plan.ramps - 1):  # each on a server of its own, from cold
                async with self.serving() as (url, meter, monitor):
                    came = await self.ramp(url, meter, monitor, index)
                if came < self.plan.conns:
                    break  # it falls short: the last ramp says so again, with the operations
            async with self.serving() as (url, meter, monitor):
                await self.connect(url, meter, monitor)
                if self.run.reached:
                    await self.broadcasts(meter, monitor)
                    for leaves, repeats in self.plan.trees:
                        await self.trees(meter, monitor, leaves, repeats)
                    await self.unicasts(meter, monitor)
        except (BenchError, MonitorError) as exc:
            self.run.problems.append(f"{exc}")
            self.say(f"stopped early: {exc}")
        finally:
            self.run.wall_s = time.monotonic() - started
        return self.run

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[tuple[str, Meter, MonitorClient]]:
        """A fresh server (and its redis-server, if it needs one) with a monitor; when
        done, its swarm, the monitor and the server stopped."""
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        redis: Child | None = None
        redis_port = 0
        if self.kind.needs_redis and self.plan.workers > 1:
            redis_port = free_port()
            redis = start_redis(f"{self.kind.name}-redis", redis_port, self.workdir)
            if "redis-server" not in self.run.helpers:
                self.run.helpers.append("redis-server")
        redis_url = f"redis://127.0.0.1:{redis_port}/0" if redis is not None else None
        command = self.kind.command(port, self.token, self.plan, redis_url)
        server = Child(self.kind.name, command, self.workdir)
        meter = Meter(server, [redis] if redis is not None else [])
        monitor: MonitorClient | None = None
        try:
            if redis is not None:
                await wait_listening(redis, redis_port)
            await wait_listening(server, port)
            monitor = MonitorClient(url, self.token, request_timeout=30.0)
            await monitor.connect()
            await monitor.status_request(detail=False)  # whatever the first request sets up
            if self.plan.workers > 1:
                await self.wait_for_workers(monitor)
            await asyncio.sleep(1.0)
            yield url, meter, monitor
        except MonitorError:
            if server.exited() is not None:
                self.run.problems.append(
                    f"the server exited with status {server.exited()}:\n{server.tail()}"
                )
            raise
        finally:
            if monitor is not None:
                with contextlib.suppress(Exception):
                    await monitor.close()
            if meter.swarm is not None:
                await self.stop_swarm(meter.swarm)
            self.run.exit_status = await server.stop(grace=SERVER_GRACE)
            if redis is not None:
                await redis.stop(grace=5)
            if self.run.exit_status not in (0, -signal.SIGTERM, None):
                note = (
                    f"the server ended with status {self.run.exit_status} after SIGTERM"
                    + (f" (killed: not gone within {SERVER_GRACE:g} s)"
                       if self.run.exit_status == -signal.SIGKILL else "")
                )  # fmt: skip
                if note not in self.run.notes:
                    self.run.notes.append(note)

    async def wait_for_workers(self, monitor: MonitorClient) -> None:
        """Until every worker serves the port and the others know it: clients that come
        sooner would all land on the first ones."""
        deadline = time.monotonic() + WORKERS_TIMEOUT
        while True:
            overview = await monitor.status_request(detail=False)
            seen = int((overview.get("cluster") or {}).get("workers", 1))
            if seen >= self.plan.workers:
                self.say(f"{seen} workers")
                return
            if time.monotonic() > deadline:
                raise BenchError(
                    f"{seen} of {self.plan.workers} workers after {WORKERS_TIMEOUT:.0f} s"
                )
            await asyncio.sleep(0.2)

    # -- 1 and 2: the ramps, then memory -------------------------------------------

    async def connect(self, url: str, meter: Meter, monitor: MonitorClient) -> None:
        """The last ramp, then the memory its N idle clients take once settled."""
        before = meter.memory()
        came = await self.ramp(url, meter, monitor, len(self.run.ramps))
        await asyncio.sleep(self.plan.settle)
        self.run.reached = int((await monitor.status_request(detail=False)).get("clients", 0))
        if self.run.reached < came:
            self.run.problems.append(f"{came - self.run.reached:,} clients dropped while settling")
        self.measure_memory(before, meter.memory())

    async def ramp(self, url: str, meter: Meter, monitor: MonitorClient, index: int) -> int:
        """One swarm of N, timed from the first client the server counts to the N-th;
        how many came."""
        n = self.plan.conns
        cpu_before = meter.read()
        command = [PY, "-m", "msstorm.swarm.cli", "--url", url, "--conns", str(n),
                   "--no-log", "--json"]  # fmt: skip
        if self.plan.swarm_procs:
            command += ["--procs", str(self.plan.swarm_procs)]
        name = f"{self.kind.name}-swarm" + (f"-{index + 1}" if index else "")
        swarm = meter.swarm = Child(name, command, self.workdir)
        spawned = last_poll = last_growth = last_line = time.perf_counter()
        grown_at = spawned  # when the count last grew (between two polls)
        first: float | None = None
        full: float | None = None
        clients = seen = 0
        while True:
            clients = int((await monitor.status_request(detail=False)).get("clients", 0))
            now = time.perf_counter()
            # Each moment lies between two polls: take the middle.
            if first is None and clients > 0:
                first = (last_poll + now) / 2
            if clients >= n:
                full = (last_poll + now) / 2
                break
            if clients > seen:
                seen, last_growth, grown_at = clients, now, (last_poll + now) / 2
            if swarm.exited() is not None:
                self.run.problems.append(
                    f"the swarm exited (status {swarm.exited()}) with {clients:,} of {n:,} "
                    f"connected\n{swarm.tail()}"
                )
                break
            if now - spawned > self.plan.connect_timeout or now - last_growth > STALL:
                why = (
                    f"not all connected within {self.plan.connect_timeout:.0f} s"
                    if now - spawned > self.plan.connect_timeout
                    else f"no new client for {STALL:.0f} s"
                )
                self.run.problems.append(f"{why}: {clients:,} of {n:,} connected")
                break
            if now - last_line >= 1.0:
                last_line = now
                self.say(f"connecting {clients:,}/{n:,} ({now - spawned:.1f} s)")
            last_poll = now
            await asyncio.sleep(POLL)
        cpu_joined = meter.read() - cpu_before
        joined_at = time.perf_counter()
        self.run.swarm_procs = len(meter.swarm_pids()) - 1
        if first is not None and clients:
            # Short of N, the rate is of the clients that came, up to the last of them.
            end = full if full is not None else grown_at
            seconds = end - first
            ramp = {
                "clients": clients,
                "seconds": seconds,
                "rate": clients / seconds if seconds > 0 else None,
                "since_spawn_s": end - spawned,
                "server_cpu_s": cpu_joined.server,
                "swarm_cpu_s": cpu_joined.swarm,
                # over the swarm's whole life so far, its interpreters' start included
                "swarm_busy_pct": cpu_joined.swarm / (joined_at - spawned) * 100.0,
                "complete": full is not None,
            }
            self.run.ramps.append(ramp)
            rate = ramp["rate"]
            self.say(
                f"ramp {index + 1}: {clients:,}/{n:,} connected in {seconds:.2f} s"
                + (f" ({rate:,.0f}/s)" if rate else "")
            )
        return clients

    def measure_memory(self, before: dict[str, int], after: dict[str, int]) -> None:
        """Server memory per idle connection: its growth over the swarm, per client."""
        reached = self.run.reached
        if not reached:
            return
        per = {
            key: (after[key] - before[key]) / reached
            for key in ("VmRSS", "RssAnon", "Private_Dirty")
            if key in after and key in before
        }
        self.run.memory = {
            "before_kB": before,
            "after_kB": after,
            "clients": reached,
            "per_conn_KiB": per,
        }
        self.say(f"memory: {per['VmRSS']:.2f} KiB per idle connection (VmRSS growth / N)")

    # -- 3 and 4: broadcasts and trees --------------------------------------------

    async def operation(
        self, meter: Meter, monitor: MonitorClient, request: dict[str, Any], label: str
    ) -> tuple[Any, float, Cpu]:
        async with ticking(f"{self.tag} {label}"):
            before = meter.read()
            t0 = time.perf_counter()
            waited = await monitor.run_operation(
                request, timeout=self.plan.op_timeout + 15, detail_when_giving_up=False
            )
            wall = time.perf_counter() - t0
            cpu = meter.read() - before
        return waited, wall, cpu

    async def status_cost(self, meter: Meter, monitor: MonitorClient, op: str) -> float | None:
        """Server CPU to answer one full statusRequest of a finished operation: about
        what its final status cost (counted in the operation's CPU, once)."""
        before = meter.read()
        try:
            await monitor.status_request(op, detail=True)
        except MonitorError:
            return None
        return (meter.read() - before).server

    async def broadcasts(self, meter: Meter, monitor: MonitorClient) -> None:
        total = self.plan.broadcasts
        for i in range(total):
            label = f"broadcast {i + 1}/{total}"
            waited, wall, cpu = await self.operation(meter, monitor, {"type": "broadcast"}, label)
            status_cpu = await self.status_cost(meter, monitor, waited.ack["op"])
            sample = operation_sample(waited, wall, cpu, status_cpu)
            self.run.broadcasts.append(sample)
            self.say(
                f"{label}: {sample['received']:,}/{sample['expected']:,} answers in "
                f"{sample['wall_ms']:.1f} ms (server says {fmt(sample['elapsed_ms'], 1)} ms), "
                f"server {cpu.server / max(1, sample['received']) * 1e6:.2f} us/recipient, "
                f"swarm {cpu.swarm / max(1, sample['received']) * 1e6:.2f} us/recipient"
            )
            await asyncio.sleep(PAUSE)

    async def trees(self, meter: Meter, monitor: MonitorClient, leaves: int, total: int) -> None:
        samples = self.run.trees.setdefault(leaves, [])
        for i in range(total):
            label = f"tree of {leaves:,} leaves {i + 1}/{total}"
            request = {"type": "tree", "treeLeaves": leaves}
            try:
                waited, wall, cpu = await self.operation(meter, monitor, request, label)
            except MonitorError as exc:
                if exc.code in ("tree-too-large", "bad-tree-leaves"):
                    self.run.problems.append(f"tree of {leaves:,} leaves refused: {exc}")
                    return
                raise
            sample = operation_sample(waited, wall, cpu)
            samples.append(sample)
            pokes = max(1, sample["received"])
            self.say(
                f"{label}: {sample['received']:,}/{sample['expected']:,} pokes in "
                f"{sample['wall_ms']:.1f} ms ({sample['received'] / wall:,.0f} pokes/s), "
                f"server {cpu.server / pokes * 1e6:.2f} us/poke"
            )
            await asyncio.sleep(PAUSE)

    # -- 5: unicasts -------------------------------------------------------------

    async def unicasts(self, meter: Meter, monitor: MonitorClient) -> None:
        total = self.plan.unicasts
        rtts: list[float] = []
        walls: list[float] = []
        lost = 0
        last_line = time.monotonic()
        before = meter.read()
        t0 = time.perf_counter()
        for i in range(total):
            t = time.perf_counter()
            waited = await monitor.run_operation(
                {"type": "unicast"}, timeout=self.plan.op_timeout + 15, detail_when_giving_up=False
            )
            walls.append((time.perf_counter() - t) * 1000.0)
            answer = waited.status.get("unicast")
            if isinstance(answer, dict) and isinstance(answer.get("rtt"), int | float):
                rtts.append(float(answer["rtt"]))
            else:
                lost += 1
            if time.monotonic() - last_line >= 1.0:
                last_line = time.monotonic()
                self.say(f"unicast {i + 1:,}/{total:,}")
        wall = time.perf_counter() - t0
        cpu = meter.read() - before
        self.run.unicasts = {
            "count": total,
            "rtt_ms": rtts,
            "monitor_ms": walls,
            "lost": lost,
            "wall_s": wall,
            "server_cpu_s": cpu.server,
            "swarm_cpu_s": cpu.swarm,
        }
        self.say(
            f"{total:,} unicasts: rtt p50 {fmt(common.percentile(rtts, 0.5), 3)} ms, "
            f"p99 {fmt(common.percentile(rtts, 0.99), 3)} ms, {lost} lost"
        )

    async def stop_swarm(self, swarm: Child) -> None:
        await swarm.stop(grace=20.0)
        lines = swarm.output().strip().splitlines()
        with contextlib.suppress(ValueError, IndexError):
            self.run.swarm_summary = json.loads(lines[-1])
        summary = self.run.swarm_summary or {}
        errors = summary.get("errors") or {}
        if errors:
            self.run.notes.append(
                "the swarm met "
                + ", ".join(f"{count:,} x {kind!r}" for kind, count in sorted(errors.items()))
                + f" and redialled ({summary.get('reconnects', 0):,} reconnects)"
            )


def fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def start_redis(name: str, port: int, workdir: Path) -> Child:
    """A redis-server on a loopback port, kept in memory only (pub/sub is all it serves)."""
    command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1",
               "--save", "", "--appendonly", "no"]  # fmt: skip
    return Child(name, command, workdir)


def redis_version() -> str | None:
    try:
        out = subprocess.run(
            ["redis-server", "--version"], capture_output=True, text=True, check=True, timeout=10
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return next((w.removeprefix("v=") for w in out.split() if w.startswith("v=")), None)


# -- the floors --------------------------------------------------------------------------


async def echo_round(workdir: Path, index: int, count: int, gap_ms: float = 0.0) -> dict[str, Any]:
    """``count`` round trips of a poke-sized frame between two fresh picows processes,
    ``gap_ms`` apart (0: back to back)."""
    port = free_port()
    script = str(PEERS / "picows_echo.py")
    server = Child(f"echo-{index}", [PY, script, "serve", "--port", str(port)], workdir)
    try:
        await wait_listening(server, port)
        client = Child(
            f"echo-{index}-ping",
            [PY, script, "ping", "--url", f"ws://127.0.0.1:{port}/",
             "--count", str(count), "--gap-ms", str(gap_ms), "--timeout", "60"],
            workdir,
        )  # fmt: skip
        deadline = time.monotonic() + 90
        while client.exited() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        status = await client.stop(grace=1)
        if status != 0:
            raise BenchError(f"the echo client ended with status {status}\n{client.tail()}")
        result: dict[str, Any] = json.loads(client.output())
        rtts = [us / 1000.0 for us in result["rtt_us"]]
        return {
            "p50": common.percentile(rtts, 0.5),
            "p99": common.percentile(rtts, 0.99),
            "round_trips": len(rtts),
            "payload_bytes": result["payload_bytes"],
            "gap_ms": gap_ms,
        }
    finally:
        await server.stop()


class EchoFloor:
    """Rounds of the echo floor, one before each server and one at the end, so that
    the floor is read in the same machine state as the servers."""

    def __init__(self, plan: Plan, workdir: Path) -> None:
        self.plan = plan
        self.workdir = workdir
        self.rounds: list[dict[str, Any]] = []
        self.paced: list[dict[str, Any]] = []

    async def measure(self) -> None:
        index = len(self.rounds) + len(self.paced)
        try:
            r = await echo_round(self.workdir, index, self.plan.echo_round_trips)
            p = await echo_round(self.workdir, index + 1, PACED_ROUND_TRIPS, PACED_GAP_MS)
        except (BenchError, ValueError, KeyError) as exc:
            common.progress(f"echo floor failed: {exc}")
            return
        self.rounds.append(r)
        self.paced.append(p)
        common.progress(
            f"echo floor: {r['round_trips']:,} round trips, p50 {r['p50']:.3f} ms, "
            f"p99 {r['p99']:.3f} ms; {PACED_GAP_MS:g} ms apart, p50 {p['p50']:.3f} ms, "
            f"p99 {p['p99']:.3f} ms"
        )

    def result(self) -> dict[str, Any] | None:
        if not self.rounds:
            return None
        return {
            "p50": common.summary([r["p50"] for r in self.rounds]),
            "p99": common.summary([r["p99"] for r in self.rounds]),
            "round_trips": self.rounds[0]["round_trips"],
            "payload_bytes": self.rounds[0]["payload_bytes"],
            "rounds": self.rounds,
            "paced": {
                "gap_ms": PACED_GAP_MS,
                "p50": common.summary([r["p50"] for r in self.paced]),
                "p99": common.summary([r["p99"] for r in self.paced]),
                "round_trips": PACED_ROUND_TRIPS,
                "rounds": self.paced,
            },
        }


def send_floor(conns: int) -> dict[str, Any] | None:
    """The latest bench/run_broadcast.py figures for ``conns`` clients (else its largest)."""
    path = common.RESULTS_DIR / "broadcast.jsonl"
    try:
        records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except (OSError, ValueError):
        return None
    floors = [r for r in records if r.get("figure") == "fan-out CPU per recipient (floor)"]
    if not floors:
        return None
    same = [r for r in floors if r.get("conns") == conns]
    chosen = same[-1] if same else max(floors, key=lambda r: (r.get("conns", 0), r["time"]))
    run = [r for r in records if r["time"] == chosen["time"] and r.get("conns") == chosen["conns"]]
    by_figure = {r["figure"]: r for r in run}

    def median(figure: str) -> float | None:
        record = by_figure.get(figure)
        return record["median"] if record else None

    return {
        "conns": chosen["conns"],
        "time": chosen["time"],
        "commit": (chosen["git"]["commit"] or "")[:12],
        "command": chosen["command"],
        "floor_us": chosen["median"],
        "floor": chosen,
        "fanout_us": median("fan-out CPU per recipient (cython)"),
        "fanout_ratio": by_figure.get("fan-out / send floor"),
        "whole_broadcast_us": median("whole broadcast server CPU per recipient"),
    }


# -- the figures ----------------------------------------------------------------------


@dataclass(frozen=True)
class Figure:
    key: str
    label: str
    unit: str
    digits: int
    higher_is_better: bool
    swarm: bool = False  # a swarm row, shown under the figure it goes with


def per(samples: list[dict[str, Any]], key: str, scale: float = 1e6) -> list[float]:
    """``key`` per answer received, for each sample that received any."""
    return [s[key] / s["received"] * scale for s in samples if s["received"] and s[key] is not None]


def busy(samples: list[dict[str, Any]]) -> list[float]:
    return [s["swarm_cpu_s"] / (s["wall_ms"] / 1000.0) * 100.0 for s in samples if s["wall_ms"]]


def figures_of(run: ServerRun, plan: Plan) -> dict[str, tuple[Figure, list[float]]]:
    """Every figure of one server's run: its definition and its samples."""
    out: dict[str, tuple[Figure, list[float]]] = {}

    def add(figure: Figure, samples: Sequence[float | None]) -> None:
        values = [float(v) for v in samples if v is not None]
        if values:
            out[figure.key] = (figure, values)

    ramps = run.ramps
    add(Figure("clients", f"clients connected (of {plan.conns:,} asked)", "", 0, True),
        [run.reached])  # fmt: skip
    add(
        Figure("connect_s", "time to connect them, first to last", "s", 2, False),
        [r["seconds"] for r in ramps],
    )
    add(
        Figure("handshake_rate", "handshake rate from cold", "conn/s", 0, True),
        [r["rate"] for r in ramps],
    )
    # On a small box the server and the swarm share the cores: CPU per handshake says what
    # the rate alone cannot when both are busy.
    add(
        Figure("connect_cpu", "server CPU per handshake", "us", 0, False),
        [r["server_cpu_s"] / r["clients"] * 1e6 for r in ramps],
    )
    add(
        Figure("connect_swarm", "swarm CPU while connecting, % of one core", "%", 0, False, True),
        [r["swarm_busy_pct"] for r in ramps],
    )
    if run.swarm_summary is not None:
        add(
            Figure("connect_swarm_s", "the swarm's own time to connect all, from its start", "s",
                   2, False, True),
            [run.swarm_summary.get("seconds_to_connect_all")],
        )  # fmt: skip
    mem = run.memory.get("per_conn_KiB", {})
    add(
        Figure("memory", "server memory per idle connection (VmRSS)", "KiB", 2, False),
        [mem.get("VmRSS")],
    )
    b = run.broadcasts
    add(
        Figure("broadcast_ms", "broadcast completion (monitor: initiatePoke to status)", "ms", 1,
               False),
        [s["wall_ms"] for s in b],
    )  # fmt: skip
    add(
        Figure("broadcast_elapsed_ms", "broadcast, the server's own elapsedMs", "ms", 1, False),
        [s["elapsed_ms"] for s in b],
    )
    add(
        Figure("broadcast_cpu", "broadcast server CPU per recipient", "us", 2, False),
        per(b, "server_cpu_s"),
    )
    add(
        Figure(
            "broadcast_status_cpu", "broadcast: of which the final status (est.)", "us", 2, False
        ),
        per(b, "status_cpu_s"),
    )
    add(
        Figure("broadcast_swarm", "swarm CPU per recipient", "us", 2, False, True),
        per(b, "swarm_cpu_s"),
    )
    add(
        Figure("broadcast_swarm_busy", "swarm CPU during a broadcast, % of one core", "%", 0,
               False, True),
        busy(b),
    )  # fmt: skip
    add(
        Figure("broadcast_rtt_p50", "broadcast RTT p50 (the server's)", "ms", 2, False),
        [(s["rtt"] or {}).get("p50") for s in b],
    )
    for leaves, samples in run.trees.items():
        tag = f"tree{leaves}"
        pokes = f"{2 * leaves - 1:,} pokes"
        add(
            Figure(f"{tag}_rate", f"tree of {leaves:,} leaves ({pokes}) rate", "pokes/s", 0,
                   True),
            [s["received"] / (s["wall_ms"] / 1000.0) for s in samples if s["wall_ms"]],
        )  # fmt: skip
        add(
            Figure(f"{tag}_ms", f"tree of {leaves:,} leaves completion", "ms", 1, False),
            [s["wall_ms"] for s in samples],
        )
        add(
            Figure(f"{tag}_cpu", f"tree of {leaves:,}: server CPU per poke", "us", 2, False),
            per(samples, "server_cpu_s"),
        )
        add(
            Figure(f"{tag}_swarm", "swarm CPU per poke", "us", 2, False, True),
            per(samples, "swarm_cpu_s"),
        )
        add(
            Figure(f"{tag}_swarm_busy", "swarm CPU during a tree, % of one core", "%", 0, False,
                   True),
            busy(samples),
        )  # fmt: skip
    u = run.unicasts
    if u.get("rtt_ms"):
        rtts = u["rtt_ms"]
        n = len(rtts)
        add(
            Figure("unicast_p50", f"unicast RTT p50 ({n:,} sequential)", "ms", 3, False),
            [common.percentile(rtts, 0.5)],
        )
        add(
            Figure("unicast_p99", f"unicast RTT p99 ({n:,} sequential)", "ms", 3, False),
            [common.percentile(rtts, 0.99)],
        )
        add(
            Figure("unicast_monitor_p50", "unicast seen by the monitor, p50", "ms", 3, False),
            [common.percentile(u["monitor_ms"], 0.5)],
        )
        add(
            Figure(
                "unicast_cpu", "server CPU per unicast (initiatePoke to status)", "us", 1, False
            ),
            [u["server_cpu_s"] / u["count"] * 1e6],
        )
        add(
            Figure("unicast_swarm", "swarm CPU per unicast", "us", 1, False, True),
            [u["swarm_cpu_s"] / u["count"] * 1e6],
        )
    lost = sum(s["lost"] for s in b) + sum(s["lost"] for t in run.trees.values() for s in t)
    lost += u.get("lost", 0)
    if run.reached:
        add(Figure("lost", "answers lost, every operation", "", 0, False), [lost])
    if run.swarm_summary is not None:
        add(
            Figure("reconnects", "swarm reconnects", "", 0, False, True),
            [run.swarm_summary.get("reconnects", 0)],
        )
    return out


def cell(values: list[float] | None, figure: Figure) -> str:
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:,.{figure.digits}f}"
    s = common.summary(values)
    d = figure.digits
    return f"{s['median']:,.{d}f} ({s['min']:,.{d}f}..{s['max']:,.{d}f}, n={len(values)})"


def median(values: list[float] | None) -> float | None:
    return common.summary(values)["median"] if values else None


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


# -- goals ---------------------------------------------------------------------------------


@dataclass
class Goal:
    text: str
    value: float | None
    target: float
    at_most: bool  # met when value <= target (else value >= target)
    how: str
    quoted: bool = False

    @property
    def met(self) -> bool | None:
        if self.value is None:
            return None
        return self.value <= self.target if self.at_most else self.value >= self.target

    def verdict(self) -> str:
        if self.met is None:
            return "n/a (not measured)"
        word = "**met**" if self.met else "**not met**"
        return word + (" (quoted, not this run)" if self.quoted else "")


def goals(
    m: dict[str, dict[str, list[float]]], echo: dict[str, Any] | None, floor: dict[str, Any] | None
) -> list[Goal]:
    def med(server: str, key: str) -> float | None:
        return median(m.get(server, {}).get(key))

    out = [
        Goal(
            "broadcast server CPU per recipient <= 1/3 of Node's",
            ratio(med("msstorm", "broadcast_cpu"), med("node", "broadcast_cpu")),
            1 / 3,
            True,
            "msstorm / Node",
        )
    ]
    fan = floor["fanout_ratio"] if floor else None
    out.append(
        Goal(
            "fan-out <= 1.3x a C loop of send() (bench/run_broadcast.py)",
            fan["median"] if fan else None,
            1.3,
            True,
            f"cython / floor at {floor['conns']:,} clients, {floor['time']}, `{floor['commit']}`"
            if floor
            else "no bench/results/broadcast.jsonl",
            quoted=True,
        )
    )
    out += [
        Goal(
            "broadcast completion >= 2x faster than Node's",
            ratio(med("node", "broadcast_ms"), med("msstorm", "broadcast_ms")),
            2.0,
            False,
            "Node / msstorm, monitor-observed",
        ),
        Goal(
            "broadcast completion >= 10x faster than python-socketio's",
            ratio(med("python-socketio", "broadcast_ms"), med("msstorm", "broadcast_ms")),
            10.0,
            False,
            "python-socketio / msstorm, monitor-observed",
        ),
        Goal(
            "the same, by the servers' own elapsedMs: >= 2x faster than Node's",
            ratio(med("node", "broadcast_elapsed_ms"), med("msstorm", "broadcast_elapsed_ms")),
            2.0,
            False,
            "Node / msstorm, elapsedMs",
        ),
        Goal(
            "the same, by elapsedMs: >= 10x faster than python-socketio's",
            ratio(
                med("python-socketio", "broadcast_elapsed_ms"),
                med("msstorm", "broadcast_elapsed_ms"),
            ),
            10.0,
            False,
            "python-socketio / msstorm, elapsedMs",
        ),
        Goal(
            "server memory per connection <= 1/3 of Node's",
            ratio(med("msstorm", "memory"), med("node", "memory")),
            1 / 3,
            True,
            "msstorm / Node, VmRSS growth",
        ),
        Goal(
            f"server memory per connection <= {GOAL_KIB:g} KiB",
            med("msstorm", "memory"),
            GOAL_KIB,
            True,
            "msstorm, KiB",
        ),
        Goal(
            "tree of 4,096 leaves >= 3x Node's pokes per second",
            ratio(med("msstorm", "tree4096_rate"), med("node", "tree4096_rate")),
            3.0,
            False,
            "msstorm / Node",
        ),
        Goal(
            "unicast RTT p50 <= 1.5x the echo floor",
            ratio(med("msstorm", "unicast_p50"), echo["p50"]["median"] if echo else None),
            1.5,
            True,
            "msstorm p50 / picows echo p50",
        ),
        Goal(
            "the same, against the echo paced as the unicasts are "
            f"({PACED_GAP_MS:g} ms apart): <= 1.5x",
            ratio(med("msstorm", "unicast_p50"), echo["paced"]["p50"]["median"] if echo else None),
            1.5,
            True,
            "msstorm p50 / paced picows echo p50",
        ),
        Goal(
            "handshake rate >= 2x Node's",
            ratio(med("msstorm", "handshake_rate"), med("node", "handshake_rate")),
            2.0,
            False,
            "msstorm / Node",
        ),
    ]
    return out


# -- the report ------------------------------------------------------------------------------


def report(
    runs: dict[str, ServerRun],
    plan: Plan,
    echo: dict[str, Any] | None,
    floor: dict[str, Any] | None,
    ctx: dict[str, Any],
    wall: float,
    args: argparse.Namespace,
) -> str:
    figures: dict[str, Figure] = {}
    measured: dict[str, dict[str, list[float]]] = {}
    for name, run in runs.items():
        measured[name] = {}
        for key, (figure, values) in figures_of(run, plan).items():
            figures.setdefault(key, figure)
            measured[name][key] = values
    names = list(runs)
    peers = [p for p in PEER_NAMES if p in runs and "msstorm" in runs]
    header = ["figure", "unit", *(SERVERS[n].label for n in names)]
    header += [f"msstorm / {SERVERS[p].label}" for p in peers]
    rows = []
    for key, figure in figures.items():
        label = f"&nbsp;&nbsp;↳ {figure.label}" if figure.swarm else figure.label
        row = [label, figure.unit, *(cell(measured[n].get(key), figure) for n in names)]
        for p in peers:
            r = ratio(median(measured["msstorm"].get(key)), median(measured[p].get(key)))
            row.append("" if figure.swarm or r is None or key == "clients" else f"{r:.2f}x")
        rows.append(row)
    goal_list = goals(measured, echo, floor)
    goal_rows = [
        [
            g.text,
            f"{g.value:.2f}" if g.value is not None else "n/a",
            f"{'<=' if g.at_most else '>='} {g.target:.2f}",
            g.verdict(),
            g.how,
        ]
        for g in goal_list
    ]
    git = ctx["git"]
    v = ctx["versions"]
    repeats = ", ".join(
        [f"{plan.ramps} ramp{'s' if plan.ramps > 1 else ''} (a fresh server each)"]
        + [f"{plan.broadcasts} broadcasts"]
        + [f"{r} trees of {leaves:,}" for leaves, r in plan.trees]
        + [f"{plan.unicasts:,} unicasts"]
    )
    if plan.workers > 1:
        deployment = (
            f"Each server runs alone, in {plan.workers} worker processes on one port "
            f"(msstorm-server --workers {plan.workers}; Node socket.io under the cluster "
            f"module with @socket.io/cluster-adapter {v.get('@socket.io/cluster-adapter')}; "
            f"python-socketio as {plan.workers} processes with AsyncRedisManager on "
            f"redis-server {v.get('redis-server')}, redis-py {v.get('redis')}), their CPU and "
            "memory summed over all their processes (the primary or supervisor and, for "
            "python-socketio, the redis-server too), "
        )
    else:
        deployment = "Each server runs alone, one process, "
    text = [
        "# MessageStorm end to end, side by side",
        "",
        f"`{ctx['command']}` at `{(git['commit'] or '')[:12]}`"
        f"{' (dirty tree)' if git['dirty'] else ''}, {ctx['time']}, {wall:.0f} s in all; "
        f"{ctx['machine']['cores']} cores ({ctx['machine']['cpu']}), "
        f"{(ctx['machine']['memory_kB'] or 0) / 2**20:.0f} GiB, "
        f"RLIMIT_NOFILE {ctx['machine']['rlimit_nofile'][0]:,}.",
        f"Python {v['python']}, picows {v['picows']}, uvloop {v['uvloop']}, python-socketio "
        f"{v['python-socketio']} (python-engineio {v['python-engineio']}, aiohttp "
        f"{v['aiohttp']}); Node {v.get('node')}, socket.io {v.get('socket.io')} (engine.io "
        f"{v.get('engine.io')}, ws {v.get('ws')}).",
        "",
        f"{'Quick mode' if args.quick else 'Full mode'}: N = {plan.conns:,} clients asked "
        f"of every server; {repeats} per server. {deployment}"
        "compression off, ping interval 25 s; the same msstorm swarm "
        + "and the same monitor drive all (swarm processes: "
        + ", ".join(f"{SERVERS[n].label} {runs[n].swarm_procs}" for n in names)
        + ").",
        "Cells: the median (min..max, n repeats) or a single value; the RTT percentiles are "
        "over all the sequential unicasts of one run. Ratios are of the medians.",
        "",
        common.markdown_table(header, rows),
        "",
        "## Goals of issue 6",
        "",
        common.markdown_table(["goal", "value", "target", "verdict", "ratio of"], goal_rows),
        "",
        "## Floors",
        "",
    ]
    if echo:
        unicast = median(measured.get("msstorm", {}).get("unicast_p50"))
        text.append(
            f"- Echo floor: raw picows echo of a {echo['payload_bytes']}-byte text frame on one "
            f"loopback connection between two processes (bench/peers/picows_echo.py), "
            f"{echo['round_trips']:,} round trips a round, one round before each server and "
            f"one at the end: p50 {common.fmt_spread(echo['p50'], 3)} ms, p99 "
            f"{common.fmt_spread(echo['p99'], 3)} ms. msstorm's unicast p50 / echo p50: "
            f"{fmt(ratio(unicast, echo['p50']['median']))}x."
        )
        paced = echo["paced"]
        text.append(
            f"- The same echo paced as the sequential unicasts are, {paced['gap_ms']:g} ms "
            f"between round trips ({paced['round_trips']:,} a round): p50 "
            f"{common.fmt_spread(paced['p50'], 3)} ms, p99 {common.fmt_spread(paced['p99'], 3)} "
            "ms: what a process idle between two messages adds here (its wake-up on this VM), "
            "which every unicast's RTT includes and a back-to-back echo does not. msstorm's "
            f"unicast p50 / paced echo p50: {fmt(ratio(unicast, paced['p50']['median']))}x."
        )
    if floor:
        whole = median(measured.get("msstorm", {}).get("broadcast_cpu"))
        fan = floor["fanout_ratio"]
        text.append(
            f"- Send floor (quoted from `{floor['command']}` at `{floor['commit']}`, "
            f"{floor['time']}, {floor['conns']:,} clients): a C loop of send() "
            f"{floor['floor_us']:.2f} us per recipient; msstorm's fan-out "
            f"{fmt(floor['fanout_us'])} us ({fmt(fan['median'] if fan else None)}x the floor). "
            f"A whole broadcast here costs msstorm {fmt(whole)} us per recipient, "
            f"{fmt(ratio(whole, floor['floor_us']))}x the send floor: it also reads, decodes and "
            "counts each answer and sends the status."
        )
    else:
        text.append("- Send floor: no bench/results/broadcast.jsonl; run bench/run_broadcast.py.")
    text += [
        "",
        "## How each figure is taken",
        "",
        "- Handshake rate: N over the time from the first client the server counts to the "
        f"N-th (`statusRequest` every {POLL * 1000:.0f} ms; each moment taken between two "
        f"polls), from a server started fresh: {plan.ramps} ramp(s), each on a server of its "
        "own; the swarm's processes start before its first connection; the last server and "
        "its swarm stay for the memory reading and the operations.",
        "- Memory: server VmRSS (/proc/PID/status) with N clients, "
        f"{plan.settle:g} s after the last joined, less VmRSS before the swarm, over N. User "
        "space only; kernel socket memory is the same for every server (bench/run_engine.py).",
        "- Broadcast and tree: the wall time is the monitor's, from emitting `initiatePoke` to "
        "decoding the final `status` (which for a broadcast carries one entry per answer); "
        "the goals use it, as it is the same clock for every server. `elapsedMs` is each "
        "server's own measure. CPU is the server process's (all threads) over the same time, "
        'per answer received; "of which the final status" is the server CPU of one more '
        "full `statusRequest` of the finished broadcast.",
        "- Unicast: the server's `rtt` (poke written to pokeBack decoded), sequential, to a "
        "random client among the N idle ones.",
        "- Swarm rows: the CPU of the swarm's processes (msstorm-client and its workers), "
        "over the same time; 100% is one core (the machine has "
        f"{ctx['machine']['cores']}).",
        "",
    ]
    notes = [(n, note) for n, r in runs.items() for note in r.notes]
    if notes:
        text += ["## Notes", ""]
        text += [f"- {SERVERS[name].label}: {note}" for name, note in notes]
        text.append("")
    problems = [(n, p) for n, r in runs.items() for p in r.problems]
    if problems:
        text += ["## Problems", ""]
        for name, problem in problems:
            first, _, rest = problem.partition("\n")
            text.append(f"- {SERVERS[name].label}: {first}")
            if rest:
                text += ["", "```", rest, "```", ""]
        text.append("")
    md = "\n".join(text)

    records: list[dict[str, Any]] = []
    for name, by_key in measured.items():
        for key, samples in by_key.items():
            figure = figures[key]
            records.append(
                {
                    "figure": key,
                    "label": figure.label,
                    "server": name,
                    "conns": plan.conns,
                    "clients": runs[name].reached,
                    "workers": runs[name].workers,
                    "unit": figure.unit,
                    **common.summary(samples),
                    **ctx,
                }
            )
        run = runs[name]
        records.append(
            {
                "figure": "raw",
                "server": name,
                "conns": plan.conns,
                "clients": run.reached,
                "ramps": run.ramps,
                "memory": run.memory,
                "broadcasts": run.broadcasts,
                "trees": {str(k): v for k, v in run.trees.items()},
                "unicasts": run.unicasts,
                "swarm_summary": run.swarm_summary,
                "swarm_procs": run.swarm_procs,
                "workers": run.workers,
                "helpers": run.helpers,
                "problems": run.problems,
                "notes": run.notes,
                "exit_status": run.exit_status,
                "wall_s": run.wall_s,
                **ctx,
            }
        )
    for p in peers:
        for key, figure in figures.items():
            r = ratio(median(measured["msstorm"].get(key)), median(measured[p].get(key)))
            if r is not None and not figure.swarm and key != "clients":
                records.append({"figure": f"{key} msstorm/{p}", "unit": "x", "value": r, **ctx})
    for g in goal_list:
        records.append(
            {
                "figure": f"goal: {g.text}",
                "value": g.value,
                "target": g.target,
                "at_most": g.at_most,
                "met": g.met,
                "quoted": g.quoted,
                "ratio_of": g.how,
                **ctx,
            }
        )
    if echo:
        for key in ("p50", "p99"):
            records.append(
                {
                    "figure": f"echo floor rtt {key}",
                    "unit": "ms",
                    **echo[key],
                    "round_trips": echo["round_trips"],
                    "payload_bytes": echo["payload_bytes"],
                    **ctx,
                }
            )
            records.append(
                {
                    "figure": f"echo floor paced rtt {key}",
                    "unit": "ms",
                    **echo["paced"][key],
                    "gap_ms": echo["paced"]["gap_ms"],
                    "round_trips": echo["paced"]["round_trips"],
                    "payload_bytes": echo["payload_bytes"],
                    **ctx,
                }
            )
    if floor:
        records.append(
            {
                "figure": "send floor (quoted)",
                "unit": "us",
                "median": floor["floor_us"],
                "from": {k: floor[k] for k in ("time", "commit", "command", "conns")},
                **ctx,
            }
        )
    common.append_jsonl("storm", records)
    common.write_text(markdown_name(plan, args.quick), md)
    return md


def markdown_name(plan: Plan, quick: bool) -> str:
    """The table's file: the multi-process forms' and the quick mode's beside, not over,
    the full mode's one-process table (the one the README quotes)."""
    return "storm" + ("-workers" if plan.workers > 1 else "") + ("-quick" if quick else "") + ".md"


# -- main ----------------------------------------------------------------------------------


def run_context(plan: Plan) -> dict[str, Any]:
    ctx = common.context()
    ctx["versions"].update(common.node_versions(NODE_DIR, NODE_PACKAGES))
    if plan.workers > 1:  # what the multi-process forms run on besides
        ctx["versions"].update(common.node_versions(NODE_DIR, NODE_CLUSTER_PACKAGES))
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            ctx["versions"]["redis"] = importlib.metadata.version("redis")
        ctx["versions"]["redis-server"] = redis_version()
    return ctx


async def amain(args: argparse.Namespace) -> int:
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    plan = make_plan(args)
    started = time.monotonic()
    ctx = run_context(plan)
    names: list[str] = args.servers
    if "node" in names and not (NODE_DIR / "node_modules").is_dir():
        raise SystemExit(f"run_storm: no {NODE_DIR}/node_modules: run `make node-deps` first")
    adapter = NODE_DIR / "node_modules" / NODE_CLUSTER_PACKAGES[0]
    if "node" in names and plan.workers > 1 and not adapter.is_dir():
        raise SystemExit(f"run_storm: no {adapter}: run `make node-deps` first")
    if "node" in names and shutil.which("node") is None:
        raise SystemExit("run_storm: node is not installed")
    if "python-socketio" in names and plan.workers > 1 and shutil.which("redis-server") is None:
        raise SystemExit("run_storm: redis-server is not installed (Debian: redis-server)")
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="msstorm-bench-storm-"))
    workdir.mkdir(parents=True, exist_ok=True)
    common.progress(
        f"storm: {', '.join(names)} at N = {plan.conns:,}; logs in {workdir}"
        + (" (quick mode)" if args.quick else "")
    )
    token = common.token()
    echo = EchoFloor(plan, workdir)
    runs: dict[str, ServerRun] = {}
    for name in names:
        if not args.no_echo:
            await echo.measure()
        runs[name] = await Session(SERVERS[name], plan, workdir, token).measure()
    if not args.no_echo:
        await echo.measure()
    floor = send_floor(plan.conns)
    md = report(runs, plan, echo.result(), floor, ctx, time.monotonic() - started, args)
    print(md)
    common.progress(
        f"storm: {time.monotonic() - started:.0f} s; "
        f"bench/results/{markdown_name(plan, args.quick)} and storm.jsonl"
    )
    if any(r.problems for r in runs.values()) or args.workdir:
        common.progress(f"storm: the servers' and swarms' logs are in {workdir}")
    else:  # nothing went wrong: the logs say nothing the tables do not
        shutil.rmtree(workdir, ignore_errors=True)
    # A peer that falls short is a finding, reported above; msstorm falling short fails.
    ours = runs.get("msstorm")
    lost = ours is not None and any(
        key == "lost" and values[0] for key, (_, values) in figures_of(ours, plan).items()
    )
    return 1 if ours is not None and (ours.problems or lost) else 0


def server_list(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in SERVERS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown server {', '.join(unknown) or '(none)'}: choose among {', '.join(SERVERS)}"
        )
    return names


def leaves_list(text: str) -> list[int]:
    try:
        leaves = [int(n) for n in text.split(",") if n.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of numbers: {text!r}") from None
    if not leaves or any(n < 1 or n & (n - 1) for n in leaves):
        raise argparse.ArgumentTypeError(f"tree leaves must be powers of two: {text!r}")
    return leaves


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n\n".join((__doc__ or "").split("\n\n")[1:3]),
    )
    parser.add_argument("--quick", action="store_true", help="fewer repeats: under 5 minutes")
    parser.add_argument("--conns", type=int, default=10_000, help="N clients (default 10,000)")
    parser.add_argument(
        "--servers",
        type=server_list,
        default=list(SERVERS),
        help=f"comma-separated, in this order (default {','.join(SERVERS)})",
    )
    parser.add_argument("--repeats", type=int, help="broadcasts and trees per server")
    parser.add_argument(
        "--trees",
        type=leaves_list,
        help="tree sizes in leaves, comma-separated (default 4096 quick, 4096,65536 full)",
    )
    parser.add_argument("--unicasts", type=int, help="sequential unicasts per server")
    parser.add_argument(
        "--ramps", type=int, help="fresh servers connected to per server (default 2 quick, 3 full)"
    )
    parser.add_argument("--swarm-procs", type=int, help="swarm processes (default: its own plan)")
    parser.add_argument(
        "--workers",
        type=int,
        help=f"processes of every server (default: 1 up to {PROCESS_CONNS:,} clients, "
        f"else one per {WORKER_CONNS:,})",
    )
    parser.add_argument("--no-echo", action="store_true", help="skip the echo floor")
    parser.add_argument("--workdir", help="where the servers' and swarms' logs go")
    args = parser.parse_args(argv)
    try:
        return uvloop.run(amain(args))
    except (KeyboardInterrupt, asyncio.CancelledError):
        common.progress("storm: interrupted; stopping what it started")
        return 130
    finally:
        kill_leftovers()


if __name__ == "__main__":
    sys.exit(main())
