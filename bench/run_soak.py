"""The soak run: back-to-back broadcasts and trees against a standing swarm, for minutes.

    python bench/run_soak.py                  # 10 minutes, 10,000 clients
    python bench/run_soak.py --minutes 2 --conns 5000

msstorm-server and a msstorm-client swarm of N clients; the monitor runs a
broadcast, then a tree (1,024 leaves by default), then again, with no pause,
until the time is up. Reported per minute: pokes answered per second, answers
lost, the slowest operation's RTT p99; and the server's RSS over the run, with
its drift from the end of the first minute (the warm-up) to the end. Goals
(the hardening issue): 0 lost answers with healthy clients, RSS drift < 5%.
Results: bench/results/soak.jsonl and soak.md.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import uvloop

from bench import common
from bench.processes import (
    BenchError,
    Child,
    free_port,
    kill_leftovers,
    wait_for_clients,
    wait_listening,
)
from msstorm.monitor.client import MonitorClient

PY = sys.executable
SAMPLE_EVERY = 5.0  # seconds between two readings of the server's memory


@dataclass
class Done:
    """One finished operation."""

    kind: str
    ended: float  # seconds since the soak started
    received: int
    lost: int
    elapsed_ms: float
    rtt_p99: float | None


@dataclass
class Soak:
    started: float = field(default_factory=time.monotonic)
    done: list[Done] = field(default_factory=list)
    rss: list[tuple[float, float]] = field(default_factory=list)  # (second, KiB)
    cpu: list[tuple[float, float, float]] = field(default_factory=list)  # (second, server, swarm)

    def now(self) -> float:
        return time.monotonic() - self.started


def rss_kib(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            total += common.process_memory(pid)["VmRSS"]
        except (OSError, KeyError):
            continue
    return total


def cpu_of(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            total += common.cpu_seconds(pid)
        except OSError:
            continue
    return total


async def sample(soak: Soak, server: Child, swarm: Child) -> None:
    while True:
        server_pids = [server.pid, *common.descendants(server.pid)]
        swarm_pids = [swarm.pid, *common.descendants(swarm.pid)]
        second = soak.now()
        soak.rss.append((second, rss_kib(server_pids)))
        soak.cpu.append((second, cpu_of(server_pids), cpu_of(swarm_pids)))
        await asyncio.sleep(SAMPLE_EVERY)


async def storm(monitor: MonitorClient, soak: Soak, seconds: float, leaves: int) -> None:
    requests = [{"type": "broadcast"}, {"type": "tree", "treeLeaves": leaves}]
    last_word = 0.0
    while soak.now() < seconds:
        request = requests[len(soak.done) % 2]
        waited = await monitor.run_operation(request, timeout=60, detail_when_giving_up=False)
        summary = waited.status["summary"]
        soak.done.append(
            Done(
                request["type"],
                soak.now(),
                summary["received"],
                summary["lost"],
                summary["elapsedMs"],
                summary["rtt"]["p99"],
            )
        )
        if soak.now() - last_word > 10:
            last_word = soak.now()
            lost = sum(d.lost for d in soak.done)
            rss = soak.rss[-1][1] / 1024 if soak.rss else 0.0
            common.progress(
                f"{soak.now():.0f}/{seconds:.0f} s: {len(soak.done)} operations, "
                f"{sum(d.received for d in soak.done):,} answers, {lost} lost, "
                f"server RSS {rss:.1f} MiB"
            )


def minutes_of(soak: Soak) -> list[dict[str, Any]]:
    """A row per minute; the last operation's few seconds past the end go with the last."""
    rows = []
    end = soak.done[-1].ended if soak.done else 0.0
    whole = max(1, int(end // 60))
    for minute in range(whole):
        lo, hi = minute * 60, (minute + 1) * 60 if minute + 1 < whole else end + 1
        ops = [d for d in soak.done if lo <= d.ended < hi]
        span = min(hi, end) - lo
        rss = [kib for second, kib in soak.rss if lo <= second < hi]
        p99s = [d.rtt_p99 for d in ops if d.rtt_p99 is not None]
        rows.append(
            {
                "minute": minute + 1,
                "operations": len(ops),
                "answers_per_s": sum(d.received for d in ops) / span if span > 0 else 0.0,
                "lost": sum(d.lost for d in ops),
                "worst_rtt_p99_ms": max(p99s) if p99s else None,
                "rss_mib": (rss[-1] / 1024) if rss else None,
            }
        )
    return rows


async def amain(args: argparse.Namespace) -> int:
    token = common.token()
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="msstorm-soak-"))
    command = [PY, "-m", "msstorm.storm.cli", "--port", str(port), "--monitor-token", token]
    command += ["--workers", str(args.workers), "--op-timeout", "30", "--log-level", "warning"]
    server = Child("server", command, workdir)
    swarm: Child | None = None
    soak = Soak()
    try:
        await wait_listening(server, port)
        monitor = MonitorClient(f"http://127.0.0.1:{port}", token)
        await monitor.connect()
        swarm = Child(
            "swarm",
            [
                PY,
                "-m",
                "msstorm.swarm.cli",
                "--url",
                f"http://127.0.0.1:{port}",
                "--no-log",
                "--conns",
                str(args.conns),
            ],
            workdir,
        )
        await wait_for_clients(monitor, args.conns, "soak")
        await asyncio.sleep(3.0)
        soak = Soak()
        sampler = asyncio.ensure_future(sample(soak, server, swarm))
        try:
            await storm(monitor, soak, args.minutes * 60, args.tree_leaves)
        finally:
            sampler.cancel()
        soak.rss.append((soak.now(), rss_kib([server.pid, *common.descendants(server.pid)])))
        await monitor.close()
    finally:
        if swarm is not None:
            await swarm.stop()
        await server.stop()
        kill_leftovers()
    return report(args, soak)


def report(args: argparse.Namespace, soak: Soak) -> int:
    rows = minutes_of(soak)
    warm = [kib for second, kib in soak.rss if second <= 60] or [soak.rss[0][1]]
    after_warmup, at_end = warm[-1], soak.rss[-1][1]
    drift = (at_end - after_warmup) / after_warmup * 100.0
    lost = sum(d.lost for d in soak.done)
    answers = sum(d.received for d in soak.done)
    seconds = soak.done[-1].ended if soak.done else 0.0
    context = common.context()
    cpu = soak.cpu[-1][1] - soak.cpu[0][1], soak.cpu[-1][2] - soak.cpu[0][2]
    span = soak.cpu[-1][0] - soak.cpu[0][0]
    figures = {
        "answers per second": answers / seconds if seconds else 0.0,
        "lost answers": lost,
        "server RSS drift after warm-up (%)": drift,
        "server RSS at the end (MiB)": at_end / 1024,
        "server CPU (% of one core)": cpu[0] / span * 100 if span else 0.0,
        "swarm CPU (% of one core)": cpu[1] / span * 100 if span else 0.0,
    }
    common.append_jsonl(
        "soak",
        [
            {"figure": name, "value": value, "conns": args.conns, "minutes": args.minutes} | context
            for name, value in figures.items()
        ]
        + [{"figure": "minute", **row, "conns": args.conns} | context for row in rows],
    )
    table = common.markdown_table(
        ["minute", "operations", "answers/s", "lost", "worst RTT p99 (ms)", "server RSS (MiB)"],
        [
            [
                r["minute"],
                r["operations"],
                f"{r['answers_per_s']:,.0f}",
                r["lost"],
                "" if r["worst_rtt_p99_ms"] is None else f"{r['worst_rtt_p99_ms']:.2f}",
                "" if r["rss_mib"] is None else f"{r['rss_mib']:.1f}",
            ]
            for r in rows
        ],
    )
    verdicts = [
        f"- lost answers: **{lost}** (goal 0): {'met' if lost == 0 else '**not met**'}",
        f"- server RSS drift from the end of minute 1 to the end: **{drift:+.2f}%** "
        f"(goal < 5%): {'met' if abs(drift) < 5 else '**not met**'}",
        f"- answers per second over the run: {figures['answers per second']:,.0f}; "
        f"server CPU {figures['server CPU (% of one core)']:.0f}% of a core, "
        f"swarm CPU {figures['swarm CPU (% of one core)']:.0f}%",
    ]
    text = (
        "# Soak\n\n"
        f"`{context['command']}` at `{context['git']['commit'][:12]}`, {context['time']}, "
        f"{context['machine']['cores']} cores. {args.conns:,} clients, {args.workers} server "
        f"worker(s); broadcasts and trees of {args.tree_leaves:,} leaves back to back for "
        f"{args.minutes} minutes ({len(soak.done)} operations, {answers:,} answers).\n\n"
        + "\n".join(verdicts)
        + "\n\n"
        + table
        + "\n"
    )
    common.write_text("soak.md", text)
    print(text)
    return 0 if lost == 0 and abs(drift) < 5 else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="(default %(default)s)")
    parser.add_argument("--conns", type=int, default=10_000, help="(default %(default)s)")
    parser.add_argument("--workers", type=int, default=1, help="(default %(default)s)")
    parser.add_argument("--tree-leaves", type=int, default=1024, help="(default %(default)s)")
    args = parser.parse_args(argv)
    try:
        return uvloop.run(amain(args))
    except BenchError as exc:
        print(f"run_soak: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
