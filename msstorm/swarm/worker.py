"""One swarm process: an event loop holding thousands of connections.

Started by ``msstorm-client`` (``python -m msstorm.swarm.worker ...``), it dials
its share of the swarm at the asked rate, keeps every connection up (a dropped
one redials after an exponential backoff with jitter, so a server that goes away
does not make the swarm spin), and reports its counters as one JSON line on
stdout twice a second, and a last one when it is told to stop.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import logging
import os
import random
import resource
import signal
import socket
import sys
import time
from collections import Counter
from typing import Any
from urllib.parse import urlsplit

import orjson
import uvloop
from picows import WSError, ws_connect

from msstorm._fastpath import SwarmClient
from msstorm._fastpath.swarm_client import JOINED
from msstorm._fastpath.wire import lean, refusal

from .messagelog import MessageLog

# Connections being dialled at once, per process, unless told (msstorm-client
# shares SWARM_DIALS among its processes: a hundred processes dialling 256 each
# would keep more handshakes in flight than two cores finish before they time out).
CONCURRENT_DIALS = 256
SWARM_DIALS = 2048
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 30.0
REPORT_EVERY = 0.5
HANDSHAKE_TIMEOUT = 10.0
CONNECT_TIMEOUT = 20.0  # TCP connect and WebSocket handshake together

_PICOWS_LOG = logging.LoggerAdapter(logging.getLogger("msstorm.swarm.picows"), {})


def ws_url(url: str, path: str) -> str:
    """The WebSocket URL of a Socket.IO server given as http(s)://host:port."""
    parts = urlsplit(url)
    scheme = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}.get(parts.scheme)
    if scheme is None or not parts.hostname:
        raise ValueError(f"not a server URL: {url!r} (expected http://host:port)")
    return f"{scheme}://{parts.netloc}{path}?EIO=4&transport=websocket"


def error_kind(exc: BaseException) -> str:
    """A short name for why a dial failed, as the summary groups them."""
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
        return "timeout"
    if isinstance(exc, OSError):
        if exc.errno == errno.EMFILE or exc.errno == errno.ENFILE:
            return "file limit"
        if exc.errno == errno.EADDRNOTAVAIL or exc.errno == errno.EADDRINUSE:
            return "ports exhausted"
        if exc.errno == errno.ECONNRESET:
            return "reset"
        return f"os error {exc.errno}"
    if isinstance(exc, WSError):
        return "handshake rejected"
    return type(exc).__name__


# Linux: bind() picks no port; connect() picks one unique for the whole 4-tuple.
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)


def bound_socket(address: str) -> socket.socket:
    """A TCP socket whose connections leave from ``address``.

    A plain bind((address, 0)) makes the kernel find a port free for that address
    among every socket bound to it: a search that grows with the connections, until
    it is the whole machine's CPU at a few hundred thousand. Leaving the port to
    connect() makes it a hash lookup.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        if sys.platform.startswith("linux"):
            sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        sock.bind((address, 0))
    except OSError:
        sock.close()
        raise
    return sock


class Swarm:
    """The connections of one process, and everything they share."""

    def __init__(
        self,
        url: str,
        first_slot: int,
        count: int,
        source_ips: list[str],
        ramp: float,
        log: MessageLog,
        dials: int = CONCURRENT_DIALS,
    ) -> None:
        self.url = url
        self.first_slot = first_slot
        self.count = count
        self.source_ips = source_ips
        self.ramp = ramp
        self.log = log
        self.clients: list[Any] = [None] * count
        self.attempts = bytearray(count)  # failed dials in a row, per slot
        self.joined_now = 0
        self.dialling = 0
        self.answered = 0
        self.reconnects = 0
        self.trims_refused = 0  # trim or lean found picows not the one expected (wire.py)
        self.errors: Counter[str] = Counter()
        self.closing = False
        self.rss_before = _rss_bytes()  # before any connection: the interpreter's own
        self.cpu_when_joined: float | None = None  # CPU seconds when every slot first joined
        self._gate = asyncio.Semaphore(dials)
        self._tasks: set[asyncio.Task[None]] = set()

    # -- called by SwarmClient ------------------------------------------------

    def lean_soon(self, transport: Any) -> None:
        """Cut the connection's read buffer once picows is done with the frames in it
        (never from inside a frame callback: the next frame may still point into it)."""
        asyncio.get_running_loop().call_soon(self._lean, transport)

    def _lean(self, transport: Any) -> None:
        if not lean(transport):
            self.trims_refused += 1

    def joined(self, client: Any) -> None:
        self.joined_now += 1
        self.attempts[client.slot] = 0
        if self.cpu_when_joined is None and self.joined_now == self.count:
            self.cpu_when_joined = _cpu_seconds()

    def lost(self, client: Any, was: int) -> None:
        if was == JOINED:
            self.joined_now -= 1
        if self.clients[client.slot] is client:
            self.clients[client.slot] = None
        if not self.closing:
            self.errors["dropped" if was == JOINED else "closed before joining"] += 1
            self._redial_later(client.slot)

    def refused(self, client: Any, data: bytes) -> None:
        self.errors["namespace refused"] += 1

    def bad_poke(self, client: Any, data: bytes) -> None:
        self.errors["unanswerable poke"] += 1

    def log_message(self, slot: int, data: bytes) -> None:
        self.log.message(self.first_slot + slot, data)

    def log_binary(self, slot: int, data: bytes) -> None:
        self.log.binary(self.first_slot + slot, data)

    # -- dialling -------------------------------------------------------------

    async def dial_all(self) -> None:
        """Dial every slot once, at ``ramp`` connections a second (0: as fast as allowed)."""
        started = time.monotonic()
        for slot in range(self.count):
            if self.closing:
                return
            if self.ramp > 0:
                due = started + slot / self.ramp
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            await self._gate.acquire()
            self._spawn(self._dial(slot))

    async def _dial(self, slot: int) -> None:
        self.dialling += 1
        kwargs: dict[str, Any] = {}
        if self.source_ips:
            address = self.source_ips[(self.first_slot + slot) % len(self.source_ips)]
            kwargs["socket_factory"] = lambda _url: bound_socket(address)
        try:
            # The TCP connect too: a server whose accept queue is full drops our SYNs,
            # and the kernel would retry them for minutes without a word.
            async with asyncio.timeout(CONNECT_TIMEOUT):
                _, _client = await ws_connect(
                    lambda: self._client(slot),
                    self.url,
                    use_aiofastnet=False,
                    read_buffer_init_size=2048,
                    websocket_handshake_timeout=HANDSHAKE_TIMEOUT,
                    logger_name=_PICOWS_LOG,
                    max_redirects=0,
                    **kwargs,
                )
        except (TimeoutError, OSError, WSError) as exc:
            self.errors[error_kind(exc)] += 1
            self.attempts[slot] = min(self.attempts[slot] + 1, 16)
            self._redial_later(slot)
        finally:
            self.dialling -= 1
            self._gate.release()

    def _client(self, slot: int) -> Any:
        client = SwarmClient(self, slot)
        self.clients[slot] = client
        return client

    def _redial_later(self, slot: int) -> None:
        if self.closing:
            return
        attempts = max(self.attempts[slot], 1)
        delay = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (attempts - 1))
        delay *= random.uniform(0.5, 1.5)
        asyncio.get_running_loop().call_later(delay, self._redial, slot)

    def _redial(self, slot: int) -> None:
        if self.closing or self.clients[slot] is not None:
            return
        self.reconnects += 1
        self._spawn(self._gated_dial(slot))

    async def _gated_dial(self, slot: int) -> None:
        await self._gate.acquire()
        await self._dial(slot)

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- stopping and reporting -----------------------------------------------

    async def close(self) -> None:
        self.closing = True
        for task in list(self._tasks):
            task.cancel()
        for client in self.clients:
            if client is not None:
                client.close()
        await asyncio.sleep(0.2)  # let the disconnects be seen
        self.log.close()

    def report(self, final: bool = False) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "target": self.count,
            "joined": self.joined_now,
            "dialling": self.dialling,
            "answered": self.answered,
            "messages": self.log.lines,
            "log_bytes": self.log.bytes,
            "log_seconds": round(self.log.seconds, 6),
            "reconnects": self.reconnects,
            "trims_refused": self.trims_refused,
            "trim_refusal": refusal(),
            "errors": dict(self.errors),
            "cpu_seconds": round(_cpu_seconds(), 6),
            "cpu_when_joined": self.cpu_when_joined,
            "rss_bytes": _rss_bytes(),
            "rss_before": self.rss_before,
            "final": final,
        }


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def emit(report: dict[str, Any]) -> None:
    sys.stdout.buffer.write(orjson.dumps(report) + b"\n")
    sys.stdout.flush()


async def run(args: argparse.Namespace) -> None:
    url = ws_url(args.url, args.path)
    log = MessageLog(args.log)
    swarm = Swarm(url, args.first_slot, args.count, args.source_ips, args.ramp, log, args.dials)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    dialling = asyncio.ensure_future(swarm.dial_all())
    emit(swarm.report())
    while not stop.is_set():
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), REPORT_EVERY)
        log.flush()
        emit(swarm.report())
    dialling.cancel()
    await swarm.close()
    emit(swarm.report(final=True))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="One swarm process (started by msstorm-client).")
    parser.add_argument("--url", required=True)
    parser.add_argument("--path", default="/socket.io/")
    parser.add_argument("--first-slot", type=int, default=0)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--ramp", type=float, default=0.0)
    parser.add_argument("--dials", type=int, default=CONCURRENT_DIALS)
    parser.add_argument("--source-ips", default="")
    parser.add_argument("--log", default=None)
    args = parser.parse_args(argv)
    args.source_ips = [ip for ip in args.source_ips.split(",") if ip]
    uvloop.run(run(args))


if __name__ == "__main__":
    main()
