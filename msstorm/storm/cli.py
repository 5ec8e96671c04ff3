"""``msstorm-server``: the MessageStorm server on one port.

Clients join namespace ``/`` and answer pokes; a monitor joins ``/monitor``
with the token and drives operations (``msstorm-monitor`` does it for you).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import resource
import signal
import sys

import uvloop

from msstorm.server import Server, serve

from .app import Storm

log = logging.getLogger("msstorm.server")

EPILOG = """\
examples:
  msstorm-server                          listen on 127.0.0.1:3000, print a monitor token
  MSSTORM_MONITOR_TOKEN=s3cret msstorm-server --host 0.0.0.0 --port 8080
  curl http://127.0.0.1:3000/healthz      connection counts and refused input, as JSON

Clients connect to http://HOST:PORT with the WebSocket transport
(socket.io-client: {transports: ["websocket"]}) and answer every "poke" with a
"pokeBack"; the monitor connects to namespace /monitor with auth {"token": ...}.
"""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="msstorm-server",
        description="The MessageStorm server: Socket.IO v5 clients, pokes and round-trip times.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s)")
    p.add_argument("--port", type=int, default=3000, help="port to listen on (default %(default)s)")
    group = p.add_argument_group("Socket.IO options (as Socket.IO's, milliseconds and bytes)")
    group.add_argument(
        "--ping-interval",
        type=int,
        default=25000,
        metavar="MS",
        help="time between two heartbeats (default %(default)s)",
    )
    group.add_argument(
        "--ping-timeout",
        type=int,
        default=20000,
        metavar="MS",
        help="time a client has to answer a heartbeat (default %(default)s)",
    )
    group.add_argument(
        "--max-payload",
        type=int,
        default=1_000_000,
        metavar="BYTES",
        help="largest message accepted (default %(default)s)",
    )
    group.add_argument(
        "--connect-timeout",
        type=int,
        default=45000,
        metavar="MS",
        help="time a client has to join a namespace (default %(default)s)",
    )
    storm = p.add_argument_group("MessageStorm")
    storm.add_argument(
        "--monitor-token",
        default=os.environ.get("MSSTORM_MONITOR_TOKEN"),
        help="token monitors must present (default: $MSSTORM_MONITOR_TOKEN, "
        "else a random one, printed at start)",
    )
    storm.add_argument(
        "--op-timeout",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="an operation ends after this long, its missing answers lost (default %(default)s)",
    )
    storm.add_argument(
        "--max-tree-leaves",
        type=int,
        default=1 << 20,
        metavar="L",
        help="largest treeLeaves a monitor may ask for (default %(default)s)",
    )
    storm.add_argument(
        "--max-operations",
        type=int,
        default=64,
        metavar="N",
        help="operations that may run at once (default %(default)s)",
    )
    p.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="(default %(default)s)",
    )
    return p


async def run(args: argparse.Namespace) -> None:
    server = Server(
        ping_interval=args.ping_interval,
        ping_timeout=args.ping_timeout,
        max_payload=args.max_payload,
        connect_timeout=args.connect_timeout,
    )
    storm = Storm(
        server,
        token=args.monitor_token,
        op_timeout=args.op_timeout,
        max_tree_leaves=args.max_tree_leaves,
        max_operations=args.max_operations,
    )
    await storm.start()
    listener = await serve(server, host=args.host, port=args.port)
    if args.monitor_token is None:
        log.info("monitor token: %s", storm.token)
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    log.info(
        "listening on http://%s:%d (up to %d connections: the open-file limit)",
        args.host,
        listener.port,
        soft - 32,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down: closing %d connections", server.stats.connections)
    listener.close()
    await listener.wait_closed()
    await storm.close()


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    try:
        with contextlib.suppress(KeyboardInterrupt):
            uvloop.run(run(args))
    except (OSError, ValueError) as exc:
        print(f"msstorm-server: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
