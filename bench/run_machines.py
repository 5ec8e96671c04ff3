"""A storm across machines, and what spreading it costs: the machines lab (bench/lab.py).

    python bench/run_machines.py [--quick] [--conns 3000] [--repeats 5] [--leaves 1024]

As root (``make machines``). Each machine is a network namespace with its own TCP
stack: redis-server on one, msstorm-server nodes (one worker each) on others,
HAProxy in front of them, a swarm of ``msstorm-client`` aimed at HAProxy, and a
monitor on this host. Two setups hold the same clients through the same balancer:
3 nodes over Redis, and 1 node on its own. For each: broadcast completion and tree
rates (the server's own elapsed times), the nodes' CPU, redis-server's CPU and the
bytes through Redis per operation (its INFO counters, in and out; the members'
beats, measured idle, are in the table separately). Results: bench/results/machines.*
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis
import uvloop

from bench import common
from bench.lab import REDIS_PORT, TOKEN, Lab, LabError
from msstorm.monitor.client import MonitorClient

SETUPS = (("3 nodes over Redis", 3), ("1 node", 1))
IDLE_SECONDS = 3.0


class Meter:
    """redis-server's CPU and byte counters, and the nodes' CPU."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.redis = redis.Redis(host=lab.machines["redis"].address, port=REDIS_PORT)
        self.redis_pid = lab.redis_process().pid
        self.own = 0  # the bytes of one reading (INFO's request and reply)
        self.readings = 0
        first = self._traffic()
        self.own = self._traffic() - first

    def _traffic(self) -> int:
        """Bytes in and out of redis-server so far, less what the readings cost."""
        stats = self.redis.info("stats")
        total = int(stats["total_net_input_bytes"]) + int(stats["total_net_output_bytes"])
        self.readings += 1
        return total - self.readings * self.own

    def read(self) -> tuple[float, int, float]:
        traffic = self._traffic()
        nodes = sum(
            common.cpu_seconds(pid) for node in self.lab.nodes for pid in node.machine.pids()
        )
        return common.cpu_seconds(self.redis_pid), traffic, nodes


async def measure(
    lab: Lab, monitor: MonitorClient, meter: Meter, request: dict[str, Any]
) -> dict[str, float]:
    redis_cpu, traffic, nodes_cpu = meter.read()
    waited = await monitor.run_operation(request, timeout=60, detail_when_giving_up=False)
    after = meter.read()
    summary = waited.status["summary"]
    if waited.gave_up or summary["lost"]:
        raise LabError(f"{request['type']} lost answers: {summary}")
    return {
        "elapsed_ms": summary["elapsedMs"],
        "received": summary["received"],
        "redis_cpu_ms": (after[0] - redis_cpu) * 1000.0,
        "bus_bytes": after[1] - traffic,
        "nodes_cpu_ms": (after[2] - nodes_cpu) * 1000.0,
    }


async def run_setup(lab: Lab, args: argparse.Namespace) -> dict[str, Any]:
    meter = Meter(lab)
    monitor = MonitorClient(lab.nodes[0].url, TOKEN, request_timeout=30.0)
    await monitor.connect()
    try:
        await measure(lab, monitor, meter, {"type": "broadcast"})  # warm-up
        before = meter.read()
        await asyncio.sleep(IDLE_SECONDS)
        after = meter.read()
        idle_bytes = (after[1] - before[1]) / IDLE_SECONDS
        broadcasts, trees = [], []
        for i in range(args.repeats):
            common.progress(f"broadcast {i + 1}/{args.repeats}")
            broadcasts.append(await measure(lab, monitor, meter, {"type": "broadcast"}))
        for i in range(args.repeats):
            common.progress(f"tree of {args.leaves} leaves {i + 1}/{args.repeats}")
            tree = await measure(lab, monitor, meter, {"type": "tree", "treeLeaves": args.leaves})
            tree["pokes_per_s"] = tree["received"] / tree["elapsed_ms"] * 1000.0
            trees.append(tree)
    finally:
        await monitor.close()
    return {
        "nodes": len(lab.nodes),
        "idle_bus_bytes_per_s": idle_bytes,
        "broadcast": broadcasts,
        "tree": trees,
    }


def one_setup(nodes: int, args: argparse.Namespace, logs: Path) -> dict[str, Any]:
    lab = Lab(logs, nodes=nodes, workers=1, swarms=1)
    try:
        lab.up()
        lab.start_redis()
        lab.start_nodes(clustered=nodes > 1)
        lab.start_lb()
        lab.start_swarm("s1", args.conns)
        lab.whole(timeout=120)
        return uvloop.run(run_setup(lab, args))
    finally:
        lab.down()


def median(samples: list[dict[str, float]], key: str) -> float:
    return statistics.median(s[key] for s in samples)


def row(label: str, result: dict[str, Any], args: argparse.Namespace) -> list[str]:
    b, t = result["broadcast"], result["tree"]
    bus = [
        f"{median(b, 'redis_cpu_ms'):.1f}",
        f"{median(b, 'bus_bytes') / 1024:.1f}",
        f"{median(t, 'redis_cpu_ms'):.1f}",
        f"{median(t, 'bus_bytes') / 1024:.1f}",
        f"{result['idle_bus_bytes_per_s'] / 1024:.1f}",
    ]
    return [
        label,
        f"{args.conns:,}",
        common.fmt_spread(common.summary([s["elapsed_ms"] for s in b]), 1),
        common.fmt_spread(common.summary([s["pokes_per_s"] for s in t]), 0),
        f"{median(b, 'nodes_cpu_ms') * 1000 / args.conns:.1f}",
        *(bus if result["nodes"] > 1 else ["no bus"] * len(bus)),
    ]


def report(
    results: dict[str, dict[str, Any]], args: argparse.Namespace, ctx: dict[str, Any]
) -> str:
    table = common.markdown_table(
        [
            "setup",
            "clients",
            "broadcast (ms)",
            f"tree of {args.leaves:,} leaves (pokes/s)",
            "nodes' CPU per broadcast recipient (µs)",
            "redis CPU per broadcast (ms)",
            "bus KiB per broadcast",
            "redis CPU per tree (ms)",
            "bus KiB per tree",
            "bus KiB/s idle (beats)",
        ],
        [row(label, result, args) for label, result in results.items()],
    )
    three, one = results[SETUPS[0][0]], results[SETUPS[1][0]]
    ratio_b = median(three["broadcast"], "elapsed_ms") / median(one["broadcast"], "elapsed_ms")
    ratio_t = median(three["tree"], "pokes_per_s") / median(one["tree"], "pokes_per_s")
    commit = ctx["git"].get("commit", "?")[:12]
    return f"""# Many machines

`{ctx["command"]}` at `{commit}`, {ctx["time"]}: {ctx["machine"].get("cores")} cores.
Every machine is a network namespace of this box (its own TCP stack, one bridge), so all
of them share its cores.

Clients reach the nodes through HAProxy (WebSocket); the monitor talks to the first node.
One worker per node; the 1-node setup has no bus. Medians of {args.repeats} operations
(min..max); the CPU and bus figures are medians over the same operations, read from
/proc and from redis-server's INFO counters (in and out).

{table}

A broadcast across 3 nodes takes {ratio_b:.2f}x its time on 1 node; a tree runs at
{ratio_t:.2f}x the 1-node rate. A broadcast is one message to each other worker and one
answer each, then counts and the final histograms; a tree sends its requests for pokes on
other nodes through Redis, about 2/3 of its pokes with 3 nodes.
"""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="3 repeats (default 5)")
    p.add_argument("--conns", type=int, default=3000, help="clients (default %(default)s)")
    p.add_argument("--repeats", type=int, default=None, help="operations of each kind")
    p.add_argument("--leaves", type=int, default=1024, help="a tree's leaves (default 1024)")
    args = p.parse_args(argv)
    args.repeats = args.repeats or (3 if args.quick else 5)

    def interrupted(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt  # the lab is taken down on SIGTERM too

    signal.signal(signal.SIGTERM, interrupted)
    ctx = common.context(argv if argv is None else [sys.argv[0], *argv])
    results: dict[str, dict[str, Any]] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="msstorm-machines-") as logs:
            for label, nodes in SETUPS:
                common.progress(f"{label}: {args.conns} clients")
                started = time.monotonic()
                results[label] = one_setup(nodes, args, Path(logs) / label.replace(" ", "-"))
                common.progress(f"{label}: done in {time.monotonic() - started:.0f} s")
    except LabError as exc:
        print(f"run_machines: {exc}", file=sys.stderr)
        return 1
    common.append_jsonl(
        "machines",
        [{**ctx, "setup": label, "conns": args.conns, **r} for label, r in results.items()],
    )
    path = common.write_text("machines.md", report(results, args, ctx))
    print(path.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
