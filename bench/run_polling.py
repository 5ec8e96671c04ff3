"""What HTTP long-polling costs the server, beside WebSocket, in one run.

    python bench/run_polling.py [--quick] [--conns 2000]

msstorm-server (one worker) is given N MessageStorm clients twice: first over
HTTP long-polling (raw, lean clients of this file: per session one keep-alive
connection holding the GET, one for POSTs, in 2 processes), then over WebSocket
(msstorm-client). For each: server memory per idle client (VmRSS growth over N,
kernel apart) and broadcasts (poke out, pokeBack in): completion time and server
CPU per recipient. Polling is the compatibility path; the numbers say what a
client that never upgrades costs. Results: bench/results/polling.*
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import uvloop

from bench import common
from bench.processes import wait_for_clients
from msstorm.monitor.client import MonitorClient

PY = sys.executable
TOKEN = common.token()
SEPARATOR = b"\x1e"


# -- the polling clients (run as child processes: --clients N PORT) -------------------


class HttpLink:
    """One keep-alive HTTP/1.1 connection, one request at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int) -> HttpLink:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def request(self, method: str, target: str, body: bytes = b"") -> bytes:
        head = f"{method} {target} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n"
        self.writer.write(head.encode() + body)
        lines = (await self.reader.readuntil(b"\r\n\r\n")).split(b"\r\n")
        if not lines[0].startswith(b"HTTP/1.1 200"):
            raise ConnectionError(lines[0].decode())
        length = next(
            int(x.split(b":")[1]) for x in lines if x.lower().startswith(b"content-length")
        )
        return await self.reader.readexactly(length)


async def polling_client(port: int, joined: list[int]) -> None:
    base = "/socket.io/?EIO=4&transport=polling"
    getter, poster = await HttpLink.open(port), await HttpLink.open(port)
    sid = json.loads((await getter.request("GET", base))[1:])["sid"]
    target = f"{base}&sid={sid}"
    await poster.request("POST", target, b"40")
    while True:
        answers = []
        for packet in (await getter.request("GET", target)).split(SEPARATOR):
            if packet == b"2":
                answers.append(b"3")
            elif packet.startswith(b'40{"sid"'):
                joined[0] += 1
            elif packet.startswith(b'42["poke",'):
                poke = json.loads(packet[2:])[1]
                answer = {
                    "id": poke["id"],
                    "delay": time.time() * 1000.0 - poke["ts"],
                    "serverTs": poke["ts"],
                }
                answers.append(b"42" + json.dumps(["pokeBack", answer]).encode())
        if answers:
            await poster.request("POST", target, SEPARATOR.join(answers))


async def clients_main(count: int, port: int) -> None:
    joined = [0]
    tasks = []
    for _ in range(count):
        tasks.append(asyncio.ensure_future(polling_client(port, joined)))
        if len(tasks) % 100 == 0:
            await asyncio.sleep(0.05)  # a ramp, not a SYN flood
    while True:
        print(joined[0], flush=True)
        await asyncio.sleep(0.5)
        for task in tasks:
            if task.done() and task.exception() is not None:
                print(f"error {task.exception()!r}", flush=True)
                return


# -- the run ----------------------------------------------------------------------


class Server:
    def __init__(self, port: int) -> None:
        self.port = port
        self.process = subprocess.Popen(
            [
                PY,
                "-m",
                "msstorm.storm.cli",
                "--workers",
                "1",
                "--port",
                str(port),
                "--monitor-token",
                TOKEN,
                "--log-level",
                "warning",
                "--op-timeout",
                "30",
            ],
            start_new_session=True,
        )

    def rss_kib(self) -> float:
        return float(common.process_memory(self.process.pid)["VmRSS"])

    def cpu(self) -> float:
        return common.cpu_seconds(self.process.pid)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)


async def measure(kind: str, n: int, repeats: int) -> dict[str, Any]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = Server(port)
    swarm: list[subprocess.Popen[bytes]] = []
    monitor = MonitorClient(f"http://127.0.0.1:{port}", TOKEN)
    try:
        for _ in range(100):
            try:
                await monitor.connect()
                break
            except Exception:
                await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)
        rss_before = server.rss_kib()
        if kind == "polling":
            for share in (n // 2, n - n // 2):
                swarm.append(
                    subprocess.Popen(
                        [PY, __file__, "--clients", str(share), str(port)],
                        stdout=subprocess.DEVNULL,
                        start_new_session=True,
                    )
                )
        else:
            swarm.append(
                subprocess.Popen(
                    [
                        PY,
                        "-m",
                        "msstorm.swarm.cli",
                        "--url",
                        f"http://127.0.0.1:{port}",
                        "--conns",
                        str(n),
                        "--no-log",
                        "--procs",
                        "2",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                )
            )
        await wait_for_clients(monitor, n, kind, timeout=120, every=1.0)
        await asyncio.sleep(3.0)  # settle
        memory = (server.rss_kib() - rss_before) / n
        elapsed, cpu_per = [], []
        for i in range(repeats):
            cpu0 = server.cpu()
            waited = await monitor.run_operation({"type": "broadcast"}, timeout=60)
            cpu1 = server.cpu()
            summary = waited.status["summary"]
            if summary["lost"]:
                raise RuntimeError(f"{kind}: broadcast {i} lost {summary['lost']} answers")
            elapsed.append(summary["elapsedMs"])
            cpu_per.append((cpu1 - cpu0) * 1e6 / summary["received"])
            common.progress(f"[{kind}] broadcast {i + 1}/{repeats}: {summary['elapsedMs']} ms")
            await asyncio.sleep(0.5)
        return {
            "memory_kib": memory,
            "elapsed_ms": common.summary(elapsed),
            "cpu_us": common.summary(cpu_per),
        }
    finally:
        await monitor.close()
        for child in swarm:
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGTERM)
        for child in swarm:
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
        server.stop()


async def amain(args: argparse.Namespace) -> None:
    repeats = 3 if args.quick else 7
    results = {kind: await measure(kind, args.conns, repeats) for kind in ("polling", "websocket")}
    context = common.context()
    records = []
    for kind, figures in results.items():
        records.append(
            {"figure": f"memory per idle client ({kind})", "conns": args.conns, "unit": "KiB"}
            | {"median": figures["memory_kib"], **context}
        )
        for key, name, unit in (("elapsed_ms", "broadcast", "ms"), ("cpu_us", "CPU", "us")):
            records.append(
                {"figure": f"{name} per recipient ({kind})" if unit == "us" else f"{name} ({kind})"}
                | {"conns": args.conns, "unit": unit, **figures[key], **context}
            )
    common.append_jsonl("polling", records)
    poll, ws = results["polling"], results["websocket"]
    rows = [
        [
            "server memory per idle client (KiB)",
            f"{poll['memory_kib']:.2f}",
            f"{ws['memory_kib']:.2f}",
            f"{poll['memory_kib'] / ws['memory_kib']:.1f}x",
        ],
        [
            "broadcast completion (ms)",
            common.fmt_spread(poll["elapsed_ms"], 1),
            common.fmt_spread(ws["elapsed_ms"], 1),
            f"{poll['elapsed_ms']['median'] / ws['elapsed_ms']['median']:.1f}x",
        ],
        [
            "server CPU per recipient (us)",
            common.fmt_spread(poll["cpu_us"]),
            common.fmt_spread(ws["cpu_us"]),
            f"{poll['cpu_us']['median'] / ws['cpu_us']['median']:.1f}x",
        ],
    ]
    text = (
        "# Long-polling beside WebSocket\n\n"
        f"`{context['command']}` at `{context['git']['commit'][:12]}`, {context['time']}, "
        f"{context['machine']['cores']} cores. N = {args.conns:,} MessageStorm clients, one "
        f"server worker, {repeats} broadcasts each; medians (min..max, n).\n\n"
        + common.markdown_table(
            ["figure", "long-polling", "WebSocket", "polling / WebSocket"], rows
        )
        + "\n\nPolling clients: raw HTTP/1.1 (this script), a keep-alive connection for the GET and"
        " one for POSTs per session. WebSocket clients: msstorm-client.\n"
    )
    common.write_text("polling.md", text)
    print(text)


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--clients":
        uvloop.run(clients_main(int(sys.argv[2]), int(sys.argv[3])))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 broadcasts instead of 7")
    parser.add_argument("--conns", type=int, default=2000, help="clients (default %(default)s)")
    uvloop.run(amain(parser.parse_args()))


if __name__ == "__main__":
    main()
