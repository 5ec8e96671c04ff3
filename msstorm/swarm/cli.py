"""``msstorm-client``: a swarm of MessageStorm clients, spread over processes.

It lays the swarm out (``plan``), starts one worker process per share, shows the
ramp live, and when it is stopped (Ctrl-C, SIGTERM or ``--duration``) stops the
workers and prints what happened. Its exit status is 0 when the whole swarm was
connected at some point, 1 when it never was (with the reason), 2 when the
request cannot fit on this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson
import uvloop

from msstorm import cli_types

from .plan import Plan, PlanError, make_plan, parse_source_ips
from .worker import CONCURRENT_DIALS, SWARM_DIALS

EPILOG = """\
examples:
  msstorm-client --conns 10000                       10,000 clients of 127.0.0.1:3000
  msstorm-client --url http://10.0.0.7:3000 --conns 50000 --procs 4 --ramp 5000
  msstorm-client --conns 100000 --no-log --duration 600

Each process logs every Socket.IO message it receives to PREFIX.N.log, one line
per message: "<UNIX ms> <client slot> <message>". The summary's "log" line says
what logging cost.
"""


@dataclass
class Totals:
    """The sum of the workers' last reports."""

    target: int
    reports: dict[int, dict[str, Any]] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    reached_at: float | None = None
    peak: int = 0

    def update(self, process: int, report: dict[str, Any]) -> None:
        self.reports[process] = report
        joined = self.sum("joined")
        self.peak = max(self.peak, joined)
        if self.reached_at is None and joined >= self.target:
            self.reached_at = time.monotonic()

    def sum(self, key: str) -> Any:
        return sum(r.get(key, 0) for r in self.reports.values())

    def errors(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for report in self.reports.values():
            total.update(report.get("errors", {}))
        return total


def _socketio_path(text: str) -> str:
    if not text.startswith("/") or any(c in text for c in "?# ") or not text.isprintable():
        raise argparse.ArgumentTypeError(f"expected a path such as /socket.io/, not {text!r}")
    return text


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="msstorm-client",
        description="A swarm of Socket.IO clients that answer every poke (MessageStorm).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--url",
        type=cli_types.server_url,
        default="http://127.0.0.1:3000",
        help="the server: http(s)://HOST:PORT (default %(default)s)",
    )
    p.add_argument(
        "--conns",
        type=cli_types.count,
        default=1000,
        help="connections in all (default %(default)s)",
    )
    p.add_argument(
        "--procs",
        type=cli_types.count,
        default=None,
        help="processes (default: enough for the open-file limit and the cores)",
    )
    p.add_argument(
        "--ramp",
        type=cli_types.non_negative,
        default=0.0,
        metavar="PER_SECOND",
        help="connections started a second, all processes together (default: "
        "as fast as the server takes them)",
    )
    p.add_argument(
        "--source-ips",
        type=cli_types.explained(parse_source_ips),
        default=None,
        metavar="ADDRESSES",
        help="source addresses to spread connections over, e.g. "
        "127.0.0.2-127.0.0.20 (default: chosen for 127.x servers)",
    )
    p.add_argument(
        "--path",
        type=_socketio_path,
        default="/socket.io/",
        help="Socket.IO path (default %(default)s)",
    )
    logging = p.add_mutually_exclusive_group()
    logging.add_argument(
        "--log",
        default="msstorm-client",
        metavar="PREFIX",
        help="message log files PREFIX.N.log (default %(default)s)",
    )
    logging.add_argument("--no-log", action="store_true", help="do not log messages")
    p.add_argument(
        "--duration",
        type=cli_types.positive,
        default=None,
        metavar="SECONDS",
        help="stop after this long (default: run until Ctrl-C or SIGTERM)",
    )
    p.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    return p


async def run(args: argparse.Namespace, plan: Plan) -> Totals:
    totals = Totals(plan.conns)
    workers = []
    for process, count in enumerate(plan.per_process):
        command = [
            sys.executable,
            "-m",
            "msstorm.swarm.worker",
            "--url",
            args.url,
            "--path",
            args.path,
            "--first-slot",
            str(plan.first_slot(process)),
            "--count",
            str(count),
            "--ramp",
            str(args.ramp / plan.procs if args.ramp else 0),
            "--dials",
            str(max(16, min(CONCURRENT_DIALS, SWARM_DIALS // plan.procs))),
            "--source-ips",
            ",".join(plan.source_ips),
        ]
        if not args.no_log:
            command += ["--log", f"{args.log}.{process}.log"]
        workers.append(
            await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.PIPE)
        )

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if args.duration is not None:
        loop.call_later(args.duration, stop.set)

    progress = Progress(totals, quiet=args.json)
    readers = [asyncio.ensure_future(_read(w, i, totals, progress)) for i, w in enumerate(workers)]
    finished = asyncio.ensure_future(asyncio.wait(readers))
    await asyncio.wait(
        [finished, asyncio.ensure_future(stop.wait())], return_when=asyncio.FIRST_COMPLETED
    )
    for worker in workers:
        if worker.returncode is None:
            worker.terminate()
    await finished
    for worker in workers:
        await worker.wait()
    progress.done()
    return totals


async def _read(worker: Any, process: int, totals: Totals, progress: Progress) -> None:
    assert worker.stdout is not None
    async for line in worker.stdout:
        with contextlib.suppress(orjson.JSONDecodeError):
            totals.update(process, orjson.loads(line))
            progress.show()


class Progress:
    """The live line on stderr: a bar on a terminal, a line every few seconds elsewhere."""

    def __init__(self, totals: Totals, quiet: bool) -> None:
        self.totals = totals
        self.tty = sys.stderr.isatty() and not quiet
        self.quiet = quiet
        self.last = 0.0

    def show(self) -> None:
        now = time.monotonic()
        every = 0.2 if self.tty else 5.0
        if self.quiet or now - self.last < every:
            return
        self.last = now
        t = self.totals
        joined = t.sum("joined")
        elapsed = now - t.started
        rate = joined / elapsed if elapsed > 0 else 0.0
        width = 30
        filled = int(width * min(1.0, joined / t.target))
        errors = sum(t.errors().values())
        line = (
            f"[{'#' * filled}{'.' * (width - filled)}] {joined:,}/{t.target:,} connected "
            f"({rate:,.0f}/s, {elapsed:.1f}s)  pokes answered {t.sum('answered'):,}  "
            f"errors {errors:,}"
        )
        if self.tty:
            sys.stderr.write("\r" + line + "\033[K")
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def done(self) -> None:
        if self.tty:
            self.last = 0.0
            self.show()
            sys.stderr.write("\n")


def summarize(totals: Totals, plan: Plan) -> dict[str, Any]:
    answered = totals.sum("answered")
    cpu = totals.sum("cpu_seconds")
    # CPU after the swarm was up, per answer: what answering (and heartbeats) cost.
    reports = totals.reports.values()
    answering_cpu = sum(
        r["cpu_seconds"] - r["cpu_when_joined"] for r in reports if r.get("cpu_when_joined")
    )
    grown = sum(r.get("rss_bytes", 0) - r.get("rss_before", 0) for r in reports)
    messages = totals.sum("messages")
    peak = totals.peak
    reached = totals.reached_at - totals.started if totals.reached_at else None
    return {
        "target": plan.conns,
        "processes": plan.procs,
        "source_ips": len(plan.source_ips),
        "peak_connected": peak,
        "seconds_to_connect_all": round(reached, 3) if reached is not None else None,
        "pokes_answered": answered,
        "messages_logged": messages,
        "log_bytes": totals.sum("log_bytes"),
        "log_us_per_message": round(totals.sum("log_seconds") / messages * 1e6, 3)
        if messages
        else None,
        "reconnects": totals.sum("reconnects"),
        "trims_refused": totals.sum("trims_refused"),
        "trim_refusal": next((r["trim_refusal"] for r in reports if r.get("trim_refusal")), None),
        "errors": dict(totals.errors()),
        "cpu_seconds": round(cpu, 3),
        "cpu_us_per_answer": round(answering_cpu / answered * 1e6, 3) if answered else None,
        "rss_kb_per_connection": round(grown / peak / 1024, 3) if peak else None,
    }


def reason_for_shortfall(summary: dict[str, Any]) -> str:
    errors = summary["errors"]
    if not errors:
        # Nothing failed: the dials still under way when it stopped (a slow server, or
        # a swarm stopped while ramping) never finished, either way.
        return (
            "it was stopped while connections were still being made, none having failed "
            "(a server slow to answer handshakes looks like this too)"
        )
    kind, count = max(errors.items(), key=lambda item: item[1])
    return f"most failures were {kind!r} ({count:,} times)"


def print_summary(summary: dict[str, Any]) -> None:
    def line(label: str, value: Any) -> None:
        print(f"  {label:<24} {value}", file=sys.stderr)

    print("msstorm-client summary:", file=sys.stderr)
    line("connected (peak)", f"{summary['peak_connected']:,} / {summary['target']:,}")
    took = summary["seconds_to_connect_all"]
    line("time to connect all", f"{took:.2f} s" if took is not None else "never")
    line("processes", f"{summary['processes']} ({summary['source_ips']} source addresses)")
    line("pokes answered", f"{summary['pokes_answered']:,}")
    per_answer = summary["cpu_us_per_answer"]
    line(
        "swarm CPU",
        f"{summary['cpu_seconds']:.2f} s in all"
        + (f", {per_answer:.1f} us per answered poke once connected" if per_answer else ""),
    )
    if summary["rss_kb_per_connection"]:
        line(
            "swarm memory",
            f"{summary['rss_kb_per_connection']:.2f} KB per connection "
            "(RSS growth over the idle processes)",
        )
    if summary["messages_logged"]:
        line(
            "log",
            f"{summary['messages_logged']:,} messages, {summary['log_bytes']:,} bytes, "
            f"{summary['log_us_per_message']:.2f} us each",
        )
    line("reconnects", f"{summary['reconnects']:,}")
    if summary["trim_refusal"]:
        line(
            "untrimmed",
            f"connections keep picows's buffers ({summary['trims_refused']:,} trims refused): "
            f"{summary['trim_refusal']}",
        )
    errors = summary["errors"]
    line("errors", ", ".join(f"{k}: {v:,}" for k, v in sorted(errors.items())) or "none")


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        plan = make_plan(args.url, args.conns, args.procs, args.source_ips)
    except (PlanError, ValueError) as exc:
        print(f"msstorm-client: {exc}", file=sys.stderr)
        return 2
    if not args.json:
        print(
            f"msstorm-client: {plan.conns:,} connections to {args.url} from {plan.procs} "
            f"processes ({'logging to ' + args.log + '.N.log' if not args.no_log else 'no log'})",
            file=sys.stderr,
        )
    totals = uvloop.run(run(args, plan))
    summary = summarize(totals, plan)
    if args.json:
        print(orjson.dumps(summary).decode())
    else:
        print_summary(summary)
    if summary["peak_connected"] < plan.conns:
        print(
            f"msstorm-client: only {summary['peak_connected']:,} of {plan.conns:,} connected: "
            f"{reason_for_shortfall(summary)}",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
