"""A bare picows WebSocket server that only holds connections: the floor under msstorm.

    python bench/peers/picows_idle.py --port 3001 --profile default

It answers no frame (picows itself answers WebSocket pings). ``GET /healthz``
returns ``{"connections": N}`` like msstorm's, so the benchmark waits on both the
same way; the count is two module-level integers, nothing per connection.

Profiles (what is passed to ``ws_create_server``):
- ``default``: nothing: picows's defaults (aiofastnet when installed, a 16 KiB
  read buffer, a ``logging.Logger`` per connection).
- ``lean``: ``use_aiofastnet=False, read_buffer_init_size=2048``.
- ``msstorm``: every argument msstorm's ``serve()`` passes (lean, plus a
  ``LoggerAdapter`` so that picows makes no child logger per connection, no
  auto-ping, a 10 s handshake timeout, a 1 MB frame limit).
- ``floor``: ``msstorm``, and the listener empties the parsed upgrade request
  and response that the transport keeps (their headers above all), as msstorm's
  compiled ``Connection`` drops them (``transport.request = None``; Python code
  cannot do that, the attributes are read-only there, so two empty shells stay).

Every profile listens with ``backlog=4096`` as msstorm does (an argument of
``create_server``; it costs nothing per connection).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
from typing import Any

import orjson
import uvloop
from picows import WSListener, WSUpgradeResponse, WSUpgradeResponseWithListener, ws_create_server

OPENED = 0
CLOSED = 0


class Idle(WSListener):  # type: ignore[misc]
    __slots__ = ()

    def on_ws_connected(self, transport: Any) -> None:
        global OPENED
        OPENED += 1


class Emptied(Idle):
    __slots__ = ()

    def on_ws_connected(self, transport: Any) -> None:
        global OPENED
        OPENED += 1
        for message in (transport.request, transport.response):
            if message is not None:
                for name in type(message).__slots__:
                    setattr(message, name, None)

    def on_ws_disconnected(self, transport: Any) -> None:
        global CLOSED
        CLOSED += 1


LISTENER: type[Idle] = Idle


def route(request: Any) -> Any:
    if request.path.startswith(b"/healthz"):
        body = orjson.dumps({"status": "ok", "pid": os.getpid(), "connections": OPENED - CLOSED})
        response = WSUpgradeResponse.create_ok_response(body, {"Content-Type": "application/json"})
        return WSUpgradeResponseWithListener(response, None)
    return LISTENER()


PROFILES: dict[str, dict[str, Any]] = {
    "default": {},
    "lean": {"use_aiofastnet": False, "read_buffer_init_size": 2048},
    "msstorm": {
        "use_aiofastnet": False,
        "read_buffer_init_size": 2048,
        "logger_name": logging.LoggerAdapter(logging.getLogger("peer.picows"), {}),
        "enable_auto_ping": False,
        "websocket_handshake_timeout": 10.0,
        "max_frame_size": 1_000_000,
    },
}
PROFILES["floor"] = PROFILES["msstorm"]


async def main(args: argparse.Namespace) -> None:
    global LISTENER
    if args.profile == "floor":
        LISTENER = Emptied
    server = await ws_create_server(
        route, args.host, args.port, backlog=4096, **PROFILES[args.profile]
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"picows idle server ({args.profile}) on {args.host}:{args.port}", flush=True)
    await stop.wait()
    server.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3001)
    parser.add_argument("--profile", choices=sorted(PROFILES), default="default")
    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(main(parser.parse_args()))
