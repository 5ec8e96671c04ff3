"""Emits to a room of N sockets, side by side: msstorm, python-socketio, Node socket.io.

    python bench/run_rooms.py [--quick] [--conns 10000]

The same rooms application on each server, one process each
(``bench/peers/python_socketio/rooms.py`` on python-socketio's ``AsyncServer``
and, its import changed, on ``msstorm.AsyncServer``; ``bench/peers/node_socketio/
rooms.mjs`` on Node's socket.io): every socket enters three rooms when it
connects ("all", one of ten, one of a hundred). N msstorm-client sockets connect
(they only read); then a python-socketio client asks for ``fanout("all", K)``,
K emits of a small event to the room, itself skipped. Figures:

- server memory per connection: RSS growth from before the clients to once all
  are in their rooms, over N;
- server CPU per recipient: the server's CPU from the request until its CPU
  stops moving (the emits handed to the kernel, however late each server writes
  them), over N x K.

Results: bench/results/rooms.md and rooms.jsonl.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import socketio
import uvloop

from bench import common
from bench.processes import BenchError, Child, free_port, kill_leftovers, wait_listening

PY = sys.executable
PEERS = common.ROOT / "bench" / "peers"
SERVERS = {
    "msstorm": [PY, str(PEERS / "python_socketio" / "rooms.py"), "--engine", "msstorm"],
    "python-socketio": [PY, str(PEERS / "python_socketio" / "rooms.py")],
    "node": ["node", str(PEERS / "node_socketio" / "rooms.mjs")],
}
TIMES = 3  # emits to the room per request


async def settled_cpu(pid: int, quiet: float = 0.01, every: float = 0.25) -> float:
    """The CPU seconds of ``pid`` once it has stopped using the CPU."""
    last = common.cpu_seconds(pid)
    while True:
        await asyncio.sleep(every)
        now = common.cpu_seconds(pid)
        if now - last < quiet:
            return now
        last = now


async def measure(kind: str, n: int, repeats: int, workdir: Path) -> dict[str, Any]:
    port = free_port()
    server = Child(f"{kind}-server", [*SERVERS[kind], "--port", str(port)], workdir)
    swarm: Child | None = None
    driver = socketio.AsyncClient(reconnection=False)
    try:
        await wait_listening(server, port)
        await asyncio.sleep(1.0)
        rss_before = common.process_memory(server.pid)["VmRSS"]
        url = f"http://127.0.0.1:{port}"
        swarm = Child(
            f"{kind}-swarm",
            [PY, "-m", "msstorm.swarm.cli", "--url", url, "--conns", str(n), "--no-log"],
            workdir,
        )
        await driver.connect(url, transports=["websocket"])
        deadline = time.monotonic() + 300
        while (connected := await driver.call("count", timeout=30)) < n + 1:
            common.progress(f"[{kind}] {connected - 1:,}/{n:,} sockets in their rooms")
            if time.monotonic() > deadline or swarm.exited() is not None:
                raise BenchError(f"{kind}: {connected - 1} of {n} connected\n{swarm.tail()}")
            await asyncio.sleep(1.0)
        await asyncio.sleep(3.0)  # settle
        memory = (common.process_memory(server.pid)["VmRSS"] - rss_before) / n
        cpu_per = []
        for i in range(repeats):
            cpu0 = await settled_cpu(server.pid)
            await driver.call("fanout", ("all", TIMES), timeout=300)
            cpu1 = await settled_cpu(server.pid)
            cpu_per.append((cpu1 - cpu0) * 1e6 / (n * TIMES))
            common.progress(f"[{kind}] fan-out {i + 1}/{repeats}: {cpu_per[-1]:.1f} us/recipient")
        return {"memory_kib": memory, "cpu_us": common.summary(cpu_per)}
    finally:
        if driver.connected:
            await driver.disconnect()
        if swarm is not None:
            await swarm.stop()
        await server.stop()


async def amain(args: argparse.Namespace) -> None:
    repeats = 3 if args.quick else 7
    with tempfile.TemporaryDirectory(prefix="msstorm-rooms-") as workdir:
        try:
            results = {
                kind: await measure(kind, args.conns, repeats, Path(workdir)) for kind in SERVERS
            }
        finally:
            kill_leftovers()
    context = common.context()
    records = []
    for kind, figures in results.items():
        base = {"server": kind, "conns": args.conns, "emits": TIMES}
        records.append(
            {"figure": "memory per connection, 3 rooms each", "unit": "KiB", **base}
            | {"median": figures["memory_kib"], **context}
        )
        records.append(
            {"figure": "emit to a room, server CPU per recipient", "unit": "us", **base}
            | {**figures["cpu_us"], **context}
        )
    common.append_jsonl("rooms", records)
    ours, py, node = results["msstorm"], results["python-socketio"], results["node"]
    cpu = {kind: r["cpu_us"]["median"] for kind, r in results.items()}
    rows = [
        [
            "server CPU per recipient (us)",
            common.fmt_spread(ours["cpu_us"]),
            common.fmt_spread(py["cpu_us"]),
            common.fmt_spread(node["cpu_us"]),
            f"{cpu['msstorm'] / cpu['python-socketio']:.3f}x / {cpu['msstorm'] / cpu['node']:.2f}x",
            "<= 0.1x / <= 0.33x",
        ],
        [
            "server memory per connection, 3 rooms each (KiB)",
            f"{ours['memory_kib']:.2f}",
            f"{py['memory_kib']:.2f}",
            f"{node['memory_kib']:.2f}",
            f"{ours['memory_kib'] / py['memory_kib']:.2f}x / "
            f"{ours['memory_kib'] / node['memory_kib']:.2f}x",
            "",
        ],
    ]
    text = (
        "# Emits to a room, side by side\n\n"
        f"`{context['command']}` at `{context['git']['commit'][:12]}`"
        f"{' (dirty)' if context['git'].get('dirty') else ''}, {context['time']}, "
        f"{context['machine']['cores']} cores. N = {args.conns:,} sockets (msstorm-client), "
        f"each in 3 rooms; {repeats} requests of {TIMES} emits to the room of all N; "
        "medians (min..max, n). One server process each.\n\n"
        + common.markdown_table(
            [
                "figure",
                "msstorm",
                "python-socketio 5.18",
                "Node socket.io 4.8",
                "msstorm / python-socketio / Node",
                "goal",
            ],
            rows,
        )
        + "\n\nThe application is the same python-socketio code on msstorm and on "
        "python-socketio (bench/peers/python_socketio/rooms.py, its import changed), and "
        "its Node twin (bench/peers/node_socketio/rooms.mjs).\n"
    )
    common.write_text("rooms.md", text)
    print(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 requests instead of 7")
    parser.add_argument("--conns", type=int, default=10000, help="sockets (default %(default)s)")
    uvloop.run(amain(parser.parse_args()))


if __name__ == "__main__":
    main()
