"""``msstorm-storm``: a whole storm on this machine, from one command.

It starts ``msstorm-server``, a swarm of ``msstorm-client`` processes, waits
until every client is connected, runs a scenario with ``msstorm-monitor``,
prints its report, then stops everything it started. The exit status is 0 only
when every operation completed with nothing lost. ``make storm`` runs it with
10,000 clients.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from msstorm import extras
from msstorm.cli_types import count, positive

DEFAULT_SCENARIO = "unicast*10, broadcast*3, tree:1024*2"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def health(port: int) -> dict[str, object] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
            answer: dict[str, object] = json.loads(response.read())
            return answer
    except (OSError, ValueError):
        return None


def tool(name: str) -> list[str]:
    """How to run one of msstorm's commands with this interpreter."""
    modules = {
        "msstorm-server": "msstorm.storm.cli",
        "msstorm-client": "msstorm.swarm.cli",
        "msstorm-monitor": "msstorm.monitor",
    }
    return [sys.executable, "-m", modules[name]]


def say(message: str) -> None:
    print(f"msstorm-storm: {message}", file=sys.stderr, flush=True)


def stop(process: subprocess.Popen[bytes], name: str, timeout: float = 30.0) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            say(f"{name} did not stop within {timeout:.0f} s: killing it")
            process.kill()
            process.wait()
    return process.returncode


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="msstorm-storm",
        description="Run a whole MessageStorm on this machine: server, swarm, scenario, report.",
        epilog=f"The default scenario is {DEFAULT_SCENARIO!r} (msstorm-monitor run syntax).",
    )
    p.add_argument("--conns", type=count, default=10_000, help="clients (default %(default)s)")
    p.add_argument("--scenario", default=DEFAULT_SCENARIO, help="operations to run")
    p.add_argument(
        "--logs",
        default="storm-logs",
        metavar="DIR",
        help="where the server log and the clients' message logs go (default %(default)s)",
    )
    p.add_argument(
        "--connect-timeout",
        type=positive,
        default=180.0,
        metavar="SECONDS",
        help="time the swarm has to connect every client (default %(default)s)",
    )
    p.add_argument(
        "--report",
        metavar="FILE.html",
        help="also write the run as one self-contained HTML file, the swarm's figures in it",
    )
    p.add_argument(
        "--plot",
        metavar="FILE.png",
        help="also draw the RTT distributions (needs matplotlib: pip install 'msstorm[plot]')",
    )
    return p


class SwarmOutput:
    """The swarm's stderr, passed on as it comes and kept for the report."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.thread: threading.Thread | None = None

    def follow(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stderr is not None
        stream = process.stderr

        def pump() -> None:
            while chunk := stream.read1(65536):  # type: ignore[attr-defined]
                sys.stderr.buffer.write(chunk)
                sys.stderr.buffer.flush()
                self.chunks.append(chunk)

        self.thread = threading.Thread(target=pump, daemon=True)
        self.thread.start()

    def summary(self) -> str:
        """What the swarm printed from its summary on (all it printed without one)."""
        if self.thread is not None:
            self.thread.join(5)
        text = b"".join(self.chunks).decode(errors="replace")
        start = text.rfind("msstorm-client summary:")
        return text[start:] if start >= 0 else text[-4000:]


def _terminated(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through main's finally: children stopped


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    if args.plot:  # before the storm, not after it
        extras.require(p, "plot", "--plot")
    if args.report and not args.report.lower().endswith((".html", ".htm")):
        p.error(
            f"--report writes an HTML file: give it a name ending in .html, not {args.report!r}"
        )
    signal.signal(signal.SIGTERM, _terminated)
    logs = Path(args.logs)
    logs.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    token = secrets.token_urlsafe(18)
    env = {**os.environ, "MSSTORM_MONITOR_TOKEN": token}
    dashboard = free_port()
    processes: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(name: str, *options: str, log: Path | None = None) -> subprocess.Popen[bytes]:
        output = open(log, "wb") if log else None  # noqa: SIM115 - the child owns it
        process = subprocess.Popen([*tool(name), *options], env=env, stdout=output, stderr=output)
        processes.append((name, process))
        return process

    try:
        say(f"starting msstorm-server on {url} (log: {logs / 'server.log'})")
        # The embedded bus whatever $MSSTORM_BUS says: this storm is this machine's alone.
        server = start(
            "msstorm-server",
            "--port",
            str(port),
            "--bus",
            "embedded",
            "--dashboard-port",
            str(dashboard),
            "--log-level",
            "warning",
            log=logs / "server.log",
        )
        deadline = time.monotonic() + 30
        while health(port) is None:
            if server.poll() is not None or time.monotonic() > deadline:
                say(f"the server did not start; see {logs / 'server.log'}")
                return 1
            time.sleep(0.1)

        say(f"the dashboard: http://127.0.0.1:{dashboard}/dashboard/#token={token}")
        say(f"starting {args.conns:,} clients (message logs: {logs}/client.N.log)")
        swarm_said = SwarmOutput() if args.report else None
        swarm = subprocess.Popen(
            [
                *tool("msstorm-client"),
                "--url",
                url,
                "--conns",
                str(args.conns),
                "--log",
                str(logs / "client"),
            ],
            env=env,
            stderr=subprocess.PIPE if swarm_said else None,
        )
        if swarm_said:
            swarm_said.follow(swarm)
        processes.append(("msstorm-client", swarm))
        deadline = time.monotonic() + args.connect_timeout
        while True:
            status = health(port) or {}
            cluster = status.get("cluster")  # every worker's clients, not only this one's
            connected = cluster.get("clients", 0) if isinstance(cluster, dict) else 0
            if isinstance(connected, int) and connected >= args.conns:
                break
            if swarm.poll() is not None or time.monotonic() > deadline:
                print(file=sys.stderr)
                say(f"only {connected} of {args.conns:,} clients connected: giving up")
                return 1
            time.sleep(0.2)
        time.sleep(0.5)  # let the swarm's progress line finish
        print(file=sys.stderr)

        say(f"running the scenario: {args.scenario}")
        monitor = [*tool("msstorm-monitor"), "--url", url, "run", args.scenario]
        if args.plot:
            monitor += ["--plot", args.plot]
        if args.report:
            monitor += ["--report", args.report]
        outcome = subprocess.run(monitor, env=env).returncode
        stop(swarm, "msstorm-client")
        if swarm_said and os.path.exists(args.report):
            summary = swarm_said.summary()
            subprocess.run(
                [sys.executable, "-m", "msstorm.monitor.swarm_section", args.report],
                input=summary.encode(),
                env=env,
            )
        if outcome in (0, 1):
            say("the storm " + ("completed with nothing lost" if outcome == 0 else "lost answers"))
        else:  # a bad scenario, say: msstorm-monitor said why above
            say(f"msstorm-monitor failed (exit status {outcome})")
        return outcome
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    finally:
        for name, process in reversed(processes):
            stop(process, name)


if __name__ == "__main__":
    sys.exit(main())
