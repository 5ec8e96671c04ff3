"""``msstorm-monitor``: drive a MessageStorm experiment and report it.

Connects to the server's ``/monitor`` namespace with the token, starts
operations (unicast, broadcast, tree, or a scenario of them), shows their
progress and reports the answers' round-trip times: tables, JSON, a PNG.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import sys
from collections.abc import Sequence
from typing import Any, TextIO

import orjson
import uvloop

from msstorm import extras
from msstorm.cli_types import count, non_negative, positive, power_of_two, server_url

from . import html_report, plot, report
from .client import MonitorClient, MonitorError
from .progress import Progress
from .results import OpResult, totals
from .scenario import ScenarioError, Step, load, make_step, total_operations

PROG = "msstorm-monitor"
TOKEN_ENV = "MSSTORM_MONITOR_TOKEN"
DEFAULT_URL = "http://127.0.0.1:3000"
# The server ends an operation after its --op-timeout (60 s by default) and then
# pushes its status: wait a little longer than that.
DEFAULT_TIMEOUT = 65.0
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_REFRESH = 0.25
EXIT_OK, EXIT_FAILED, EXIT_ERROR = 0, 1, 2

EPILOG = f"""\
examples:
  export {TOKEN_ENV}=s3cret         the token msstorm-server was given (or printed)
  msstorm-monitor broadcast                   poke every client once, report the RTTs
  msstorm-monitor unicast --dest SID          poke one client (a random one without --dest)
  msstorm-monitor tree --leaves 1024 --plot tree.png
  msstorm-monitor broadcast --repeat 5 --json a JSON object per operation, one a line
  msstorm-monitor run "unicast*10, broadcast*3, tree:1024*2" --plot run.png
  msstorm-monitor run scenario.json --json > run.json
  msstorm-monitor status                      clients, running operations, server counts
  msstorm-monitor status --op 3fa1-2 --summary
  MSSTORM_MONITOR_TOKEN=s3cret msstorm-monitor --url http://10.0.0.5:3000 broadcast

scenario (run): inline, TYPE[:ARG][*REPEAT] separated by commas, where ARG is a
tree's number of leaves or the sid a unicast goes to; or a JSON file, a list of
  {{"type": "unicast"|"broadcast"|"tree", "treeLeaves": L, "destId": SID, "repeat": N}}
(only "type" is needed, and "treeLeaves" for a tree). Operations run one after another.

output: the report on stdout, a table per operation (rtt and pingDelay rows, in
ms) and totals when there are several; progress on stderr, a bar on a terminal,
else a line per finished operation. With --json, stdout has JSON only: an object
per operation (a line each), or one document for run; errors as {{"error": ...}}.

exit status: 0 every operation completed with nothing lost; 1 an operation timed
out or lost answers (the report is printed all the same); 2 a usage error, the
server unreachable, the token or an operation refused, the connection lost.
"""

OPERATION_EPILOGS = {
    "unicast": """\
examples:
  msstorm-monitor unicast                    a random client
  msstorm-monitor unicast --dest SID         that client (its Socket.IO socket id)
  msstorm-monitor unicast --repeat 100 --plot unicast.png
""",
    "broadcast": """\
examples:
  msstorm-monitor broadcast
  msstorm-monitor broadcast --repeat 3 --pause 2 --plot broadcast.png
  msstorm-monitor broadcast --json --details with every client's [pingDelay, rtt]
""",
    "tree": """\
examples:
  msstorm-monitor tree --leaves 1024         2047 pokes: 1024 leaves below a random root
  msstorm-monitor tree --leaves 65536 --plot tree.png
""",
    "run": """\
examples:
  msstorm-monitor run "unicast*10, broadcast*3, tree:1024*2"
  msstorm-monitor run "unicast:SID*5, tree:64"
  msstorm-monitor run scenario.json --plot run.png --json > run.json
  echo '[{"type": "broadcast", "repeat": 2}]' | msstorm-monitor run -

scenario.json: [{"type": "unicast", "repeat": 10},
                {"type": "tree", "treeLeaves": 1024, "repeat": 2}]
""",
    "status": """\
examples:
  msstorm-monitor status                     clients, running operations, server counts
  msstorm-monitor status --op 3fa1-2         one operation (the server keeps the last ones)
  msstorm-monitor status --op 3fa1-2 --plot op.png
  msstorm-monitor status --summary --json    without the per-answer arrays
""",
}


# -- arguments ------------------------------------------------------------------


def _add_common(parser: argparse.ArgumentParser, top: bool) -> None:
    """The options every subcommand takes, before or after its name. Below the
    subcommand their defaults are left out, so as not to undo one given above."""

    def default(value: Any) -> Any:
        return value if top else argparse.SUPPRESS

    token_state = "set" if os.environ.get(TOKEN_ENV) else "not set"
    group = parser.add_argument_group("connection and output (before or after the subcommand)")
    group.add_argument(
        "--url",
        type=server_url,
        default=default(DEFAULT_URL),
        help=f"the msstorm server (default {DEFAULT_URL})",
    )
    group.add_argument(
        "--token",
        default=default(None),
        metavar="TOKEN",
        help=f"the monitor token (default: ${TOKEN_ENV}, now {token_state}); the variable "
        "is safer: every local user can read a command line",
    )
    group.add_argument(
        "--json",
        action="store_true",
        default=default(False),
        help="machine-readable output: JSON only on stdout",
    )
    group.add_argument(
        "--timeout",
        type=positive,
        default=default(DEFAULT_TIMEOUT),
        metavar="SECONDS",
        help="longest wait for one operation to end; a little more than the server's "
        f"--op-timeout (default {DEFAULT_TIMEOUT:g})",
    )
    group.add_argument(
        "--connect-timeout",
        type=positive,
        default=default(DEFAULT_CONNECT_TIMEOUT),
        metavar="SECONDS",
        help="longest wait for the connection and for each answer to a request "
        f"(default {DEFAULT_CONNECT_TIMEOUT:g})",
    )
    group.add_argument(
        "--progress",
        choices=("auto", "always", "never"),
        default=default("auto"),
        help="progress bar on stderr: auto shows it when stderr is a terminal and "
        "without --json (default auto)",
    )
    group.add_argument(
        "--refresh",
        type=positive,
        default=default(DEFAULT_REFRESH),
        metavar="SECONDS",
        help=f"time between two progress polls (default {DEFAULT_REFRESH:g})",
    )


def _add_reporting(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--plot",
        metavar="FILE.png",
        help="draw the RTT distribution (histogram, CDF) and, for trees, RTT by depth "
        "(needs matplotlib: pip install 'msstorm[plot]')",
    )
    parser.add_argument(
        "--report",
        metavar="FILE.html",
        help="write the run as one self-contained HTML file: settings, operations, "
        "distributions, trees by depth, the server's figures (opens offline)",
    )
    parser.add_argument(
        "--details",
        action="store_true",
        help="with --json: add each operation's per-answer array, as the server sent it",
    )


def _add_repeat(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--repeat",
        type=count,
        default=1,
        metavar="N",
        help="run it N times, one after another (default %(default)s)",
    )
    parser.add_argument(
        "--pause",
        type=non_negative,
        default=0.0,
        metavar="SECONDS",
        help="wait between two operations (default %(default)g)",
    )


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Drive a MessageStorm experiment on msstorm-server and report the "
        "round-trip times of its pokes.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_common(p, top=True)
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, help_: str) -> argparse.ArgumentParser:
        c = sub.add_parser(
            name,
            help=help_,
            description=help_,
            epilog=OPERATION_EPILOGS[name],
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        _add_common(c, top=False)
        return c

    unicast = command("unicast", "poke one client and wait for its answer")
    unicast.add_argument(
        "--dest", metavar="SID", help="the client's Socket.IO sid (default: a random client)"
    )
    _add_repeat(unicast)
    _add_reporting(unicast)

    broadcast = command("broadcast", "poke every connected client once")
    _add_repeat(broadcast)
    _add_reporting(broadcast)

    tree = command("tree", "a tree of pokes: L leaves, 2L-1 pokes, each answer pokes two more")
    tree.add_argument(
        "--leaves",
        type=power_of_two,
        required=True,
        metavar="L",
        help="the tree's number of leaves, a power of two",
    )
    _add_repeat(tree)
    _add_reporting(tree)

    run = command("run", "run a scenario: operations one after another, with repeats")
    run.add_argument(
        "scenario",
        metavar="SCENARIO",
        help='inline ("unicast*10, broadcast*3, tree:1024*2"), a JSON file, or - for stdin',
    )
    run.add_argument(
        "--pause",
        type=non_negative,
        default=0.0,
        metavar="SECONDS",
        help="wait between two operations (default %(default)g)",
    )
    _add_reporting(run)

    status = command("status", "ask the server for an operation's status or its overview")
    status.add_argument("--op", metavar="ID", help="one operation (default: the overview)")
    status.add_argument(
        "--summary",
        action="store_true",
        help="leave out the per-answer arrays (detail: summary)",
    )
    status.add_argument("--plot", metavar="FILE.png", help="draw the operation's RTTs (needs --op)")
    return p


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    """The arguments, checked; ``SystemExit`` (2) with a usage message otherwise."""
    p = parser()
    args = p.parse_args(argv)
    if args.command == "status" and args.plot and (args.op is None or args.summary):
        p.error("status --plot needs --op ID, without --summary")
    if getattr(args, "plot", None):
        extras.require(p, "plot", "--plot")
    return args


def steps_of(args: argparse.Namespace) -> list[Step]:
    if args.command == "run":
        return load(args.scenario)
    if args.command == "unicast":
        return [make_step("unicast", dest_id=args.dest, repeat=args.repeat)]
    if args.command == "tree":
        return [make_step("tree", tree_leaves=args.leaves, repeat=args.repeat)]
    return [make_step(args.command, repeat=args.repeat)]


# -- output ---------------------------------------------------------------------


class Output:
    def __init__(self, args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> None:
        self.stdout = stdout
        self.stderr = stderr
        self.json_mode = bool(getattr(args, "json", False))
        progress = getattr(args, "progress", "auto")
        self.bar = progress == "always" or (
            progress == "auto" and not self.json_mode and stderr.isatty()
        )

    def json(self, document: Any) -> None:
        self.stdout.write(orjson.dumps(document).decode() + "\n")
        self.stdout.flush()

    def text(self, text: str) -> None:
        self.stdout.write(text + "\n")
        self.stdout.flush()

    def note(self, text: str) -> None:
        self.stderr.write(text + "\n")
        self.stderr.flush()

    def fail(self, error: MonitorError, json_too: bool = True) -> int:
        self.note(f"{PROG}: {error.message}")
        if self.json_mode and json_too:
            self.json(error.to_json())
        return EXIT_ERROR


# -- commands -------------------------------------------------------------------


async def run_operations(
    client: MonitorClient, args: argparse.Namespace, steps: list[Step], out: Output
) -> int:
    is_run = args.command == "run"
    keep = bool(args.json and args.details)
    count = total_operations(steps)
    progress = Progress(out.stderr, bar=out.bar)
    results: list[OpResult] = []
    error: MonitorError | None = None
    try:
        for step in steps:
            for _ in range(step.repeat):
                n = len(results) + 1
                prefix = f"[{n}/{count}] {step.label}" if count > 1 else step.label
                waited = await client.run_operation(
                    step.request(),
                    timeout=args.timeout,
                    refresh=args.refresh,
                    on_start=functools.partial(progress.start, prefix),
                    on_progress=progress.update if out.bar else None,
                )
                result = OpResult.from_status(
                    step.label, waited.status, gave_up=waited.gave_up, keep=keep
                )
                results.append(result)
                progress.finish(prefix, result)
                if args.json and not is_run:
                    out.json(report.op_json(result, keep))
                if args.pause and n < count:
                    await asyncio.sleep(args.pause)
    except MonitorError as exc:
        progress.clear()
        error = exc
    except asyncio.CancelledError:  # Ctrl-C: what is done is reported
        progress.clear()
        if results and not args.json:
            out.text(_table(results, is_run))
        raise

    if args.json:
        if is_run:
            out.json(
                report.run_json(
                    [step.to_json() for step in steps],
                    results,
                    totals(results),
                    keep,
                    error.to_json() if error else None,
                )
            )
    elif results:
        out.text(_table(results, is_run))
        lost = report.losses(results)
        if lost:
            out.text(lost)
        depths = report.depth_tables(results)
        if depths:
            out.text("\n" + depths)
    code = EXIT_OK if all(r.ok for r in results) else EXIT_FAILED
    if args.plot and results:
        code = max(code, _plot(args.plot, results, f"{PROG} {args.command}", out))
    if args.report and results:
        code = max(code, await _report(client, args, steps, results, out))
    if error is not None:
        return out.fail(error, json_too=not is_run)
    return code


def _table(results: list[OpResult], is_run: bool) -> str:
    total = totals(results) if is_run or len(results) > 1 else None
    return report.operations_table(results, total)


def _plot(path: str, results: list[OpResult], title: str, out: Output) -> int:
    try:
        plot.write(path, results, title)
    except plot.PlotError as exc:
        out.note(f"{PROG}: {exc}")
        return EXIT_ERROR
    out.note(f"plot written to {path}")
    return EXIT_OK


async def _report(
    client: MonitorClient,
    args: argparse.Namespace,
    steps: list[Step],
    results: list[OpResult],
    out: Output,
) -> int:
    try:
        overview: dict[str, Any] | None = await client.status_request(None, detail=False)
    except MonitorError:
        overview = None  # the connection is gone: the report says so
    settings = {
        "server": args.url,
        "command": f"{PROG} {args.command}",
        "scenario": ", ".join(f"{s.label}*{s.repeat}" if s.repeat > 1 else s.label for s in steps),
        "timeout (s)": args.timeout,
        "pause (s)": args.pause,
    }
    total = totals(results) if len(results) > 1 else None
    document = html_report.render(
        title=f"MessageStorm run: {settings['scenario']}",
        settings=settings,
        results=results,
        total=total,
        overview=overview,
    )
    try:
        html_report.write(args.report, document)
    except html_report.ReportError as exc:
        out.note(f"{PROG}: {exc}")
        return EXIT_ERROR
    out.note(f"report written to {args.report}")
    return EXIT_OK


async def show_status(client: MonitorClient, args: argparse.Namespace, out: Output) -> int:
    detail = not args.summary
    if args.op is None:  # the per-answer arrays of running operations: JSON only
        overview = await client.status_request(None, detail=detail and args.json)
        if args.json:
            out.json(overview)
        else:
            out.text(report.overview_text(args.url, overview))
        return EXIT_OK
    status = await client.status_request(args.op, detail=detail)
    result = OpResult.from_status(None, status)
    if args.json:
        out.json(status)
    else:
        out.text(report.operations_table([result]))
        if result.client_id is not None:
            out.text(f"answered by client {result.client_id}")
        depths = report.depth_tables([result])
        if depths:
            out.text("\n" + depths)
    code = EXIT_FAILED if result.done and not result.ok else EXIT_OK
    if args.plot:
        code = max(code, _plot(args.plot, [result], f"{PROG} status {args.op}", out))
    return code


# -- entry points ---------------------------------------------------------------


async def amain(argv: Sequence[str] | None = None) -> int:
    """The whole command in the running event loop; returns the exit status."""
    stdout, stderr = sys.stdout, sys.stderr
    try:
        args = parse(argv)
    except SystemExit as exc:  # --help, or a usage error already printed
        return exc.code if isinstance(exc.code, int) else EXIT_ERROR
    out = Output(args, stdout, stderr)
    token = args.token if args.token is not None else os.environ.get(TOKEN_ENV)
    if not token:
        return out.fail(
            MonitorError(
                "no-token",
                f"no monitor token: pass --token TOKEN or set {TOKEN_ENV} "
                "(msstorm-server prints the token it made when it was given none)",
            )
        )
    try:
        steps = steps_of(args) if args.command != "status" else []
        if args.plot:
            plot.require(args.plot)
        if getattr(args, "report", None):
            html_report.require(args.report)
    except ScenarioError as exc:
        return out.fail(MonitorError("bad-scenario", f"bad scenario: {exc}"))
    except plot.PlotError as exc:
        return out.fail(MonitorError("plot", str(exc)))
    except html_report.ReportError as exc:
        return out.fail(MonitorError("report", str(exc)))

    client = MonitorClient(args.url, token, request_timeout=args.connect_timeout)
    try:
        await client.connect()
        if args.command == "status":
            return await show_status(client, args, out)
        return await run_operations(client, args, steps, out)
    except MonitorError as exc:
        return out.fail(exc)
    finally:
        await client.close()


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return uvloop.run(amain(argv))
    except KeyboardInterrupt:
        sys.stderr.write(f"{PROG}: interrupted\n")
        return 130


if __name__ == "__main__":
    sys.exit(main())
