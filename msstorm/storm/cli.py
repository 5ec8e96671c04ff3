"""``msstorm-server``: the MessageStorm server on one port, one process or many.

Clients join namespace ``/`` and answer pokes; a monitor joins ``/monitor``
with the token and drives operations (``msstorm-monitor`` does it for you).
With ``--workers N`` (by default: enough for ``--max-clients``, and one per
core) a supervisor runs N workers on the same port, joined by a bus: the
embedded one, or Redis for several machines (``--bus redis://host:port/db``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import resource
import secrets
import signal
import sys
from typing import Any

import uvloop

from msstorm import extras
from msstorm.cluster.bus import Bus, LocalBus
from msstorm.cluster.supervisor import (
    CapacityError,
    Supervisor,
    die_with_parent,
    per_worker,
    plan_workers,
)
from msstorm.server import Server, ids, serve

from . import watching
from .app import Storm

log = logging.getLogger("msstorm.server")

REDIS_SCHEMES = ("redis://", "rediss://", "unix://")

EPILOG = """\
examples:
  msstorm-server                          127.0.0.1:3000, one worker per core, a token printed
  msstorm-server --max-clients 500000     as many workers as the open-file limit requires
  MSSTORM_MONITOR_TOKEN=s3cret msstorm-server --host 0.0.0.0 --port 8080 --workers 8
  msstorm-server --bus redis://10.0.0.5:6379/0 --host 0.0.0.0   one node of a multi-machine storm
  curl http://127.0.0.1:3000/healthz      connections, refused input, the cluster, as JSON
  curl http://127.0.0.1:3000/metrics      the same and more, for Prometheus

Clients connect to http://HOST:PORT, over WebSocket or HTTP long-polling (a
default socket.io-client or python-socketio client polls first, then upgrades),
and answer every "poke" with a "pokeBack"; the monitor connects to namespace
/monitor with auth {"token": ...}. GET /metrics serves Prometheus counters.
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
    p.add_argument(
        "--cors-origin",
        default=None,
        metavar="ORIGINS",
        help="origins whose browser pages may use HTTP long-polling: '*' or a comma-separated "
        "list (default: none, same-origin only)",
    )
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
    guard = p.add_argument_group("limits (the server may face the Internet)")
    guard.add_argument(
        "--max-queued",
        type=int,
        default=1 << 20,
        metavar="BYTES",
        help="bytes that may wait for a client that does not read before it is dropped "
        "(default %(default)s); while any wait, its pokes count as lost",
    )
    guard.add_argument(
        "--max-conns-per-address",
        type=int,
        default=4096,
        metavar="N",
        help="connections one source address may hold open, 0 for no limit "
        "(default %(default)s; loopback addresses are not counted)",
    )
    guard.add_argument(
        "--limit-loopback",
        action="store_true",
        help="count loopback addresses against --max-conns-per-address too",
    )
    guard.add_argument(
        "--handshake-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="time an HTTP request or a WebSocket handshake has to arrive whole "
        "(default %(default)s)",
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
    cluster = p.add_argument_group("workers and machines")
    cluster.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="worker processes on this port (default: enough for "
        "--max-clients, and at least one per core)",
    )
    cluster.add_argument(
        "--max-clients",
        type=int,
        default=None,
        metavar="N",
        help="clients this node must be able to hold; refused at start when the workers cannot",
    )
    cluster.add_argument(
        "--bus",
        default="embedded",
        metavar="URL",
        help="'embedded' (the workers of this machine, the default) or "
        "redis://host:port/db to join other msstorm-server instances "
        "(needs the Redis client: pip install 'msstorm[redis]')",
    )
    cluster.add_argument(
        "--cluster",
        default="msstorm",
        metavar="NAME",
        help="the storm's name on Redis (default %(default)s)",
    )
    cluster.add_argument(
        "--node-id",
        default=None,
        metavar="XX",
        help="2 characters naming this instance in sids (default: random)",
    )
    watching.add_options(p)
    p.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="(default %(default)s)",
    )
    # Set by the supervisor for its workers.
    p.add_argument("--worker-index", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--hub", default=None, help=argparse.SUPPRESS)
    p.add_argument("--run-dir", default=None, help=argparse.SUPPRESS)
    return p


def make_bus(args: argparse.Namespace, tag: str) -> Bus:
    if args.bus.startswith(REDIS_SCHEMES):
        from msstorm.cluster.redis_bus import RedisBus

        return RedisBus(tag, args.bus, args.cluster)
    if args.hub is not None:
        from msstorm.cluster.hub import HubBus

        return HubBus(tag, args.hub)
    return LocalBus(tag)


async def run_worker(args: argparse.Namespace, clustered: bool) -> None:
    """One worker: the Socket.IO server, its Storm, and its link to the others."""
    tag = ids.make_tag(args.node_id, args.worker_index or 0)
    ids.set_tag(tag)
    server = Server(
        ping_interval=args.ping_interval,
        ping_timeout=args.ping_timeout,
        max_payload=args.max_payload,
        connect_timeout=args.connect_timeout,
        max_queued=args.max_queued,
    )
    storm = Storm(
        server,
        token=args.monitor_token,
        op_timeout=args.op_timeout,
        max_tree_leaves=args.max_tree_leaves,
        max_operations=args.max_operations,
        bus=make_bus(args, tag),
    )
    await storm.start()
    watchers = await watching.start(storm, args, clustered)
    listener = await serve(
        server,
        host=args.host,
        port=args.port,
        reuse_port=clustered,
        health=lambda: {"cluster": storm.cluster()},
        metrics=storm.metrics,
        cors_origin=args.cors_origin,
        handoff_dir=args.run_dir,
        handshake_timeout=args.handshake_timeout,
        max_per_address=args.max_conns_per_address,
        limit_loopback=args.limit_loopback,
        backlog=4096,
    )
    storm.listener = listener
    if args.monitor_token is None:
        log.info("monitor token: %s", storm.token)
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    log.info(
        "worker %s (pid %d) listening on http://%s:%d, %s bus, up to %d clients",
        tag,
        os.getpid(),
        args.host,
        listener.port,
        storm.bus.kind,
        per_worker(soft),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    # Graceful: no new connection or operation; the running ones end (or time out)
    # and their monitors get the final status; then every client gets a close frame.
    # A second signal cuts the wait short.
    listener.stop_accepting()
    if storm.running:
        log.info(
            "worker %s shutting down: waiting for %d operations (%.0f s at most)",
            tag,
            len(storm.running),
            args.op_timeout,
        )
    stop.clear()
    waits = [
        asyncio.ensure_future(storm.drain(args.op_timeout + 1)),
        asyncio.ensure_future(stop.wait()),
    ]
    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    for wait in waits:
        wait.cancel()
    log.info("worker %s shutting down: closing %d connections", tag, server.stats.connections)
    listener.close()
    await listener.wait_closed()
    await watchers.close()
    await storm.close()


def worker_command(args: argparse.Namespace) -> list[str]:
    """The command line of this node's workers (the supervisor adds their index)."""
    command = [sys.executable, "-m", "msstorm.storm.cli"]
    options: dict[str, Any] = {
        "--host": args.host,
        "--port": args.port,
        "--cors-origin": args.cors_origin,
        "--ping-interval": args.ping_interval,
        "--ping-timeout": args.ping_timeout,
        "--max-payload": args.max_payload,
        "--connect-timeout": args.connect_timeout,
        "--max-queued": args.max_queued,
        "--max-conns-per-address": args.max_conns_per_address,
        "--handshake-timeout": args.handshake_timeout,
        "--monitor-token": args.monitor_token,
        "--op-timeout": args.op_timeout,
        "--max-tree-leaves": args.max_tree_leaves,
        "--max-operations": args.max_operations,
        "--bus": args.bus,
        "--cluster": args.cluster,
        "--node-id": args.node_id,
        "--log-level": args.log_level,
        **watching.worker_options(args),
    }
    for option, value in options.items():
        if value is not None:
            command.append(f"{option}={value}")  # a value may start with "-" (a node id)
    if args.limit_loopback:
        command.append("--limit-loopback")
    return command


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    if args.bus.startswith(REDIS_SCHEMES):  # not the URL itself: it may hold a password
        extras.require(p, "redis", f"--bus {args.bus.split('://')[0]}://...")
    watching.check(p, args)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    try:
        if args.node_id is None:
            args.node_id = ids.node_id()
        ids.make_tag(args.node_id, 0)  # refuses a bad --node-id now
        if args.worker_index is not None:  # started by a supervisor
            die_with_parent()
            with contextlib.suppress(KeyboardInterrupt):
                uvloop.run(run_worker(args, clustered=True))
            return 0
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        workers = plan_workers(args.max_clients, args.workers, soft, os.cpu_count() or 1)
        if workers == 1:
            with contextlib.suppress(KeyboardInterrupt):
                uvloop.run(run_worker(args, clustered=args.bus != "embedded"))
            return 0
        if args.monitor_token is None:  # one token for every worker
            args.monitor_token = secrets.token_urlsafe(18)
            log.info("monitor token: %s", args.monitor_token)
        log.info(
            "node %s: %d workers on http://%s:%d, %s bus (up to %d clients)",
            args.node_id,
            workers,
            args.host,
            args.port,
            "Redis" if args.bus != "embedded" else "embedded",
            workers * per_worker(soft),
        )
        supervisor = Supervisor(
            workers,
            worker_command(args),
            embedded_bus=args.bus == "embedded",
            stop_timeout=args.op_timeout + 15,  # the workers' drain, and some
        )
        with contextlib.suppress(KeyboardInterrupt):
            return uvloop.run(supervisor.run())
        return 0
    except (CapacityError, OSError, ValueError) as exc:
        print(f"msstorm-server: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
