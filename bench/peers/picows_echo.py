"""The echo floor: raw picows WebSocket round trips on one loopback connection.

    python bench/peers/picows_echo.py serve --port 3002
    python bench/peers/picows_echo.py ping --url ws://127.0.0.1:3002/ --count 2000

``serve`` echoes every text frame back from its ``on_ws_frame`` callback, with the
settings msstorm's ``serve()`` passes to picows. ``ping`` sends a poke-sized text
frame, timestamps the echo in its own ``on_ws_frame`` and sends the next frame
from there, so that no future or task wake-up is in the loop: what is left is
two picows frame codecs, two event loops and the loopback TCP path. It prints one
JSON object on stdout: ``{"rtt_us": [...], "payload_bytes": N, "warmup": W}``.

msstorm's unicast RTT is measured alike (poke written to the socket, pokeBack
decoded), so this is the floor it is judged against.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
import time
from typing import Any, cast

import orjson
import uvloop
from picows import WSListener, WSMsgType, ws_connect, ws_create_server

# As long as a poke of a 10,000-client broadcast: 42["poke",{"id":...,"ts":...}]
PAYLOAD = b'42["poke",{"id":"a180-b.00002710","ts":1764358849123.456}]'
_LOG = logging.LoggerAdapter(logging.getLogger("peer.picows_echo"), {})
SETTINGS: dict[str, Any] = {
    "use_aiofastnet": False,
    "read_buffer_init_size": 2048,
    "logger_name": _LOG,
    "enable_auto_ping": False,
    "websocket_handshake_timeout": 10.0,
}


class Echo(WSListener):  # type: ignore[misc,unused-ignore]
    __slots__ = ()

    def on_ws_frame(self, transport: Any, frame: Any) -> None:
        if frame.msg_type == WSMsgType.TEXT:
            transport.send(WSMsgType.TEXT, frame.get_payload_as_bytes())
        elif frame.msg_type == WSMsgType.CLOSE:
            transport.disconnect()


class Pinger(WSListener):  # type: ignore[misc,unused-ignore]
    """Round trips back to back, each started from the previous one's callback."""

    def __init__(self, count: int, warmup: int, gap: float = 0.0) -> None:
        super().__init__()
        self.left = count + warmup
        self.warmup = warmup
        self.gap = gap  # seconds between an echo and the next frame (0: at once)
        self.samples: list[float] = []
        self.sent_at = 0
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: Any = None

    def on_ws_connected(self, transport: Any) -> None:
        self.transport = transport

    def start(self) -> None:
        self.sent_at = time.perf_counter_ns()
        self.transport.send(WSMsgType.TEXT, PAYLOAD)

    def on_ws_frame(self, transport: Any, frame: Any) -> None:
        now = time.perf_counter_ns()
        if frame.msg_type != WSMsgType.TEXT:
            return
        self.left -= 1
        if self.warmup:
            self.warmup -= 1
        else:
            self.samples.append((now - self.sent_at) / 1000.0)
        if self.left and self.gap:
            asyncio.get_running_loop().call_later(self.gap, self.start)
        elif self.left:
            self.start()
        elif not self.done.done():
            self.done.set_result(None)

    def on_ws_disconnected(self, transport: Any) -> None:
        if not self.done.done():
            self.done.set_exception(ConnectionError("the echo server closed the connection"))


async def serve(args: argparse.Namespace) -> None:
    server = await ws_create_server(lambda _request: Echo(), args.host, args.port, **SETTINGS)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"picows echo server on {args.host}:{args.port}", flush=True)
    await stop.wait()
    server.close()


async def ping(args: argparse.Namespace) -> None:
    transport, listener = await ws_connect(
        lambda: Pinger(args.count, args.warmup, args.gap_ms / 1000.0), args.url, **SETTINGS
    )
    pinger = cast(Pinger, listener)
    pinger.start()
    await asyncio.wait_for(pinger.done, args.timeout)
    transport.disconnect()
    result = {
        "rtt_us": pinger.samples,
        "payload_bytes": len(PAYLOAD),
        "warmup": args.warmup,
        "gap_ms": args.gap_ms,
    }
    sys.stdout.buffer.write(orjson.dumps(result) + b"\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    roles = parser.add_subparsers(dest="role", required=True)
    s = roles.add_parser("serve", help="the echo server")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=3002)
    p = roles.add_parser("ping", help="time round trips to an echo server")
    p.add_argument("--url", default="ws://127.0.0.1:3002/")
    p.add_argument("--count", type=int, default=2000, help="round trips timed")
    p.add_argument("--warmup", type=int, default=200, help="round trips first, not timed")
    p.add_argument(
        "--gap-ms",
        type=float,
        default=0.0,
        help="pause between an echo and the next frame, as sequential unicasts have (default 0)",
    )
    p.add_argument("--timeout", type=float, default=60.0, help="seconds for them all")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(serve(args) if args.role == "serve" else ping(args))


if __name__ == "__main__":
    main()
