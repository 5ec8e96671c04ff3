"""The scale run: as many concurrent connections as this machine holds, server and swarm on it.

    python bench/run_scale.py                 # toward 1,000,000, then the cross-worker figures
    python bench/run_scale.py --target 200000 --no-cross
    python bench/run_scale.py --cross-only

1. Calibration: 40,000 clients on 3 workers give the memory one connection costs
   (server and swarm user space, kernel slab for both ends); with what the
   machine has available, less a reserve, that says how many fit. The target is
   the smaller of that and ``--target``.
2. The run: ``msstorm-server --max-clients TARGET`` (as many workers as the
   open-file limit asks for) and ``msstorm-client --conns TARGET`` ramp up while
   the monitor watches the cluster's count and the machine's free memory; it
   stops when the target is reached, when memory runs low (the swarm is then
   killed, to keep the machine up), or when the count stops moving. Reported:
   connections held, time to connect them, server and swarm memory per
   connection (user space), kernel memory per connection, one broadcast's
   completion time at that size.
3. Cross-worker cost, at 19,000 clients (one worker holds 19,744): broadcast
   completion on 1 worker and on 4; tree pokes per second (4,096 leaves) on 1, 4
   and 16 workers.

The heartbeat runs every ``--ping-interval`` ms (60 s by default here: at a
million clients the 25 s default alone is 40,000 pings a second on 2 cores).
Results: bench/results/scale.jsonl, scale.md and cross-worker.md.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import uvloop

from bench import common
from bench.processes import BenchError, Child, free_port, kill_leftovers, wait_listening
from msstorm.monitor.client import MonitorClient

PY = sys.executable
GIB = 1024 * 1024  # kB
RESERVE_KB = 2 * GIB  # what the run leaves to the machine
ABORT_KB = 600 * 1024  # below this much available memory the swarm is killed at once
CALIBRATION = 40_000
CROSS_CLIENTS = 19_000


def available_kb() -> int:
    return common.kernel_memory()["MemAvailable"]


def slab_kb() -> int:
    return common.kernel_memory()["Slab"]


def rss_kb(child: Child) -> int:
    total = 0
    for pid in [child.pid, *common.descendants(child.pid)]:
        try:
            total += common.process_memory(pid)["VmRSS"]
        except (OSError, KeyError):
            continue
    return total


@dataclass
class Held:
    """What one ramp reached and what it cost."""

    target: int
    workers: int
    clients: int
    seconds: float
    stopped: str  # why the ramp ended
    server_kb: int
    swarm_kb: int
    slab_kb: int
    broadcast: dict[str, Any] | None = None

    def per(self, kb: int) -> float:
        return kb / self.clients if self.clients else 0.0


class Storm:
    """A server of ``workers`` workers and a swarm of ``conns`` clients, on free ports."""

    def __init__(self, workdir: Path, workers: int, conns: int, ping_ms: int) -> None:
        self.workdir = workdir
        self.workers = workers
        self.conns = conns
        self.ping_ms = ping_ms
        self.port = free_port()
        self.token = common.token()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server: Child | None = None
        self.swarm: Child | None = None
        self.monitor = MonitorClient(self.url, self.token, request_timeout=60)

    async def start_server(self) -> None:
        command = [PY, "-m", "msstorm.storm.cli", "--port", str(self.port)]
        command += ["--monitor-token", self.token, "--workers", str(self.workers)]
        command += ["--ping-interval", str(self.ping_ms), "--ping-timeout", str(self.ping_ms)]
        command += ["--op-timeout", "300", "--log-level", "warning"]
        command += ["--max-conns-per-address", "0"]
        self.server = Child(f"server-{self.workers}w-{self.conns}", command, self.workdir)
        await wait_listening(self.server, self.port)
        await self.monitor.connect()
        deadline = time.monotonic() + 60
        while (await self.overview())["cluster"]["workers"] < self.workers:
            if time.monotonic() > deadline:
                raise BenchError(f"{self.workers} workers did not all start")
            await asyncio.sleep(0.5)
        await asyncio.sleep(1.5)  # each worker's view of the others is fresh

    def start_swarm(self) -> None:
        # As few swarm processes as the open-file limit allows: each costs ~30 MB.
        procs = max(2, -(-self.conns // 19_000))
        command = [PY, "-m", "msstorm.swarm.cli", "--url", self.url, "--no-log"]
        command += ["--conns", str(self.conns), "--procs", str(procs)]
        self.swarm = Child(f"swarm-{self.conns}", command, self.workdir)

    async def overview(self) -> dict[str, Any]:
        return await self.monitor.status_request(detail=False)

    async def clients(self) -> int:
        return int((await self.overview())["clients"])

    async def ramp(self, watch_memory: bool) -> tuple[int, float, str]:
        """Wait for the swarm to connect: (clients, seconds, why it ended)."""
        assert self.swarm is not None
        started = time.monotonic()
        best, moved = 0, started
        while True:
            clients = await self.clients()
            free = available_kb()
            now = time.monotonic()
            common.progress(
                f"[{self.workers} workers] {clients:,}/{self.conns:,} clients "
                f"({now - started:.0f} s), {free / GIB:.1f} GiB available"
            )
            if clients > best:
                best, moved = clients, now
            if clients >= self.conns:
                return clients, now - started, "target reached"
            if watch_memory and free < ABORT_KB:
                self.swarm.kill()  # before the kernel's OOM killer picks for us
                return best, now - started, f"memory: {free / 1024:.0f} MiB left"
            if self.swarm.exited() is not None:
                return best, now - started, f"the swarm exited ({self.swarm.exited()})"
            if now - moved > 60:
                return best, now - started, "no new connection for 60 s"
            await asyncio.sleep(2.0)

    async def operation(self, request: dict[str, Any], timeout: float = 600) -> dict[str, Any]:
        waited = await self.monitor.run_operation(request, timeout=timeout)
        summary: dict[str, Any] = waited.status["summary"]
        return summary

    async def stop(self) -> None:
        await self.monitor.close()
        if self.swarm is not None:
            await self.swarm.stop(30)
        if self.server is not None:
            await self.server.stop(60)


async def hold(workdir: Path, target: int, workers: int, ping_ms: int, broadcast: bool) -> Held:
    storm = Storm(workdir, workers, target, ping_ms)
    try:
        slab0, free0 = slab_kb(), available_kb()
        await storm.start_server()
        assert storm.server is not None
        server0 = rss_kb(storm.server)
        storm.start_swarm()
        clients, seconds, stopped = await storm.ramp(watch_memory=True)
        await asyncio.sleep(10)  # settle: handshakes done, buffers trimmed
        clients = await storm.clients()
        assert storm.swarm is not None
        held = Held(
            target,
            workers,
            clients,
            seconds,
            stopped,
            rss_kb(storm.server) - server0,
            rss_kb(storm.swarm),
            slab_kb() - slab0,
        )
        common.progress(
            f"held {clients:,} clients; {(free0 - available_kb()) / GIB:.1f} GiB of memory used"
        )
        if broadcast and clients:
            common.progress(f"one broadcast to {clients:,} clients")
            held.broadcast = await storm.operation({"type": "broadcast"})
            common.progress(f"broadcast: {held.broadcast['elapsedMs']:,.0f} ms")
        return held
    finally:
        await storm.stop()


async def cross(workdir: Path, ping_ms: int, repeats: int) -> list[dict[str, Any]]:
    """Broadcast completion on 1 and 4 workers; tree pokes/s on 1, 4 and 16."""
    rows = []
    for workers in (1, 4, 16):
        storm = Storm(workdir, workers, CROSS_CLIENTS, ping_ms)
        try:
            await storm.start_server()
            storm.start_swarm()
            clients, _, stopped = await storm.ramp(watch_memory=True)
            if clients < CROSS_CLIENTS:
                raise BenchError(f"{workers} workers: {clients} clients ({stopped})")
            await asyncio.sleep(3)
            row: dict[str, Any] = {"workers": workers, "clients": clients}
            if workers in (1, 4):
                times = []
                for _ in range(repeats):
                    summary = await storm.operation({"type": "broadcast"}, timeout=120)
                    times.append(summary["elapsedMs"])
                    await asyncio.sleep(0.5)
                row["broadcast_ms"] = common.summary(times)
            rates = []
            for _ in range(repeats):
                summary = await storm.operation({"type": "tree", "treeLeaves": 4096}, timeout=120)
                rates.append(summary["received"] / (summary["elapsedMs"] / 1000.0))
                await asyncio.sleep(0.5)
            row["tree_pokes_per_s"] = common.summary(rates)
            common.progress(f"[{workers} workers] {row}")
            rows.append(row)
        finally:
            await storm.stop()
    return rows


def fits(calibration: Held) -> int:
    """Connections that fit in what is available now, less the reserve."""
    per = calibration.per(calibration.server_kb + calibration.swarm_kb + calibration.slab_kb)
    return int((available_kb() - RESERVE_KB) / per) if per else 0


async def amain(args: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="msstorm-scale-"))
    context = common.context()
    records: list[dict[str, Any]] = []
    sections: list[tuple[str, str, str]] = []  # (file, title, text)
    try:
        if not args.cross_only:
            common.progress(f"calibration: {CALIBRATION:,} clients on 3 workers")
            calibration = await hold(workdir, CALIBRATION, 3, args.ping_interval, False)
            room = fits(calibration)
            target = min(args.target, room)
            common.progress(
                f"{calibration.per(calibration.server_kb + calibration.swarm_kb):.2f} KiB user "
                f"space + {calibration.per(calibration.slab_kb):.2f} KiB kernel per connection: "
                f"{room:,} fit; the target is {target:,}"
            )
            workers = -(-target // 19_744)
            held = await hold(workdir, target, max(workers, 2), args.ping_interval, True)
            records += scale_records(calibration, held, room, args.target)
            sections.append(
                ("scale.md", "The scale run", scale_section(calibration, held, room, args.target))
            )
        if not args.no_cross:
            rows = await cross(workdir, args.ping_interval, args.repeats)
            records += [{"figure": "cross-worker", **row} for row in rows]
            sections.append(("cross-worker.md", "Cross-worker cost", cross_section(rows)))
    finally:
        kill_leftovers()
    common.append_jsonl("scale", [record | context for record in records])
    head = (
        f"`{context['command']}` at `{context['git']['commit'][:12]}`, {context['time']}: "
        f"{context['machine']['cores']} cores, "
        f"{context['machine']['memory_kB'] / GIB:.1f} GiB, open files "
        f"{context['machine']['rlimit_nofile'][0]:,} per process; server and swarm on this "
        f"machine, heartbeat every {args.ping_interval / 1000:.0f} s.\n\n"
    )
    # One file per part, so that running one part leaves the other's figures alone.
    for name, title, section in sections:
        text = f"# {title}\n\n{head}{section}\n"
        common.write_text(name, text)
        print(text)
    return 0


def scale_records(calibration: Held, held: Held, room: int, asked: int) -> list[dict[str, Any]]:
    out = []
    for name, run in (("calibration", calibration), ("scale run", held)):
        out.append(
            {
                "figure": name,
                "target": run.target,
                "asked": asked,
                "fit": room,
                "workers": run.workers,
                "clients": run.clients,
                "seconds_to_connect": run.seconds,
                "stopped": run.stopped,
                "server_kib_per_conn": run.per(run.server_kb),
                "swarm_kib_per_conn": run.per(run.swarm_kb),
                "kernel_kib_per_conn": run.per(run.slab_kb),
                "broadcast": run.broadcast,
            }
        )
    return out


def scale_section(calibration: Held, held: Held, room: int, asked: int) -> str:
    rows = []
    for name, run in (("calibration", calibration), ("scale run", held)):
        broadcast = run.broadcast
        rows.append(
            [
                name,
                f"{run.workers}",
                f"{run.clients:,} of {run.target:,}",
                f"{run.seconds:.0f} s ({run.clients / run.seconds:,.0f}/s)" if run.seconds else "",
                f"{run.per(run.server_kb):.2f}",
                f"{run.per(run.swarm_kb):.2f}",
                f"{run.per(run.slab_kb):.2f}",
                (
                    f"{broadcast['elapsedMs']:,.0f} ms, {broadcast['received']:,} answers, "
                    f"{broadcast['lost']:,} lost"
                    if broadcast
                    else ""
                ),
                run.stopped,
            ]
        )
    goal = "met" if held.clients >= 1_000_000 else "**not met**"
    milestone = "met" if held.clients >= 500_000 else "**not met**"
    return (
        "## Connections held\n\n"
        + common.markdown_table(
            [
                "run",
                "server workers",
                "clients connected",
                "time to connect",
                "server KiB/conn",
                "swarm KiB/conn",
                "kernel KiB/conn (both ends)",
                "one broadcast",
                "ramp ended",
            ],
            rows,
        )
        + f"\n\nAsked for {asked:,}; the calibration said {room:,} fit in the memory available "
        f"less {RESERVE_KB / GIB:.0f} GiB kept for the machine. Goal 1,000,000: {goal}; "
        f"milestone 500,000: {milestone}. User-space figures are VmRSS growth over the clients "
        "(all server workers summed; the swarm's processes whole); kernel is the Slab growth "
        "of /proc/meminfo, both ends of each loopback connection."
    )


def cross_section(rows: list[dict[str, Any]]) -> str:
    table = []
    for row in rows:
        broadcast = row.get("broadcast_ms")
        table.append(
            [
                row["workers"],
                f"{row['clients']:,}",
                common.fmt_spread(broadcast, 1) if broadcast else "",
                common.fmt_spread(row["tree_pokes_per_s"], 0),
            ]
        )
    one = next(r for r in rows if r["workers"] == 1)
    four = next(r for r in rows if r["workers"] == 4)
    slower = statistics.median(four["broadcast_ms"]["samples"]) / statistics.median(
        one["broadcast_ms"]["samples"]
    )
    return (
        f"## Cross-worker cost, {CROSS_CLIENTS:,} clients\n\n"
        + common.markdown_table(
            ["workers", "clients", "broadcast (ms)", "tree of 4,096 leaves (pokes/s)"], table
        )
        + f"\n\nA broadcast on 4 workers takes {slower:.2f}x its time on 1 (the same clients, "
        "2 cores). One worker holds at most 19,744 clients here, hence 19,000 rather than 20,000."
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", type=int, default=1_000_000, help="(default %(default)s)")
    parser.add_argument(
        "--ping-interval", type=int, default=60_000, metavar="MS", help="(default %(default)s)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="per cross-worker figure")
    parser.add_argument("--no-cross", action="store_true", help="only the scale run")
    parser.add_argument("--cross-only", action="store_true", help="only the cross-worker figures")
    args = parser.parse_args(argv)
    try:
        return uvloop.run(amain(args))
    except BenchError as exc:
        print(f"run_scale: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
