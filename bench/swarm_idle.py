"""A swarm of idle WebSocket clients in one process (one uvloop loop, raw picows clients).

    python bench/swarm_idle.py --port 3000 --mode sio --src 127.0.0.10

Driven line by line on stdin, so that a benchmark can connect in stages and
measure in between:

    connect K   open K more connections; answers ``done OK FAILED ERRORS_JSON``
    status      answers ``status OK FAILED LOST PINGS``
    quit        drop every connection at once (RST, no TIME_WAIT) and exit

While connecting it prints ``progress OK FAILED`` twice a second. It prints
``ready`` once it listens for commands. End of stdin means ``quit``.

Modes:
- ``sio``: a Socket.IO v5 client over the WebSocket transport, done by hand:
  wait for Engine.IO's ``0{...}`` open packet, send ``40``, wait for
  ``40{"sid":...}``; afterwards answer every ``2`` ping with ``3`` and nothing else.
- ``ws``: a bare WebSocket connection (for servers that speak no Socket.IO).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import logging
import os
import signal
import socket
import struct
import sys
from typing import Any

import uvloop
from picows import WSListener, WSMsgType, ws_connect

_TEXT = WSMsgType.TEXT
_LOG = logging.LoggerAdapter(logging.getLogger("swarm"), {})  # no child logger per client
_LINGER_ABORT = struct.pack("ii", 1, 0)


class SocketIOClient(WSListener):  # type: ignore[misc]
    """Does the Socket.IO handshake on namespace ``/``, then only answers pings."""

    __slots__ = ("joined", "swarm")

    def __init__(self, swarm: Swarm) -> None:
        self.swarm = swarm
        self.joined: asyncio.Future[None] = swarm.loop.create_future()

    def on_ws_frame(self, transport: Any, frame: Any) -> None:
        if frame.msg_type != _TEXT:
            return
        data = frame.get_payload_as_bytes()
        if data == b"2":
            transport.send(_TEXT, b"3")
            self.swarm.pings += 1
        elif self.joined.done():
            return
        elif data[:1] == b"0":  # Engine.IO open
            transport.send(_TEXT, b"40")
        elif data[:2] == b"40":
            self.joined.set_result(None)
        elif data[:2] == b"44":
            self.joined.set_exception(ConnectionError(f"CONNECT refused: {data[:100]!r}"))

    def on_ws_disconnected(self, transport: Any) -> None:
        if not self.joined.done():
            self.joined.set_exception(ConnectionError("closed during the Socket.IO handshake"))
        else:
            self.swarm.lost += 1


class BareClient(WSListener):  # type: ignore[misc]
    """Holds the connection, answers nothing (picows answers WebSocket pings)."""

    __slots__ = ("swarm",)

    def __init__(self, swarm: Swarm) -> None:
        self.swarm = swarm

    def on_ws_disconnected(self, transport: Any) -> None:
        self.swarm.lost += 1


class Swarm:
    def __init__(self, args: argparse.Namespace, loop: asyncio.AbstractEventLoop) -> None:
        self.args = args
        self.loop = loop
        self.transports: list[Any] = []
        self.failed = 0
        self.lost = 0
        self.pings = 0
        self.errors: collections.Counter[str] = collections.Counter()
        self.url = f"ws://{args.host}:{args.port}{args.path}"
        if args.mode == "sio":
            self.url += "?EIO=4&transport=websocket"
        self.connect_kwargs: dict[str, Any] = {}
        if args.src:
            self.connect_kwargs["local_addr"] = (args.src, 0)

    @property
    def ok(self) -> int:
        return len(self.transports)

    async def open_one(self) -> None:
        factory = (
            (lambda: SocketIOClient(self))
            if self.args.mode == "sio"
            else (lambda: BareClient(self))
        )
        last: BaseException | None = None
        for attempt in range(self.args.attempts):
            if attempt:
                await asyncio.sleep(0.2 * attempt)
            transport = None
            try:
                transport, listener = await ws_connect(
                    factory,
                    self.url,
                    websocket_handshake_timeout=self.args.timeout,
                    logger_name=_LOG,
                    read_buffer_init_size=2048,
                    use_aiofastnet=False,
                    **self.connect_kwargs,
                )
                if isinstance(listener, SocketIOClient):
                    await asyncio.wait_for(listener.joined, self.args.timeout)
                self.transports.append(transport)
                return
            except Exception as exc:
                last = exc
                if transport is not None:
                    transport.disconnect()
        self.failed += 1
        assert last is not None
        self.errors[f"{type(last).__name__}: {last}"[:160]] += 1

    async def connect(self, count: int) -> None:
        sem = asyncio.Semaphore(self.args.concurrency)

        async def one() -> None:
            async with sem:
                await self.open_one()

        ticker = asyncio.ensure_future(self._progress())
        try:
            await asyncio.gather(*(one() for _ in range(count)))
        finally:
            ticker.cancel()
        errors = dict(self.errors.most_common(5))
        say(f"done {self.ok} {self.failed} {json.dumps(errors)}")

    async def _progress(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            say(f"progress {self.ok} {self.failed}")

    def abort_all(self) -> None:
        """RST every connection: no TIME_WAIT left behind for the next run."""
        for transport in self.transports:
            with contextlib.suppress(Exception):
                fd = transport.underlying_transport.get_extra_info("socket").fileno()
                sock = socket.socket(fileno=fd)
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ABORT)
                finally:
                    sock.detach()


def say(line: str) -> None:
    try:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
    except BrokenPipeError:  # the driver is gone: nobody to hold connections for
        os._exit(1)


async def main(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    swarm = Swarm(args, loop)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    say("ready")
    while True:
        line = (await reader.readline()).decode().strip()
        if not line or line == "quit":
            break
        cmd, _, arg = line.partition(" ")
        if cmd == "connect":
            await swarm.connect(int(arg))
        elif cmd == "status":
            say(f"status {swarm.ok} {swarm.failed} {swarm.lost} {swarm.pings}")
        else:
            say(f"error unknown command {line!r}")
    swarm.abort_all()
    say("bye")
    os._exit(0)  # the kernel closes every socket at once (with RST, see abort_all)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--path", default="/socket.io/", help="URL path (default %(default)s)")
    p.add_argument("--mode", choices=["sio", "ws"], default="sio")
    p.add_argument("--src", default="", help="source address, e.g. 127.0.0.10 (default: any)")
    p.add_argument("--concurrency", type=int, default=128, help="handshakes in flight at once")
    p.add_argument("--timeout", type=float, default=15.0, help="seconds per handshake attempt")
    p.add_argument("--attempts", type=int, default=3)
    return p.parse_args(argv)


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver decides when we stop
    uvloop.run(main(parse_args()))
