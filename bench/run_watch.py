"""What watching a storm costs the server: a dashboard open, an admin UI connected.

    python bench/run_watch.py                 # 200,000 clients
    python bench/run_watch.py --quick         # 20,000 clients, shorter windows

``msstorm-server --max-clients N --dashboard-port P --admin-auth ...`` (as many
workers as the open-file limit asks for) and ``msstorm-client --conns N``; once
every client is connected and the ramp has settled, the server's CPU (every
worker and the supervisor, from /proc) is read over windows of ``--window``
seconds, in rounds of three, in turn:

- idle: nobody watching (the per-second figures each worker samples for its
  beat, and the admin namespace's 2 s stats, run all the same: they are the
  price of the features being on, and are in every window);
- dashboard: what the page does, a GET of ``/dashboard/api/state`` with the
  token every second (python's HTTP client rather than a browser, whose own CPU
  would share the cores);
- admin: a python-socketio client joined to ``/admin`` with the credentials,
  receiving every worker's ``server_stats`` (what the admin UI receives).

A watcher's cost is its window's CPU less the idle windows' (median over the
rounds), as a fraction of one core. Results: bench/results/watch.jsonl, watch.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import socketio
import uvloop

from bench import common
from bench.processes import BenchError, Child, free_port, kill_leftovers, wait_listening

PY = sys.executable
ADMIN = ("bench", "watch-" + common.token())
GOAL = 0.01  # of one core, each


def server_cpu(server: Child) -> float:
    """CPU seconds of the supervisor and every worker (each thread's runtime, else ticks)."""
    total = 0.0
    for pid in [server.pid, *common.descendants(server.pid)]:
        try:
            total += common.cpu_seconds(pid)
        except (OSError, IndexError, ValueError):
            continue  # a process that ended meanwhile
    return total


def clients(dashboard: str, token: str) -> int:
    request = urllib.request.Request(dashboard + "api/state")
    request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=30) as response:
        return int(json.loads(response.read())["cluster"]["clients"])


async def dashboard_open(dashboard: str, token: str, seconds: float) -> int:
    """GET the state once a second, as the page does; how many answers."""
    answered = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        started = time.monotonic()
        await asyncio.to_thread(clients, dashboard, token)
        answered += 1
        await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - started)))
    return answered


async def admin_connected(url: str, seconds: float) -> int:
    """An admin client on /admin for ``seconds``; how many server_stats it received."""
    sio = socketio.AsyncClient(reconnection=False)
    received = 0

    async def stats(_: Any) -> None:
        nonlocal received
        received += 1

    sio.on("server_stats", stats, namespace="/admin")
    await sio.connect(
        url,
        namespaces=["/admin"],
        transports=["websocket"],
        auth={"username": ADMIN[0], "password": ADMIN[1]},
    )
    try:
        await asyncio.sleep(seconds)
    finally:
        await sio.disconnect()
    return received


async def measure(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    port, dash_port = free_port(), free_port()
    token = common.token()
    url = f"http://127.0.0.1:{port}"
    dashboard = f"http://127.0.0.1:{dash_port}/dashboard/"
    command = [PY, "-m", "msstorm.storm.cli", "--port", str(port), "--monitor-token", token]
    command += ["--max-clients", str(args.conns), "--dashboard-port", str(dash_port)]
    command += ["--admin-auth", ":".join(ADMIN), "--log-level", "warning"]
    command += ["--ping-interval", str(args.ping_ms), "--ping-timeout", str(args.ping_ms)]
    command += ["--max-conns-per-address", "0"]
    server = Child(f"watch-server-{args.conns}", command, workdir)
    swarm: Child | None = None
    try:
        await wait_listening(server, port)
        await wait_listening(server, dash_port)
        procs = max(2, -(-args.conns // 19_000))
        swarm_command = [PY, "-m", "msstorm.swarm.cli", "--url", url, "--no-log"]
        swarm_command += ["--conns", str(args.conns), "--procs", str(procs)]
        swarm = Child(f"watch-swarm-{args.conns}", swarm_command, workdir)
        started = time.monotonic()
        while (held := await asyncio.to_thread(clients, dashboard, token)) < args.conns:
            common.progress(f"{held:,}/{args.conns:,} clients ({time.monotonic() - started:.0f} s)")
            if swarm.exited() is not None or server.exited() is not None:
                raise BenchError(f"the storm ended early\n{server.tail()}\n{swarm.tail()}")
            if time.monotonic() - started > args.ramp_timeout:
                raise BenchError(f"only {held:,} of {args.conns:,} clients connected")
            await asyncio.sleep(2.0)
        ramp = time.monotonic() - started
        common.progress(f"{held:,} clients in {ramp:.0f} s; settling {args.settle:.0f} s")
        await asyncio.sleep(args.settle)

        windows: dict[str, list[float]] = {"idle": [], "dashboard": [], "admin": []}
        answers = {"dashboard": 0, "admin": 0}
        for round_ in range(args.rounds):
            for phase in windows:
                before, wall = server_cpu(server), time.monotonic()
                if phase == "idle":
                    await asyncio.sleep(args.window)
                elif phase == "dashboard":
                    answers[phase] += await dashboard_open(dashboard, token, args.window)
                else:
                    answers[phase] += await admin_connected(url, args.window)
                used = (server_cpu(server) - before) / (time.monotonic() - wall)
                windows[phase].append(used)
                common.progress(
                    f"round {round_ + 1} {phase}: server CPU {100 * used:.2f} % of a core"
                )
        idle = statistics.median(windows["idle"])
        costs = {
            phase: statistics.median(v - idle for v in windows[phase])
            for phase in ("dashboard", "admin")
        }
        final = await asyncio.to_thread(clients, dashboard, token)
        workers = len(common.descendants(server.pid))
        return {
            "clients": final,
            "workers": workers,
            "ramp_s": round(ramp, 1),
            "window_s": args.window,
            "rounds": args.rounds,
            "cpu_cores": {phase: [round(v, 5) for v in vs] for phase, vs in windows.items()},
            "cost_cores": {phase: round(v, 5) for phase, v in costs.items()},
            "answers": answers,
        }
    finally:
        if swarm is not None:
            await swarm.stop(60)
        await server.stop(90)


def markdown(result: dict[str, Any], ctx: dict[str, Any], args: argparse.Namespace) -> str:
    git = ctx["git"]
    cost = result["cost_cores"]
    rows = []
    for phase, label in (
        ("dashboard", "a dashboard open (GET every second)"),
        ("admin", "an admin UI connected (server_stats every 2 s)"),
    ):
        met = "met" if cost[phase] <= GOAL else "**not met**"
        samples = ", ".join(f"{100 * v:.2f}" for v in result["cpu_cores"][phase])
        rows.append([label, f"**{100 * cost[phase]:.2f} %**", samples, f"≤ 1 %: {met}"])
    idle = ", ".join(f"{100 * v:.2f}" for v in result["cpu_cores"]["idle"])
    rows.append(["nobody watching (the baseline)", "-", idle, ""])
    return "\n".join(
        [
            "# What watching a storm costs the server",
            "",
            f"`{ctx['command']}`, {ctx['time']}, commit `{(git.get('commit') or '?')[:7]}`"
            + (" (dirty tree: " + ", ".join(git["dirty_paths"]) + ")" if git["dirty"] else ""),
            "",
            f"{result['clients']:,} clients of msstorm-server ({result['workers']} workers), "
            f"connected in {result['ramp_s']:.0f} s; heartbeat every {args.ping_ms} ms; "
            f"{result['rounds']} rounds of {result['window_s']:.0f} s windows. A watcher's cost is "
            "the median over the rounds of its window's server CPU less the idle windows' "
            "median, as a fraction of one core.",
            "",
            common.markdown_table(
                ["watching", "server CPU it costs", "its windows, % of a core", "goal"], rows
            ),
            "",
            f"The dashboard got {result['answers']['dashboard']} answers, the admin client "
            f"{result['answers']['admin']} server_stats.",
            "",
            f"Machine: {ctx['machine']}",
            f"Versions: {ctx['versions']}",
            "",
        ]
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="20,000 clients, 10 s windows")
    p.add_argument("--conns", type=int, default=None, help="clients (default 200,000)")
    p.add_argument("--window", type=float, default=None, help="seconds per window (default 30)")
    p.add_argument("--rounds", type=int, default=3, help="rounds of three windows (default 3)")
    p.add_argument("--settle", type=float, default=20.0, help="seconds after the ramp")
    p.add_argument("--ramp-timeout", type=float, default=900.0)
    p.add_argument("--ping-ms", type=int, default=60_000, help="heartbeat (default 60000)")
    args = p.parse_args()
    args.conns = args.conns or (20_000 if args.quick else 200_000)
    args.window = args.window or (10.0 if args.quick else 30.0)
    ctx = common.context()
    try:
        with tempfile.TemporaryDirectory(prefix="msstorm-watch-") as workdir:
            result = uvloop.run(measure(args, Path(workdir)))
    except BenchError as exc:
        print(f"run_watch: {exc}", file=sys.stderr)
        return 1
    finally:
        kill_leftovers()
    common.append_jsonl("watch", [{**ctx, "mode": "quick" if args.quick else "full", **result}])
    name = "watch-quick.md" if args.quick else "watch.md"
    path = common.write_text(name, markdown(result, ctx, args))
    print(path.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
