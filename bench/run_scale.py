"""The scale run: the cost of each figure from 20,000 clients to as many as this machine holds.

    python bench/run_scale.py                          # 20,000, 200,000, 1,000,000; cross-worker
    python bench/run_scale.py --scales 10000,20000,40000 --no-cross --name scale-small
    python bench/run_scale.py --cross-only

1. Every scale in ``--scales`` (the first is the reference) runs on a fresh
   ``msstorm-server`` (as many workers as the open-file limit asks for, at least
   2) and ``msstorm-client`` swarm, with the same code, machine and settings
   (the default heartbeat: ``--ping-interval`` 25 s, ``--ping-timeout`` 20 s). A
   scale beyond what the memory left holds, by the first scale's cost per
   connection, is cut to what fits. Per scale:
   - the connect rate (clients over the time the swarm took to connect them all);
   - memory per connection: server and swarm user space (VmRSS growth), kernel slab
     (both ends of each loopback connection);
   - heartbeats, over ``--idle`` seconds with no operation: frames the server sent
     per second (its pings, nothing else is sent), and server CPU per ping;
   - broadcasts: wall time, server and swarm CPU per recipient;
   - trees of 4,096 and 65,536 leaves: pokes per second, server CPU per poke;
   - unicasts, one after another: RTT p50 and p99;
   - what went wrong: clients that timed out ("ping timeout" disconnects), swarm
     redials, "worker ... is gone" lines in the server's log, pokes lost;
   and each figure's ratio to the reference scale's.
2. Cross-worker cost, at 19,000 clients (one worker holds 19,744): broadcast
   completion on 1 worker and on 4; tree pokes per second (4,096 leaves) on 1, 4
   and 16 workers.

Results: bench/results/``--name``.jsonl and .md (scale.jsonl, scale.md by default) and
cross-worker.md.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson
import uvloop

from bench import common
from bench.processes import BenchError, Child, free_port, kill_leftovers, wait_listening
from msstorm.monitor.client import MonitorClient

PY = sys.executable
GIB = 1024 * 1024  # kB
RESERVE_KB = 2 * GIB  # what the run leaves to the machine
ABORT_KB = 600 * 1024  # below this much available memory the swarm is killed at once
PER_WORKER = 19_744  # clients one worker holds under this machine's open-file limit
CROSS_CLIENTS = 19_000
TREES = (4096, 65536)


def available_kb() -> int:
    return common.kernel_memory()["MemAvailable"]


def slab_kb() -> int:
    return common.kernel_memory()["Slab"]


def tree_pids(child: Child) -> list[int]:
    return [child.pid, *common.descendants(child.pid)]


def rss_kb(child: Child) -> int:
    total = 0
    for pid in tree_pids(child):
        try:
            total += common.process_memory(pid)["VmRSS"]
        except (OSError, KeyError):
            continue
    return total


def cpu_s(child: Child | None) -> float:
    """CPU seconds of a process and everything it started (those alive now)."""
    if child is None:
        return 0.0
    total = 0.0
    for pid in tree_pids(child):
        try:
            total += common.cpu_seconds(pid)
        except OSError:
            continue
    return total


class Storm:
    """A server of ``workers`` workers and a swarm of ``conns`` clients, on free ports."""

    def __init__(self, workdir: Path, workers: int, conns: int, ping: tuple[int, int]) -> None:
        self.workdir = workdir
        self.workers = workers
        self.conns = conns
        self.ping = ping
        self.port = free_port()
        self.token = common.token()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server: Child | None = None
        self.swarm: Child | None = None
        self.monitor = MonitorClient(self.url, self.token, request_timeout=60)

    async def start_server(self) -> None:
        command = [PY, "-m", "msstorm.storm.cli", "--port", str(self.port)]
        command += ["--monitor-token", self.token, "--workers", str(self.workers)]
        command += ["--ping-interval", str(self.ping[0]), "--ping-timeout", str(self.ping[1])]
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
        command = [PY, "-m", "msstorm.swarm.cli", "--url", self.url, "--no-log", "--json"]
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
            await asyncio.sleep(1.0 if self.conns < 100_000 else 2.0)

    async def operation(self, request: dict[str, Any], timeout: float = 600) -> dict[str, Any]:
        waited = await self.monitor.run_operation(request, timeout=timeout)
        status: dict[str, Any] = waited.status
        return status

    def metric(self, name: str, **labels: str) -> float:
        """The sum of a /metrics counter's samples over the workers (those with ``labels``)."""
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=60) as response:
            text = response.read().decode()
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name) and all(f'{k}="{v}"' in line for k, v in labels.items()):
                head, _, value = line.rpartition(" ")
                if head.split("{")[0] == name:
                    total += float(value)
        return total

    async def stop(self) -> dict[str, Any]:
        """Stop both; the swarm's own summary (its JSON), if it printed one."""
        await self.monitor.close()
        summary: dict[str, Any] = {}
        if self.swarm is not None:
            await self.swarm.stop(60)
            for line in reversed(self.swarm.output().splitlines()):
                try:
                    summary = orjson.loads(line)
                    break
                except orjson.JSONDecodeError:
                    continue
        if self.server is not None:
            await self.server.stop(120)
        return summary


@dataclass
class Scale:
    """What one scale reached and cost."""

    target: int
    workers: int
    clients: int = 0
    seconds: float = 0.0
    stopped: str = ""  # why the ramp ended
    server_kb: int = 0
    swarm_kb: int = 0
    slab_kb: int = 0
    figures: dict[str, Any] = field(default_factory=dict)  # name -> summary or value

    def per(self, kb: int) -> float:
        return kb / self.clients if self.clients else 0.0


async def measure(workdir: Path, target: int, args: argparse.Namespace) -> Scale:
    workers = max(2, -(-target // PER_WORKER))
    run = Scale(target, workers)
    storm = Storm(workdir, workers, target, (args.ping_interval, args.ping_timeout))
    figures = run.figures
    try:
        slab0 = slab_kb()
        await storm.start_server()
        assert storm.server is not None
        server0 = rss_kb(storm.server)
        storm.start_swarm()
        run.clients, run.seconds, run.stopped = await storm.ramp(watch_memory=True)
        figures["connect_per_s"] = run.clients / run.seconds if run.seconds else 0.0
        await asyncio.sleep(10)  # settle: handshakes done, buffers trimmed
        run.clients = await storm.clients()
        assert storm.swarm is not None
        run.server_kb = rss_kb(storm.server) - server0
        run.swarm_kb = rss_kb(storm.swarm)
        run.slab_kb = slab_kb() - slab0
        common.progress(f"held {run.clients:,} clients; idle for {args.idle:.0f} s")
        await heartbeats(storm, args.idle, figures)
        await operations(storm, run, args)
        figures["ping_timeouts"] = await asyncio.to_thread(
            storm.metric, "msstorm_disconnects_total", reason="ping timeout"
        )
    finally:
        log = storm.server.log.read_text(errors="replace") if storm.server else ""
        swarm = await storm.stop()
    took = swarm.get("seconds_to_connect_all")
    if took:  # the swarm's own clock is finer than the ramp's polls
        figures["connect_per_s"] = run.clients / took
    figures["workers_gone"] = len(re.findall(r"worker \S+ is gone", log))
    figures["redials"] = swarm.get("reconnects")
    figures["swarm_cpu_us_per_answer"] = swarm.get("cpu_us_per_answer")
    common.progress(f"{target:,}: {run.clients:,} clients, {figures}")
    return run


async def heartbeats(storm: Storm, idle: float, figures: dict[str, Any]) -> None:
    """Frames sent per second with nothing else going on (the pings), and their CPU."""
    sent0 = await asyncio.to_thread(storm.metric, "msstorm_frames_sent_total")
    server0, swarm0, t0 = cpu_s(storm.server), cpu_s(storm.swarm), time.monotonic()
    await asyncio.sleep(idle)
    sent1 = await asyncio.to_thread(storm.metric, "msstorm_frames_sent_total")
    server1, swarm1, t1 = cpu_s(storm.server), cpu_s(storm.swarm), time.monotonic()
    pings = sent1 - sent0
    figures["pings_per_s"] = pings / (t1 - t0)
    figures["server_cpu_us_per_ping"] = (server1 - server0) / pings * 1e6 if pings else None
    figures["swarm_cpu_us_per_pong"] = (swarm1 - swarm0) / pings * 1e6 if pings else None


async def operations(storm: Storm, run: Scale, args: argparse.Namespace) -> None:
    """Broadcasts, trees and unicasts, each timed with the CPU it cost both sides."""
    figures = run.figures
    lost = 0

    async def timed(request: dict[str, Any]) -> tuple[dict[str, Any], float, float]:
        nonlocal lost
        server0, swarm0 = cpu_s(storm.server), cpu_s(storm.swarm)
        status = await storm.operation(request, timeout=600)
        lost += int(status["summary"]["lost"])
        await asyncio.sleep(0.5)  # let the last answers' CPU land before reading it
        return status, cpu_s(storm.server) - server0, cpu_s(storm.swarm) - swarm0

    rows: dict[str, list[float]] = {}
    for _ in range(args.broadcasts):
        status, server, swarm = await timed({"type": "broadcast"})
        received = max(1, status["summary"]["received"])
        rows.setdefault("broadcast_ms", []).append(status["summary"]["elapsedMs"])
        rows.setdefault("broadcast_server_us", []).append(server / received * 1e6)
        rows.setdefault("broadcast_swarm_us", []).append(swarm / received * 1e6)
        common.progress(f"broadcast to {received:,}: {status['summary']['elapsedMs']:,.0f} ms")
    for leaves in TREES:
        for _ in range(args.trees):
            status, server, swarm = await timed({"type": "tree", "treeLeaves": leaves})
            received = max(1, status["summary"]["received"])
            rate = received / (status["summary"]["elapsedMs"] / 1000.0)
            rows.setdefault(f"tree_{leaves}_per_s", []).append(rate)
            rows.setdefault(f"tree_{leaves}_server_us", []).append(server / received * 1e6)
            rows.setdefault(f"tree_{leaves}_swarm_us", []).append(swarm / received * 1e6)
        common.progress(
            f"trees of {leaves:,}: {statistics.median(rows[f'tree_{leaves}_per_s']):,.0f}/s"
        )
    rtts = []
    for _ in range(args.unicasts):
        status = await storm.operation({"type": "unicast"}, timeout=60)
        lost += int(status["summary"]["lost"])
        if status.get("unicast"):
            rtts.append(float(status["unicast"]["rtt"]))
    figures.update({name: common.summary(values) for name, values in rows.items()})
    figures["unicast_p50_ms"] = common.percentile(rtts, 0.50)
    figures["unicast_p99_ms"] = common.percentile(rtts, 0.99)
    figures["lost"] = lost


async def cross(workdir: Path, ping: tuple[int, int], repeats: int) -> list[dict[str, Any]]:
    """Broadcast completion on 1 and 4 workers; tree pokes/s on 1, 4 and 16."""
    rows = []
    for workers in (1, 4, 16):
        storm = Storm(workdir, workers, CROSS_CLIENTS, ping)
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
                    summary = (await storm.operation({"type": "broadcast"}, timeout=120))["summary"]
                    times.append(summary["elapsedMs"])
                    await asyncio.sleep(0.5)
                row["broadcast_ms"] = common.summary(times)
            rates = []
            for _ in range(repeats):
                tree = {"type": "tree", "treeLeaves": 4096}
                summary = (await storm.operation(tree, timeout=120))["summary"]
                rates.append(summary["received"] / (summary["elapsedMs"] / 1000.0))
                await asyncio.sleep(0.5)
            row["tree_pokes_per_s"] = common.summary(rates)
            common.progress(f"[{workers} workers] {row}")
            rows.append(row)
        finally:
            await storm.stop()
    return rows


def fits(reference: Scale) -> int:
    """Connections that fit in what is available now, less the reserve, at the
    reference scale's cost per connection."""
    per = reference.per(reference.server_kb + reference.swarm_kb + reference.slab_kb)
    return int((available_kb() - RESERVE_KB) / per) if per else 0


async def amain(args: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="msstorm-scale-"))
    context = common.context()
    records: list[dict[str, Any]] = []
    sections: list[tuple[str, str, str]] = []  # (file, title, text)
    try:
        if not args.cross_only:
            runs: list[Scale] = []
            for asked in args.scales:
                target = asked
                if runs and fits(runs[0]) < asked:
                    target = fits(runs[0])
                    common.progress(f"{asked:,} do not fit in the memory left: {target:,}")
                common.progress(f"scale {target:,}")
                runs.append(await measure(workdir, target, args))
            records += [
                scale_record(run, asked) for run, asked in zip(runs, args.scales, strict=True)
            ]
            sections.append((f"{args.name}.md", "The scale run", scale_section(runs, args)))
        if not args.no_cross:
            rows = await cross(workdir, (args.ping_interval, args.ping_timeout), args.repeats)
            records += [{"figure": "cross-worker", **row} for row in rows]
            sections.append(("cross-worker.md", "Cross-worker cost", cross_section(rows)))
    finally:
        kill_leftovers()
    common.append_jsonl(args.name, [record | context for record in records])
    head = (
        f"`{context['command']}` at `{context['git']['commit'][:12]}`, {context['time']}: "
        f"{context['machine']['cores']} cores, "
        f"{context['machine']['memory_kB'] / GIB:.1f} GiB, open files "
        f"{context['machine']['rlimit_nofile'][0]:,} per process; server and swarm on this "
        f"machine, heartbeat every {args.ping_interval / 1000:g} s "
        f"(pong within {args.ping_timeout / 1000:g} s).\n\n"
    )
    # One file per part, so that running one part leaves the other's figures alone.
    for name, title, section in sections:
        text = f"# {title}\n\n{head}{section}\n"
        common.write_text(name, text)
        print(text)
    return 0


def scale_record(run: Scale, asked: int) -> dict[str, Any]:
    return {
        "figure": "scale",
        "asked": asked,
        "target": run.target,
        "workers": run.workers,
        "clients": run.clients,
        "seconds_to_connect": run.seconds,
        "stopped": run.stopped,
        "server_kib_per_conn": run.per(run.server_kb),
        "swarm_kib_per_conn": run.per(run.swarm_kb),
        "kernel_kib_per_conn": run.per(run.slab_kb),
        **run.figures,
    }


# The table's rows: (label, how to read it off a scale, digits); a summary's median.
def _median(name: str) -> Any:
    def read(run: Scale) -> float | None:
        value = run.figures.get(name)
        return value["median"] if isinstance(value, dict) else value

    return read


ROWS: list[tuple[str, Any, int]] = [
    ("clients connected", lambda r: r.clients, 0),
    ("server workers", lambda r: r.workers, 0),
    ("connect rate (/s)", _median("connect_per_s"), 0),
    ("server memory per connection (KiB)", lambda r: r.per(r.server_kb), 2),
    ("swarm memory per connection (KiB)", lambda r: r.per(r.swarm_kb), 2),
    ("kernel memory per connection, both ends (KiB)", lambda r: r.per(r.slab_kb), 2),
    ("heartbeat sends per second", _median("pings_per_s"), 0),
    ("server CPU per heartbeat, idle (us)", _median("server_cpu_us_per_ping"), 2),
    ("swarm CPU per heartbeat, idle (us)", _median("swarm_cpu_us_per_pong"), 2),
    ("broadcast wall (ms)", _median("broadcast_ms"), 0),
    ("broadcast wall per recipient (us)", lambda r: _per_client(r, "broadcast_ms"), 2),
    ("broadcast server CPU per recipient (us)", _median("broadcast_server_us"), 2),
    ("broadcast swarm CPU per recipient (us)", _median("broadcast_swarm_us"), 2),
    *[
        row
        for leaves in TREES
        for row in (
            (f"tree of {leaves:,} leaves (pokes/s)", _median(f"tree_{leaves}_per_s"), 0),
            (
                f"tree of {leaves:,}: server CPU per poke (us)",
                _median(f"tree_{leaves}_server_us"),
                2,
            ),
            (f"tree of {leaves:,}: swarm CPU per poke (us)", _median(f"tree_{leaves}_swarm_us"), 2),
        )
    ],
    ("unicast RTT p50 (ms)", _median("unicast_p50_ms"), 3),
    ("unicast RTT p99 (ms)", _median("unicast_p99_ms"), 3),
    ("pokes lost", _median("lost"), 0),
    ("ping timeouts", _median("ping_timeouts"), 0),
    ("swarm redials", _median("redials"), 0),
    ('"worker ... is gone" lines', _median("workers_gone"), 0),
]


def _per_client(run: Scale, name: str) -> float | None:
    wall = _median(name)(run)
    return wall * 1000.0 / run.clients if wall is not None and run.clients else None


def _cell(value: Any, digits: int) -> str:
    return "" if value is None else f"{value:,.{digits}f}"


def scale_section(runs: list[Scale], args: argparse.Namespace) -> str:
    reference = runs[0]
    header = ["figure"]
    for run in runs:
        header.append(f"{run.target:,}")
        if run is not reference:
            header.append(f"{run.target:,} / {reference.target:,}")
    table = []
    for label, read, digits in ROWS:
        row = [label]
        base = read(reference)
        for run in runs:
            value = read(run)
            row.append(_cell(value, digits))
            if run is not reference:
                ratio = value / base if value is not None and base else None
                row.append(f"{ratio:.2f}x" if ratio is not None else "")
        table.append(row)
    endings = "; ".join(f"{run.target:,}: {run.stopped}" for run in runs)
    return (
        "## Per scale, and each figure's ratio to the first\n\n"
        + common.markdown_table(header, table)
        + f"\n\nMedians of {args.broadcasts} broadcasts and {args.trees} trees of each size, "
        f"{args.unicasts} unicasts one after another, heartbeats over {args.idle:.0f} s with "
        f"no operation, on a fresh server and swarm per scale. Ramps: {endings}. CPU is every "
        "process of each side summed (/proc); user-space memory is VmRSS growth over the "
        "clients (all server workers summed, the swarm's processes whole); kernel is the "
        "Slab growth of /proc/meminfo. Pokes lost and ping timeouts are over the whole "
        "scale's run; redials are the swarm's reconnections; the last row counts the server "
        "log's lines."
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


def _scales(text: str) -> list[int]:
    try:
        scales = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of client counts: {text!r}") from None
    if not scales or min(scales) < 1:
        raise argparse.ArgumentTypeError("each scale is at least 1 client")
    return scales


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--scales",
        type=_scales,
        default=[20_000, 200_000, 1_000_000],
        metavar="N,N,...",
        help="clients at each scale, the first the reference (default 20000,200000,1000000)",
    )
    parser.add_argument(
        "--ping-interval", type=int, default=25_000, metavar="MS", help="(default %(default)s)"
    )
    parser.add_argument(
        "--ping-timeout", type=int, default=20_000, metavar="MS", help="(default %(default)s)"
    )
    parser.add_argument(
        "--idle",
        type=float,
        metavar="S",
        help="heartbeats measured over S seconds (default: the ping interval and 5 s)",
    )
    parser.add_argument("--broadcasts", type=int, default=3, help="per scale (3)")
    parser.add_argument("--trees", type=int, default=3, help="per size per scale (3)")
    parser.add_argument("--unicasts", type=int, default=100, help="per scale (100)")
    parser.add_argument("--name", default="scale", help="the results file: NAME.md (scale)")
    parser.add_argument("--repeats", type=int, default=3, help="per cross-worker figure")
    parser.add_argument("--no-cross", action="store_true", help="only the scale run")
    parser.add_argument("--cross-only", action="store_true", help="only the cross-worker figures")
    args = parser.parse_args(argv)
    for name in ("ping_interval", "ping_timeout", "broadcasts", "trees", "unicasts"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.idle is None:
        args.idle = args.ping_interval / 1000.0 + 5.0
    if args.idle <= 0 or not re.fullmatch(r"[\w.-]+", args.name):
        parser.error("--idle must be positive and --name a plain file name")
    try:
        return uvloop.run(amain(args))
    except BenchError as exc:
        print(f"run_scale: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
