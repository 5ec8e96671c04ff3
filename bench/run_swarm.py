"""What the swarm itself costs: memory per connection and CPU per answered poke.

    python bench/run_swarm.py [--quick] [--conns 10000] [--broadcasts 5]

msstorm-server (one worker) is given N clients by ``msstorm-client --json``, twice:
without the message log (``--no-log``: the swarm's own floor) and logging every
message (what ``make storm`` runs). In each run the monitor sends broadcasts back to
back; then the swarm is stopped and its own summary read: RSS growth over its
processes per connection (taken once all are joined, idle) and its CPU per answered
poke once connected. Results: bench/results/swarm.*
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import uvloop

from bench import common
from bench.processes import BenchError, Child, free_port, wait_for_clients, wait_listening
from msstorm.monitor.client import MonitorClient

PY = sys.executable
TOKEN = common.token()
MODES = {"no log": ["--no-log"], "logging every message": ["--log"]}


async def joined(monitor: MonitorClient, swarm: Child, n: int, label: str) -> None:
    """Wait for the server to count ``n`` clients; a swarm that exits ends the wait."""
    waiting = asyncio.ensure_future(wait_for_clients(monitor, n, label, timeout=180))
    while not waiting.done():
        await asyncio.wait([waiting], timeout=0.5)
        if swarm.exited() is not None and not waiting.done():
            waiting.cancel()
            raise BenchError(f"msstorm-client exited with status {swarm.exited()}:\n{swarm.tail()}")
    waiting.result()


async def one_run(
    label: str, flags: list[str], args: argparse.Namespace, workdir: Path
) -> dict[str, Any]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = Child(
        "server",
        [
            PY,
            "-m",
            "msstorm.storm.cli",
            "--port",
            str(port),
            "--workers",
            "1",
            "--monitor-token",
            TOKEN,
        ],
        workdir,
    )
    swarm = None
    try:
        await wait_listening(server, port)
        swarm = Child(
            "swarm",
            [
                PY,
                "-m",
                "msstorm.swarm.cli",
                "--url",
                url,
                "--conns",
                str(args.conns),
                "--json",
                *flags,
                *([str(workdir / "swarm")] if flags == ["--log"] else []),
            ],
            workdir,
        )
        monitor = MonitorClient(url, TOKEN, request_timeout=30)
        await monitor.connect()
        try:
            await joined(monitor, swarm, args.conns, label)
            await asyncio.sleep(3)  # the swarm reads its idle RSS once all are joined
            walls = []
            for i in range(args.broadcasts):
                done = await monitor.run_operation({"type": "broadcast"}, timeout=60)
                s = done.status["summary"]
                common.progress(f"[{label}] broadcast {i + 1}: {s['received']:,} answers")
                walls.append(s["elapsedMs"])
        finally:
            await monitor.close()
        await swarm.stop(grace=30)
        summary = json.loads(swarm.output().strip().splitlines()[-1])
    finally:
        if swarm is not None:
            swarm.kill()
        await server.stop()
    return {"mode": label, "flags": flags, "broadcast_ms": common.summary(walls), **summary}


async def measure(args: argparse.Namespace) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="msstorm-swarm-") as tmp:
        return [await one_run(label, flags, args, Path(tmp)) for label, flags in MODES.items()]


def markdown(runs: list[dict[str, Any]], ctx: dict[str, Any], args: argparse.Namespace) -> str:
    commit = (ctx["git"]["commit"] or "?")[:12]
    dirty = " (dirty tree)" if ctx["git"]["dirty"] else ""
    m = ctx["machine"]
    rows = [
        [
            r["mode"],
            f"{r['peak_connected']:,} of {r['target']:,}",
            r["processes"],
            f"{r['rss_kb_per_connection']:.2f}",
            f"{r['cpu_us_per_answer']:.1f}",
            f"{r['pokes_answered']:,}",
            r["reconnects"],
        ]
        for r in runs
    ]
    return "\n".join(
        [
            "# The swarm's own cost",
            "",
            f"`{ctx['command']}` at `{commit}`{dirty}, {ctx['time']}, {m['cores']} cores "
            f"({m['cpu']}). {args.conns:,} msstorm-client connections to one msstorm-server "
            f"worker on the same machine, {args.broadcasts} broadcasts each run.",
            "",
            common.markdown_table(
                [
                    "swarm",
                    "connected",
                    "processes",
                    "KB per connection",
                    "CPU us per answered poke",
                    "answers",
                    "reconnects",
                ],
                rows,
            ),
            "",
            "KB per connection: RSS growth of the swarm's processes over their connections, "
            "read once all are joined and idle (KB = 1,024 bytes). CPU: the swarm's processes, "
            "from the moment each had joined all its connections to its stop, over the pokes "
            "it answered. Goal: <= 4 KB per connection.",
            "",
        ]
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--conns", type=int, default=10_000, help="clients (default 10,000)")
    p.add_argument("--broadcasts", type=int, default=5, help="broadcasts a run (default 5)")
    p.add_argument("--quick", action="store_true", help="2 broadcasts a run")
    args = p.parse_args()
    if args.quick:
        args.broadcasts = 2
    ctx = common.context()
    runs = uvloop.run(measure(args))
    common.append_jsonl("swarm", [{**ctx, "figure": "swarm_cost", "runs": runs}])
    path = common.write_text("swarm.md", markdown(runs, ctx, args))
    print(path.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
