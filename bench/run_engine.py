"""The engine's two figures: memory per idle connection, and codec rates.

    python bench/run_engine.py --quick          # under 5 minutes, N = 10,000 still
    python bench/run_engine.py                  # more repeats, longer settling
    python bench/run_engine.py --conns 5000     # another N

Figure 1, memory per idle connection. For each server, fresh each time: start
it, start the client processes (``bench/swarm_idle.py``, one uvloop loop each,
raw picows clients), measure, connect N/2 then N idle clients, measure after
each stage once the server's ``/healthz`` counts them and a few seconds have
passed. Reported: (RSS at N - RSS at 0) / N, from ``/proc/PID/status`` VmRSS;
Pss and Private_Dirty from ``/proc/PID/smaps_rollup`` alike; the marginal cost
between N/2 and N, which leaves out one-off costs; and the kernel's slab growth
(``/proc/meminfo``, system-wide, both ends of every loopback connection) per N.
The servers: msstorm (``python -m msstorm.server.cli``) with Socket.IO clients,
and bare picows servers (``bench/peers/picows_idle.py``) with bare WebSocket
clients: picows's defaults, the two settings the issue names
(``use_aiofastnet=False, read_buffer_init_size=2048``), and every setting
msstorm passes. Rounds are interleaved (msstorm, peers, msstorm, ...) so that
all see the same machine state.

Figure 2, codec rates: see ``bench/codec_rates.py``.

Results: appended to ``bench/results/engine.jsonl`` (one object per figure);
``bench/results/engine.md`` is rewritten with the tables.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import importlib.util
import json
import os
import resource
import signal
import socket
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import codec_rates
from bench.common import (
    ROOT,
    append_jsonl,
    context,
    fmt_spread,
    kernel_memory,
    markdown_table,
    process_memory,
    progress,
    summary,
    write_text,
)

BENCH = Path(__file__).resolve().parent
PY = sys.executable
GOAL_KIB = 4.0
GOAL_RATIO = 10.0
FD_MARGIN = 64  # descriptors a server needs besides its connections


class BenchError(Exception):
    """The benchmark could not do what it set out to do; the message says why."""


# -- the servers under test ------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    name: str
    label: str
    mode: str  # what the clients speak: "sio" or "ws"
    path: str

    def command(self, port: int, args: argparse.Namespace) -> list[str]:
        ping = ["--ping-interval", str(args.ping_interval)]
        if self.name == "msstorm":
            return [*msstorm_command(args.server), "--port", str(port), *ping]
        if self.name == "msstorm-traced":
            return [*msstorm_command("engine"), "--port", str(port), *ping,
                    "--trace-dir", str(args.workdir)]  # fmt: skip
        profile = self.name.removeprefix("picows-")
        return [PY, str(BENCH / "peers" / "picows_idle.py"), "--port", str(port),
                "--profile", profile]  # fmt: skip


SERVERS = {
    "engine": "`msstorm.Server()` + `msstorm.serve()` (bench/peers/msstorm_idle.py)",
    "echo": "examples/echo.py",
    "cli": "the msstorm-server CLI",
}


def msstorm_command(server: str) -> list[str]:
    """How to start the msstorm server that ``--server`` names."""
    if server == "engine":
        return [PY, str(BENCH / "peers" / "msstorm_idle.py")]
    if server == "echo":
        return [PY, str(ROOT / "examples" / "echo.py")]
    # The CLI module has moved before; take whichever exists.
    for module in ("msstorm.storm.cli", "msstorm.server.cli"):
        with contextlib.suppress(ImportError):
            if importlib.util.find_spec(module) is not None:
                return [PY, "-m", module, "--log-level", "warning"]
    raise BenchError("no msstorm CLI module found (msstorm.storm.cli, msstorm.server.cli)")


TARGETS = {
    t.name: t
    for t in (
        Target("msstorm", "msstorm (Socket.IO clients)", "sio", "/socket.io/"),
        Target("picows-default", "bare picows, `ws_create_server` defaults", "ws", "/"),
        Target(
            "picows-lean",
            "bare picows, `use_aiofastnet=False, read_buffer_init_size=2048`",
            "ws",
            "/",
        ),
        Target("picows-msstorm", "bare picows, every setting msstorm passes", "ws", "/"),
        Target(
            "picows-floor",
            "bare picows, msstorm's settings, upgrade request/response emptied",
            "ws",
            "/",
        ),
        Target(
            "msstorm-traced", "msstorm under tracemalloc (diagnosis only)", "sio", "/socket.io/"
        ),
    )
}


# -- child processes ----------------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1
CHILDREN: set[int] = set()  # pids still to reap, for the last-resort cleanup


def _die_with_parent() -> None:
    # In the child, between fork and exec: SIGTERM when the benchmark dies, however it dies.
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Child:
    name: str
    proc: asyncio.subprocess.Process
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return "\n".join(f"    {line}" for line in text[-lines:])

    async def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, then SIGKILL if it lingers; returns the exit status."""
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), timeout)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                await self.proc.wait()
        CHILDREN.discard(self.pid)
        return self.proc.returncode


async def spawn(name: str, cmd: list[str], workdir: Path, *, pipes: bool = False) -> Child:
    log = workdir / f"{name}.log"
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            *cmd,
            cwd=ROOT,
            stdin=asyncio.subprocess.PIPE if pipes else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE if pipes else out,
            stderr=out,
            preexec_fn=_die_with_parent,
            start_new_session=True,  # Ctrl-C reaches the benchmark only; it stops the rest
        )
    CHILDREN.add(proc.pid)
    return Child(name, proc, log)


def kill_leftovers() -> None:
    for pid in list(CHILDREN):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        CHILDREN.discard(pid)


class Swarm:
    """One client process and what it last said."""

    def __init__(self, child: Child) -> None:
        self.child = child
        self.ok = 0
        self.failed = 0
        self.errors: dict[str, int] = {}
        self.lines: asyncio.Queue[str] = asyncio.Queue()
        self.reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        stdout = self.child.proc.stdout
        assert stdout is not None
        while True:
            raw = await stdout.readline()
            if not raw:
                await self.lines.put("eof")
                return
            line = raw.decode().strip()
            kind, _, rest = line.partition(" ")
            if kind in ("progress", "done"):
                parts = rest.split(" ", 2)
                self.ok, self.failed = int(parts[0]), int(parts[1])
                if kind == "done":
                    self.errors = json.loads(parts[2])
                    await self.lines.put(line)
            else:
                await self.lines.put(line)

    def send(self, line: str) -> None:
        stdin = self.child.proc.stdin
        assert stdin is not None
        stdin.write(line.encode() + b"\n")

    async def expect(self, prefix: str, timeout: float) -> str:
        try:
            line = await asyncio.wait_for(self.lines.get(), timeout)
        except TimeoutError:
            raise BenchError(
                f"client process {self.child.name} did not answer {prefix!r} within {timeout:.0f} s"
            ) from None
        if not line.startswith(prefix):
            raise BenchError(
                f"client process {self.child.name} said {line!r} instead of {prefix!r}\n"
                + self.child.log_tail()
            )
        return line

    async def quit(self) -> None:
        if self.child.proc.returncode is None:
            with contextlib.suppress(Exception):
                self.send("quit")
                await asyncio.wait_for(self.child.proc.wait(), 10)
        await self.child.stop(5)
        self.reader.cancel()


# -- measuring ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def health(port: int) -> dict[str, Any]:
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        raw = await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    if b" 200 " not in head.split(b"\r\n", 1)[0]:
        raise BenchError(f"/healthz answered {head[:80]!r}")
    result: dict[str, Any] = json.loads(body)
    return result


async def wait_healthy(server: Child, port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if server.proc.returncode is not None:
            raise BenchError(
                f"{server.name} exited with status {server.proc.returncode} while starting:\n"
                + server.log_tail()
            )
        with contextlib.suppress(OSError, BenchError, TimeoutError, ValueError):
            await health(port)
            return
        if time.monotonic() > deadline:
            raise BenchError(f"{server.name} did not answer /healthz within {timeout:.0f} s")
        await asyncio.sleep(0.1)


def snapshot(server: Child, swarms: list[Swarm], connections: int) -> dict[str, Any]:
    try:
        return {
            "connections": connections,
            "time": time.time(),
            "server": process_memory(server.pid),
            "kernel": kernel_memory(),
            "clients_rss_kB": [process_memory(s.child.pid).get("VmRSS") for s in swarms],
        }
    except FileNotFoundError:  # a /proc/PID that went away
        dead = [c for c in (server, *(s.child for s in swarms)) if c.proc.returncode is not None]
        raise BenchError(
            "a process died while being measured: "
            + ", ".join(f"{c.name} (status {c.proc.returncode})" for c in dead)
            + (f"\n{dead[0].log_tail()}" if dead else "")
        ) from None


@dataclass
class Round:
    target: str
    index: int
    conns: int
    snapshots: list[dict[str, Any]] = field(default_factory=list)
    lost: int = 0
    pings_answered: int = 0
    connect_seconds: list[float] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def per_conn(self, key: str, source: str = "server", a: int = 0, b: int = -1) -> float | None:
        s0, s1 = self.snapshots[a], self.snapshots[b]
        v0, v1 = s0[source].get(key), s1[source].get(key)
        n = s1["connections"] - s0["connections"]
        if v0 is None or v1 is None or n <= 0:
            return None
        return (v1 - v0) / n  # /proc's kB are KiB

    def as_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "conns": self.conns,
            "per_conn_KiB": {
                "rss": self.per_conn("VmRSS"),
                "pss": self.per_conn("Pss"),
                "private_dirty": self.per_conn("Private_Dirty"),
                "rss_marginal": self.per_conn("VmRSS", a=1),
                "kernel_slab": self.per_conn("Slab", "kernel"),
                "kernel_sunreclaim": self.per_conn("SUnreclaim", "kernel"),
                "kernel_tcp_mem": self.per_conn("tcp_mem_kB", "kernel"),
            },
            # Every loopback connection is two TCP sockets; anything else means other
            # programs opened or closed sockets meanwhile, and the kernel columns show it.
            "tcp_sockets_delta": self.snapshots[-1]["kernel"].get("tcp_inuse", 0)
            - self.snapshots[0]["kernel"].get("tcp_inuse", 0),
            "lost": self.lost,
            "pings_answered": self.pings_answered,
            "connect_seconds": self.connect_seconds,
            "snapshots": self.snapshots,
            **self.extra,
        }


def client_plan(n: int, per_proc: int) -> int:
    return max(1, -(-n // per_proc))


async def connect_stage(
    swarms: list[Swarm], server: Child, port: int, total: int, label: str, timeout: float
) -> float:
    """Bring the swarms to ``total`` connections between them; returns the seconds it took."""
    start = time.monotonic()
    have = sum(s.ok for s in swarms)
    need = total - have
    share = [need // len(swarms) + (1 if i < need % len(swarms) else 0) for i in range(len(swarms))]
    for swarm, k in zip(swarms, share, strict=True):
        swarm.send(f"connect {k}")
    waits = [
        asyncio.ensure_future(s.expect("done", timeout)) for s, k in zip(swarms, share, strict=True)
    ]
    last = 0.0
    try:
        while not all(w.done() for w in waits):
            await asyncio.wait(waits, timeout=0.25)
            if server.proc.returncode is not None:
                raise BenchError(
                    f"{server.name} exited with status {server.proc.returncode} "
                    f"with {sum(s.ok for s in swarms)} clients connected:\n" + server.log_tail()
                )
            if time.monotonic() - last >= 1.0:
                last = time.monotonic()
                ok = sum(s.ok for s in swarms)
                failed = sum(s.failed for s in swarms)
                progress(f"{label}: {ok:,}/{total:,} connected, {failed} failed")
        for w in waits:
            w.result()  # raises what the wait raised
    finally:
        for w in waits:
            w.cancel()
    elapsed = time.monotonic() - start
    ok = sum(s.ok for s in swarms)
    failed = sum(s.failed for s in swarms)
    if ok < total:
        errors: dict[str, int] = {}
        for s in swarms:
            for msg, count in s.errors.items():
                errors[msg] = errors.get(msg, 0) + count
        why = "; ".join(f"{count} x {msg}" for msg, count in errors.items()) or "no error reported"
        raise BenchError(
            f"{label}: only {ok:,} of {total:,} connections opened ({failed} failed): {why}\n"
            f"server log:\n{server.log_tail()}"
        )
    # The server's own count must agree before anything is measured.
    deadline = time.monotonic() + 15
    while True:
        seen = (await health(port)).get("connections")
        if seen == total:
            break
        if time.monotonic() > deadline:
            raise BenchError(f"{label}: clients hold {ok:,} connections but /healthz says {seen}")
        await asyncio.sleep(0.2)
    progress(f"{label}: {total:,}/{total:,} connected in {elapsed:.1f} s; /healthz agrees")
    return elapsed


async def memory_round(target: Target, index: int, args: argparse.Namespace, label: str) -> Round:
    n = args.conns
    port = free_port()
    result = Round(target.name, index, n)
    server = await spawn(f"{target.name}-{index}", target.command(port, args), args.workdir)
    swarms: list[Swarm] = []
    try:
        await wait_healthy(server, port)
        procs = client_plan(n, args.clients_per_proc)
        for i in range(procs):
            cmd = [
                PY, str(BENCH / "swarm_idle.py"), "--port", str(port), "--mode", target.mode,
                "--path", target.path, "--src", f"127.0.{1 + index % 200}.{10 + i}",
                "--concurrency", str(args.concurrency),
            ]  # fmt: skip
            child = await spawn(f"swarm-{target.name}-{index}-{i}", cmd, args.workdir, pipes=True)
            swarms.append(Swarm(child))
        for swarm in swarms:
            await swarm.expect("ready", 30)
        await asyncio.sleep(args.settle / 2)
        result.snapshots.append(snapshot(server, swarms, 0))
        if target.name == "msstorm-traced":
            await traced_dump(server, args.workdir, 0)
        stages = [n // 2, n] if n >= 2 else [n]
        for stage in stages:
            secs = await connect_stage(swarms, server, port, stage, label, args.connect_timeout)
            result.connect_seconds.append(round(secs, 2))
            await asyncio.sleep(args.settle)
            result.snapshots.append(snapshot(server, swarms, stage))
        if args.after_ping and target.mode == "sio":
            # Past the first heartbeat of the last client: every connection has sent a
            # ping and read its pong once.
            wait = args.ping_interval / 1000 + 2 - args.settle
            progress(f"{label}: holding {wait:.0f} s more, past the first heartbeat")
            await asyncio.sleep(max(0.0, wait))
            result.extra["after_first_ping"] = snapshot(server, swarms, n)
        if target.name == "msstorm-traced":
            result.extra["diagnosis"] = await traced_dump(server, args.workdir, 1)
        for swarm in swarms:
            swarm.send("status")
        for swarm in swarms:
            parts = (await swarm.expect("status", 10)).split()
            result.lost += int(parts[3])
            result.pings_answered += int(parts[4])
        seen = (await health(port)).get("connections")
        if seen != n or result.lost:
            raise BenchError(
                f"{label}: connections dropped while measuring: /healthz says {seen}, "
                f"clients lost {result.lost}\n{server.log_tail()}"
            )
        r = result.as_dict()["per_conn_KiB"]
        progress(
            f"{label}: RSS {r['rss']:.2f} KiB/conn (marginal {r['rss_marginal']:.2f}), "
            f"Private_Dirty {r['private_dirty']:.2f}, kernel slab {r['kernel_slab']:.2f}"
        )
        return result
    finally:
        for swarm in swarms:
            await swarm.quit()
        status = await server.stop()
        if status not in (0, None, -signal.SIGTERM):
            progress(f"{server.name} exited with status {status}")


# -- tracemalloc diagnosis ------------------------------------------------------------------


async def traced_dump(server: Child, workdir: Path, index: int) -> dict[str, Any] | None:
    """Ask the traced server for a snapshot; the second call returns what grew."""
    done = workdir / f"traced-{index}.json"
    server.proc.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + 120
    while not done.exists():
        if time.monotonic() > deadline or server.proc.returncode is not None:
            raise BenchError("the traced server wrote no snapshot\n" + server.log_tail())
        await asyncio.sleep(0.2)
    if index == 0:
        return None
    report: dict[str, Any] = json.loads(done.read_text())
    return report


# -- the figures ----------------------------------------------------------------------------


def memory_figure(rounds: list[Round], args: argparse.Namespace) -> dict[str, Any]:
    by_target: dict[str, list[dict[str, Any]]] = {}
    for r in rounds:
        by_target.setdefault(r.target, []).append(r.as_dict())
    details: dict[str, Any] = {}
    for name, runs in by_target.items():
        keys = runs[0]["per_conn_KiB"].keys()
        details[name] = {
            "label": TARGETS[name].label,
            "clients": TARGETS[name].mode,
            "per_conn_KiB": {
                key: summary(
                    [r["per_conn_KiB"][key] for r in runs if r["per_conn_KiB"][key] is not None]
                )
                for key in keys
            },
            "connect_seconds": [r["connect_seconds"] for r in runs],
            "runs": runs,
        }
        after = [r["after_first_ping"] for r in runs if "after_first_ping" in r]
        if after:
            details[name]["per_conn_KiB"]["rss_after_first_ping"] = summary(
                [
                    (a["server"]["VmRSS"] - r["snapshots"][0]["server"]["VmRSS"]) / args.conns
                    for a, r in zip(
                        after, [r for r in runs if "after_first_ping" in r], strict=True
                    )
                ]
            )
    # msstorm minus each peer, pairing the runs made side by side (run i with run i).
    ms_runs = [r["per_conn_KiB"]["rss"] for r in by_target["msstorm"]]
    details["msstorm"]["minus_peer_KiB"] = {
        name: summary([a - b["per_conn_KiB"]["rss"] for a, b in zip(ms_runs, runs, strict=False)])
        for name, runs in by_target.items()
        if name.startswith("picows-")
    }
    ms = details["msstorm"]["per_conn_KiB"]["rss"]
    return {
        "figure": "memory_per_idle_connection",
        "description": (
            "msstorm server user-space memory per idle Socket.IO connection: "
            "(VmRSS with N clients - VmRSS with none) / N"
        ),
        "value": ms["median"],
        "unit": "KiB/connection",
        "median": ms["median"],
        "spread": [ms["min"], ms["max"]],
        "samples": ms["samples"],
        "goal": f"<= {GOAL_KIB} KiB/connection",
        "meets_goal": ms["median"] is not None and ms["median"] <= GOAL_KIB,
        "conns": args.conns,
        "server": {
            "name": args.server,
            "what": SERVERS[args.server],
            "command": [
                os.path.relpath(a, ROOT) if a.startswith(str(ROOT)) else a
                for a in msstorm_command(args.server)[1:]
            ],
        },
        "ping_interval_ms": args.ping_interval,
        "settle_s": args.settle,
        "client_processes": client_plan(args.conns, args.clients_per_proc),
        "notes": [
            "kernel figures are system-wide /proc/meminfo deltas: both ends of every "
            "loopback connection (server and client sockets), plus anything else the "
            "machine did meanwhile",
            "rss_marginal: (RSS at N - RSS at N/2) / (N/2), leaves out one-off costs",
            "picows peers hold bare WebSocket connections (no Socket.IO handshake)",
        ],
        "details": details,
    }


def codec_figure(result: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    ratios = result["ratios"]
    worst = min(("decode", "encode"), key=lambda op: ratios[op]["cython/python-socketio"]["median"])
    s = ratios[worst]["cython/python-socketio"]
    return {
        "figure": "codec_rates",
        "description": (
            "msstorm Cython codec vs python-socketio Packet, poke/pokeBack-sized EVENT; "
            f"value: the lower of the decode and encode ratios ({worst})"
        ),
        "value": s["median"],
        "unit": "x python-socketio (ops/s ratio)",
        "median": s["median"],
        "spread": [s["min"], s["max"]],
        "samples": s["samples"],
        "goal": f">= {GOAL_RATIO}x python-socketio",
        "meets_goal": all(
            ratios[op]["cython/python-socketio"]["median"] >= GOAL_RATIO for op in ratios
        ),
        "repeats": args.codec_repeats,
        "min_time_s": args.codec_min_time,
        "decode_input": codec_rates.DECODE_FRAME.decode(),
        "encode_input": codec_rates.ENCODE_DATA,
        "details": result,
    }


def markdown(figures: list[dict[str, Any]], ctx: dict[str, Any], args: argparse.Namespace) -> str:
    git = ctx["git"]
    v = ctx["versions"]
    m = ctx["machine"]
    out = [
        "# Engine benchmarks",
        "",
        f"`{ctx['command']}` at {ctx['time']}, commit `{(git['commit'] or '?')[:12]}`"
        + (" (with uncommitted changes)" if git["dirty"] else ""),
        f"on {m['cores']} cores ({m['cpu']}), {m['memory_kB'] // 1024**2} GiB, "
        f"Linux {m['kernel']}, RLIMIT_NOFILE {m['rlimit_nofile'][0]}; "
        f"Python {v['python']}, picows {v['picows']}, uvloop {v['uvloop']}, orjson {v['orjson']}, "
        f"Cython {v['Cython']}, python-socketio {v['python-socketio']}.",
        "",
        "Figures are medians over repeats, with (min..max, n) of the repeats.",
    ]
    for fig in figures:
        if fig["figure"] == "memory_per_idle_connection":
            d = fig["details"]
            n = fig["conns"]
            out += [
                "",
                f"## Memory per idle connection, N = {n:,}",
                "",
                f"KiB per connection: (value with N clients - value with none) / N, "
                f"server process only, {fig['settle_s']:g} s after `/healthz` counted N; "
                f"ping interval {fig['ping_interval_ms']} ms; "
                f"clients in {fig['client_processes']} processes. Goal for msstorm: {fig['goal']}. "
                f"msstorm server: {fig['server']['what']}.",
                "",
            ]
            rows = []
            for det in d.values():
                p = det["per_conn_KiB"]
                rows.append(
                    [
                        det["label"],
                        fmt_spread(p["rss"]),
                        fmt_spread(p["rss_marginal"]),
                        fmt_spread(p["pss"]),
                        fmt_spread(p["private_dirty"]),
                        fmt_spread(p["kernel_slab"]),
                        fmt_spread(p["kernel_sunreclaim"]),
                    ]
                )
            out.append(
                markdown_table(
                    [
                        "server",
                        "VmRSS",
                        "VmRSS, N/2 to N",
                        "Pss",
                        "Private_Dirty",
                        "kernel Slab*",
                        "kernel SUnreclaim*",
                    ],
                    rows,
                )
            )
            out.append("")
            for name, diff in d["msstorm"].get("minus_peer_KiB", {}).items():
                out.append(
                    f"- msstorm VmRSS minus {name}'s, run by run: {fmt_spread(diff)} KiB/connection"
                )
            if "rss_after_first_ping" in d["msstorm"]["per_conn_KiB"]:
                out.append(
                    "- msstorm VmRSS after every client's first heartbeat: "
                    + fmt_spread(d["msstorm"]["per_conn_KiB"]["rss_after_first_ping"])
                    + " KiB/connection"
                )
            disturbed = [
                f"{r['target']} run {i + 1}: {r['tcp_sockets_delta']:+,}"
                for det in d.values()
                for i, r in enumerate(det["runs"])
                if abs(r["tcp_sockets_delta"] - 2 * n) > 0.01 * n
            ]
            if disturbed:
                out.append(
                    f"- kernel columns disturbed: other programs opened or closed TCP sockets "
                    f"while measuring (socket count change, expected {2 * n:+,}): "
                    + "; ".join(disturbed)
                )
            out += [
                "",
                "\\* The kernel columns are system-wide `/proc/meminfo` deltas per connection: "
                "they cover both ends of each loopback connection (the server's socket and the "
                "client's), so a server whose clients are elsewhere pays about half. "
                "Bare picows servers hold plain WebSocket connections; msstorm's clients also "
                'did the Socket.IO handshake (`0{...}`, `40`, `40{"sid":...}`). Pss divides '
                "pages mapped by several processes among them, so it moves when other Python "
                "processes start or stop; VmRSS and Private_Dirty do not.",
            ]
        else:
            det = fig["details"]
            out += [
                "",
                "## Codec rates",
                "",
                "Operations per second on one core for a `poke`/`pokeBack`-sized EVENT "
                '(decode `42["pokeBack",{...}]`, encode `["poke",{...}]`), '
                f"{fig['repeats']} interleaved repeats. Goal: Cython {fig['goal']}.",
                "",
            ]
            rows = []
            for op in ("decode", "encode"):
                ops = det["ops_per_s"][op]
                ratios = det["ratios"][op]
                rows.append(
                    [
                        op,
                        f"{ops['cython']['median'] / 1e3:,.0f}k",
                        f"{ops['twin']['median'] / 1e3:,.0f}k",
                        f"{ops['python-socketio']['median'] / 1e3:,.0f}k",
                        fmt_spread(ratios["cython/python-socketio"], 1) + "x",
                        fmt_spread(ratios["cython/twin"], 2) + "x",
                    ]
                )
            out.append(
                markdown_table(
                    [
                        "operation",
                        "msstorm Cython",
                        "msstorm plain-Python twin",
                        "python-socketio",
                        "Cython / python-socketio",
                        "Cython / twin",
                    ],
                    rows,
                )
            )
            out += [
                "",
                "msstorm decodes the frame's bytes (skipping Engine.IO's `4`) and encodes to frame "
                "bytes; python-socketio decodes and encodes the `str` python-engineio deals in "
                "(the bytes-to-str step is not counted for it). python-socketio uses its default "
                "`json` module.",
            ]
    return "\n".join(out) + "\n"


# -- main ---------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Progress goes to stderr; results to bench/results/engine.{jsonl,md}.",
    )
    p.add_argument("--quick", action="store_true", help="fewer repeats (under 5 minutes)")
    p.add_argument("--conns", type=int, default=10_000, metavar="N", help="idle clients (10,000)")
    p.add_argument("--runs", type=int, help="memory rounds per server (quick 3, full 5)")
    p.add_argument(
        "--peers",
        default="picows-default,picows-lean,picows-msstorm,picows-floor",
        help="bare picows servers to compare with, comma-separated ('' for none)",
    )
    p.add_argument("--settle", type=float, help="seconds between reaching a count and measuring")
    p.add_argument("--ping-interval", type=int, default=25000, metavar="MS")
    p.add_argument(
        "--after-ping",
        action=argparse.BooleanOptionalAction,
        help="measure msstorm again past the first heartbeat (full mode: yes)",
    )
    p.add_argument(
        "--server",
        choices=sorted(SERVERS),
        default="engine",
        help="which msstorm server: engine (default: msstorm.Server on namespace '/', "
        "no handlers), echo (examples/echo.py), cli (the msstorm-server command)",
    )
    p.add_argument("--clients-per-proc", type=int, default=5000)
    p.add_argument("--concurrency", type=int, default=128, help="handshakes in flight per process")
    p.add_argument("--connect-timeout", type=float, default=120.0, help="seconds per stage")
    p.add_argument("--codec-repeats", type=int, help="codec repeats (quick 7, full 21)")
    p.add_argument(
        "--codec-min-time", type=float, help="seconds per timed loop (quick 0.2, full 0.5)"
    )
    p.add_argument("--skip-memory", action="store_true")
    p.add_argument("--skip-codec", action="store_true")
    p.add_argument(
        "--diagnose",
        action=argparse.BooleanOptionalAction,
        help="one more msstorm round under tracemalloc: where the memory goes, not a figure "
        "(full mode: yes)",
    )
    p.add_argument("--no-write", action="store_true", help="print results, write no file")
    args = p.parse_args(argv)
    quick = args.quick
    if args.runs is None:
        args.runs = 3 if quick else 5
    if args.settle is None:
        args.settle = 3.0 if quick else 5.0
    if args.after_ping is None:
        args.after_ping = not quick
    if args.diagnose is None:
        args.diagnose = not quick
    if args.codec_repeats is None:
        args.codec_repeats = 7 if quick else 21
    if args.codec_min_time is None:
        args.codec_min_time = 0.2 if quick else 0.5
    args.peer_list = [name for name in args.peers.split(",") if name]
    for name in args.peer_list:
        if name not in TARGETS or not name.startswith("picows-"):
            choices = ", ".join(t for t in TARGETS if t.startswith("picows-"))
            p.error(f"unknown peer {name!r}: choose among {choices}")
    return args


def check_limits(args: argparse.Namespace) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if args.conns < 1:
        raise BenchError("--conns must be at least 1")
    if args.conns + FD_MARGIN > soft:
        raise BenchError(
            f"one server process cannot hold {args.conns:,} connections: its open-file limit "
            f"(RLIMIT_NOFILE) is {soft:,} (hard {hard:,}); use --conns {soft - FD_MARGIN} or less"
        )
    if args.clients_per_proc + FD_MARGIN > soft:
        raise BenchError(f"--clients-per-proc must be at most {soft - FD_MARGIN} (RLIMIT_NOFILE)")


async def run_memory(args: argparse.Namespace) -> list[Round]:
    targets = [TARGETS["msstorm"], *(TARGETS[name] for name in args.peer_list)]
    rounds: list[Round] = []
    total = len(targets) * args.runs
    done = 0
    for index in range(args.runs):
        for target in targets:
            done += 1
            label = f"[{done}/{total}] {target.name} run {index + 1}/{args.runs}"
            procs = client_plan(args.conns, args.clients_per_proc)
            progress(f"{label}: starting the server and {procs} client processes")
            rounds.append(await memory_round(target, index, args, label))
    if args.diagnose:
        label = "[diagnosis] msstorm under tracemalloc"
        progress(f"{label}: starting")
        rounds.append(await memory_round(TARGETS["msstorm-traced"], args.runs, args, label))
    return rounds


async def amain(args: argparse.Namespace) -> list[Round]:
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        return await run_memory(args)
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    ctx = context([sys.argv[0], *(sys.argv[1:] if argv is None else argv)])
    started = time.monotonic()
    figures: list[dict[str, Any]] = []
    diagnosis: dict[str, Any] | None = None
    try:
        check_limits(args)
        with tempfile.TemporaryDirectory(prefix="msstorm-bench-") as workdir:
            args.workdir = Path(workdir)
            if not args.skip_memory:
                progress(
                    f"figure 1: memory per idle connection, N={args.conns:,}, "
                    f"{args.runs} run(s) each of msstorm and "
                    f"{', '.join(args.peer_list) or 'no peer'}"
                )
                rounds = asyncio.run(amain(args))
                kept = [r for r in rounds if r.target != "msstorm-traced"]
                figures.append(memory_figure(kept, args))
                traced = [r for r in rounds if r.target == "msstorm-traced"]
                if traced:
                    diagnosis = traced[0].extra.get("diagnosis")
                    figures[-1]["diagnosis"] = {
                        "per_conn_KiB": traced[0].as_dict()["per_conn_KiB"],
                        **(diagnosis or {}),
                    }
            if not args.skip_codec:
                progress(
                    f"figure 2: codec rates, {args.codec_repeats} repeats of "
                    f"{args.codec_min_time:g} s loops"
                )
                result = codec_rates.measure(args.codec_repeats, args.codec_min_time)
                figures.append(codec_figure(result, args))
    except BenchError as exc:
        progress(f"FAILED: {exc}")
        return 2
    except KeyboardInterrupt:
        progress("interrupted; every process it started is stopped")
        return 130
    except asyncio.CancelledError:
        progress("terminated; every process it started is stopped")
        return 143
    except Exception:
        progress("FAILED with an unexpected error; every process it started is stopped")
        raise
    finally:
        kill_leftovers()
    if not figures:
        return 0
    for fig in figures:
        fig.update(context=ctx, elapsed_s=round(time.monotonic() - started, 1), quick=args.quick)
    text = markdown(figures, ctx, args)
    if diagnosis:
        text += diagnosis_markdown(figures[0]["diagnosis"], args.conns)
    if args.no_write:
        print(text)
    else:
        jsonl = append_jsonl("engine", figures)
        md = write_text("engine.md", text)
        print(text)
        progress(
            f"appended {len(figures)} figure(s) to {jsonl.relative_to(ROOT)}; "
            f"wrote {md.relative_to(ROOT)}"
        )
    progress(f"done in {time.monotonic() - started:.0f} s")
    return 0


def diagnosis_markdown(diag: dict[str, Any], n: int) -> str:
    out = [
        "",
        "## Where msstorm's memory goes (one run under tracemalloc)",
        "",
        f"RSS under tracemalloc: {diag['per_conn_KiB']['rss']:.2f} KiB/connection "
        "(tracemalloc's own bookkeeping included). Python-allocator memory that grew "
        f"between 0 and N clients: {diag['traced_growth_bytes'] / n / 1024:.2f} KiB/connection, "
        f"of which {diag['msstorm_frames_bytes'] / n / 1024:.2f} KiB allocated with an msstorm "
        "frame on the stack (the rest: uvloop and picows, mostly called from C).",
        "",
        "Growth by allocation site (bytes per connection):",
        "",
        markdown_table(
            ["site", "bytes/conn", "blocks/conn"],
            [
                [f"`{s['site']}`", f"{s['bytes'] / n:.0f}", f"{s['count'] / n:.2f}"]
                for s in diag["sites"]
            ],
        ),
        "",
        "Objects that grew by type (count per connection, `sys.getsizeof` bytes per connection):",
        "",
        markdown_table(
            ["type", "objects/conn", "bytes/conn"],
            [
                [f"`{t['type']}`", f"{t['count'] / n:.2f}", f"{t['bytes'] / n:.0f}"]
                for t in diag["types"]
            ],
        ),
    ]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    sys.exit(main())
