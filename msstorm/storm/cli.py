"""``msstorm-server``: serve Socket.IO clients on one port.

For now it serves a bare Socket.IO endpoint (namespace ``/``) and
``/healthz``; the MessageStorm operations and the monitor namespace build on it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import resource
import signal
import sys

import uvloop

from . import Server, serve

log = logging.getLogger("msstorm.server")

EPILOG = """\
examples:
  msstorm-server                          listen on 127.0.0.1:3000
  msstorm-server --host 0.0.0.0 --port 8080 --ping-interval 60000
  curl http://127.0.0.1:3000/healthz      connection counts and refused input, as JSON

Clients connect to http://HOST:PORT with the WebSocket transport
(socket.io-client: {transports: ["websocket"]}).
"""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="msstorm-server",
        description="A Socket.IO v5 server built to hold a very large number of clients.",
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
    listener = await serve(server, host=args.host, port=args.port)
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
