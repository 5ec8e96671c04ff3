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
import socket
import sys
from typing import Any

import uvloop

from msstorm import cli_types, extras
from msstorm.cli_types import count, masked_url, milliseconds, positive, url_password, whole
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
# Secrets travel in the environment, never on a command line: /proc/PID/cmdline is
# readable by every local user, /proc/PID/environ only by the process's own.
TOKEN_ENV = "MSSTORM_MONITOR_TOKEN"
BUS_ENV = "MSSTORM_BUS"
DEFAULT_CLUSTER = "msstorm"

EPILOG = """\
examples:
  msstorm-server                          127.0.0.1:3000, one worker per core, a token printed
  msstorm-server --max-clients 500000     as many workers as the open-file limit requires
  MSSTORM_MONITOR_TOKEN=s3cret msstorm-server --host 0.0.0.0 --port 8080 --workers 8
  msstorm-server --bus redis://10.0.0.5:6379/0 --host 0.0.0.0   one node of a multi-machine storm
  MSSTORM_BUS=redis://:PASSWORD@10.0.0.5:6379/0 msstorm-server --host 0.0.0.0
  curl http://127.0.0.1:3000/healthz      connections, refused input, the cluster, as JSON
  curl http://127.0.0.1:3000/metrics      the same and more, for Prometheus

Clients connect to http://HOST:PORT, over WebSocket or HTTP long-polling (a
default socket.io-client or python-socketio client polls first, then upgrades),
and answer every "poke" with a "pokeBack"; the monitor connects to namespace
/monitor with auth {"token": ...}. GET /metrics serves Prometheus counters.

Every local user can read a process's command line: give the monitor token in
$MSSTORM_MONITOR_TOKEN and a Redis password in $MSSTORM_BUS rather than as options.
The workers get both through their environment, which only this user can read.
"""


def _secret(text: str) -> str:
    if not text:
        raise argparse.ArgumentTypeError("must not be empty")
    return text


def _node_id(text: str) -> str:
    try:
        ids.make_tag(text, 0)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _cluster_name(text: str) -> str:
    if not text or not text.isprintable() or " " in text:
        raise argparse.ArgumentTypeError(f"expected a name without spaces, not {text!r}")
    return text


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="msstorm-server",
        description="The MessageStorm server: Socket.IO v5 clients, pokes and round-trip times.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--host",
        type=cli_types.host,
        default="127.0.0.1",
        help="address to listen on: an IP address or a host name (default %(default)s)",
    )
    p.add_argument(
        "--port",
        type=whole(0, 65535),
        default=3000,
        help="port to listen on, 0 for any free one with one worker (default %(default)s)",
    )
    p.add_argument(
        "--cors-origin",
        type=cli_types.origins,
        default=None,
        metavar="ORIGINS",
        help="origins whose browser pages may use HTTP long-polling: '*' or a comma-separated "
        "list of scheme://host[:port] (default: none, same-origin only)",
    )
    group = p.add_argument_group(
        "Socket.IO options (as Socket.IO's, milliseconds and bytes; times at most 2147483647 ms)"
    )
    group.add_argument(
        "--ping-interval",
        type=milliseconds,
        default=25000,
        metavar="MS",
        help="time between two heartbeats (default %(default)s)",
    )
    group.add_argument(
        "--ping-timeout",
        type=milliseconds,
        default=20000,
        metavar="MS",
        help="time a client has to answer a heartbeat (default %(default)s)",
    )
    group.add_argument(
        "--max-payload",
        type=count,
        default=1_000_000,
        metavar="BYTES",
        help="largest message accepted (default %(default)s)",
    )
    group.add_argument(
        "--connect-timeout",
        type=milliseconds,
        default=45000,
        metavar="MS",
        help="time a client has to join a namespace (default %(default)s)",
    )
    guard = p.add_argument_group("limits (the server may face the Internet)")
    guard.add_argument(
        "--max-queued",
        type=count,
        default=1 << 20,
        metavar="BYTES",
        help="bytes that may wait for a client that does not read before it is dropped "
        "(default %(default)s); while any wait, its pokes count as lost",
    )
    guard.add_argument(
        "--max-conns-per-address",
        type=whole(0),
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
        type=positive,
        default=10.0,
        metavar="SECONDS",
        help="time an HTTP request or a WebSocket handshake has to arrive whole "
        "(default %(default)s)",
    )
    storm = p.add_argument_group("MessageStorm")
    storm.add_argument(
        "--monitor-token",
        type=_secret,
        default=os.environ.get(TOKEN_ENV) or None,
        metavar="TOKEN",
        help=f"token monitors must present (default: ${TOKEN_ENV}, else a random one, "
        "printed at start); the variable is safer: every local user can read a command line",
    )
    storm.add_argument(
        "--op-timeout",
        type=positive,
        default=60.0,
        metavar="SECONDS",
        help="an operation ends after this long, its missing answers lost (default %(default)s)",
    )
    storm.add_argument(
        "--max-tree-leaves",
        type=cli_types.power_of_two,
        default=1 << 20,
        metavar="L",
        help="largest treeLeaves a monitor may ask for, a power of two (default %(default)s)",
    )
    storm.add_argument(
        "--max-operations",
        type=count,
        default=64,
        metavar="N",
        help="operations that may run at once (default %(default)s)",
    )
    cluster = p.add_argument_group("workers and machines")
    cluster.add_argument(
        "--workers",
        type=whole(1, ids.MAX_WORKERS),
        default=None,
        metavar="N",
        help="worker processes on this port (default: enough for "
        "--max-clients, and at least one per core)",
    )
    cluster.add_argument(
        "--max-clients",
        type=count,
        default=None,
        metavar="N",
        help="clients this node must be able to hold; refused at start when the workers cannot",
    )
    cluster.add_argument(
        "--bus",
        type=cli_types.bus,
        default=os.environ.get(BUS_ENV) or "embedded",
        metavar="URL",
        help="'embedded' (the workers of this machine) or redis://[:PASSWORD@]HOST[:PORT][/DB], "
        "rediss://... (TLS), unix:///PATH[?db=DB] to join other msstorm-server instances "
        f"(default: ${BUS_ENV}, else embedded; needs the Redis client: pip install "
        f"'msstorm[redis]'); a password is safer in ${BUS_ENV}: every local user can read "
        "a command line",
    )
    cluster.add_argument(
        "--cluster",
        type=_cluster_name,
        default=None,
        metavar="NAME",
        help=f"the storm's name on Redis (default {DEFAULT_CLUSTER}; only with a Redis bus)",
    )
    cluster.add_argument(
        "--node-id",
        type=_node_id,
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

        return RedisBus(tag, args.bus, args.cluster or DEFAULT_CLUSTER)
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
    """The command line of this node's workers (the supervisor adds their index),
    without the secrets: those are in ``worker_environment``."""
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
        "--op-timeout": args.op_timeout,
        "--max-tree-leaves": args.max_tree_leaves,
        "--max-operations": args.max_operations,
        "--cluster": args.cluster,
        "--node-id": args.node_id,
        "--log-level": args.log_level,
        **watching.worker_options(args),
    }
    for option, value in options.items():
        if value is not None:
            # One word, ``--node-id=-x``: a value starting with "-" (a random node id
            # may) would otherwise be read as an option, and every worker would exit.
            command.append(f"{option}={value}")
    if args.limit_loopback:
        command.append("--limit-loopback")
    return command


def worker_environment(args: argparse.Namespace) -> dict[str, str]:
    """What the workers get in their environment besides this process's own: the
    token and the bus URL (which may hold a password)."""
    return {TOKEN_ENV: args.monitor_token, BUS_ENV: args.bus}


def check_options(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """What one option alone cannot say: exit 2, naming them, when they disagree."""
    if args.cluster is not None and args.bus == "embedded":
        p.error(f"--cluster names the storm on Redis: it needs --bus redis://... (or ${BUS_ENV})")
    if args.limit_loopback and args.max_conns_per_address == 0:
        p.error("--limit-loopback needs a limit: --max-conns-per-address is 0 (none)")


def warn_exposed(args: argparse.Namespace) -> None:
    """Say so when a secret came on the command line, where every local user sees it."""
    if args.monitor_token is not None and args.monitor_token != os.environ.get(TOKEN_ENV):
        log.warning(
            "--monitor-token is on the command line, which every local user can read: "
            "set $%s instead",
            TOKEN_ENV,
        )
    if url_password(args.bus) and args.bus != os.environ.get(BUS_ENV):
        log.warning(
            "the --bus password is on the command line, which every local user can read: "
            "set $%s instead",
            BUS_ENV,
        )


def check_port(host: str, port: int) -> None:
    """Refuse, before any worker starts, a port already listened on (with SO_REUSEPORT
    the workers would share it with a stranger) or not ours to take."""
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        for family, kind, proto, _, address in found:
            with socket.socket(family, kind, proto) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:  # as asyncio binds it
                    probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                probe.bind(address)
    except OSError as exc:
        raise OSError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    check_options(p, args)
    if args.bus.startswith(REDIS_SCHEMES):  # not the URL itself: it may hold a password
        extras.require(p, "redis", f"--bus {args.bus.split('://')[0]}://...")
    watching.check(p, args)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    try:
        if args.node_id is None:
            args.node_id = ids.node_id()
        if args.worker_index is not None:  # started by a supervisor
            die_with_parent()
            with contextlib.suppress(KeyboardInterrupt):
                uvloop.run(run_worker(args, clustered=True))
            return 0
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        try:
            workers = plan_workers(args.max_clients, args.workers, soft, os.cpu_count() or 1)
        except CapacityError as exc:
            p.error(str(exc))
        if workers > ids.MAX_WORKERS:
            p.error(
                f"--max-clients {args.max_clients:,} needs {workers:,} workers, more than a "
                f"node may run ({ids.MAX_WORKERS:,})"
            )
        if args.port == 0 and workers > 1:
            p.error(
                f"--port 0 (any free port) needs --workers 1: {workers} workers would "
                "each listen on a port of their own"
            )
        warn_exposed(args)
        if args.port != 0:
            check_port(args.host, args.port)
        embedded = args.bus == "embedded"
        if workers == 1:
            with contextlib.suppress(KeyboardInterrupt):
                uvloop.run(run_worker(args, clustered=not embedded))
            return 0
        if args.monitor_token is None:  # one token for every worker
            args.monitor_token = secrets.token_urlsafe(18)
            log.info("monitor token: %s", args.monitor_token)
        log.info(
            "node %s: %d workers on http://%s:%d, bus %s (up to %d clients)",
            args.node_id,
            workers,
            args.host,
            args.port,
            "embedded" if embedded else masked_url(args.bus),
            workers * per_worker(soft),
        )
        supervisor = Supervisor(
            workers,
            worker_command(args),
            embedded_bus=embedded,
            stop_timeout=args.op_timeout + 15,  # the workers' drain, and some
            env={**os.environ, **worker_environment(args)},
        )
        with contextlib.suppress(KeyboardInterrupt):
            return uvloop.run(supervisor.run())
        return 0
    except (OSError, ValueError) as exc:
        print(f"msstorm-server: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
