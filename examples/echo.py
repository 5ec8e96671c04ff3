"""An echo server for Socket.IO and Engine.IO clients, on one port.

    python examples/echo.py --port 3000

- ``/socket.io/``: Socket.IO v5, namespaces ``/`` and ``/custom``. On connect
  the server emits ``auth`` with the client's CONNECT payload; ``message`` is
  answered with ``message-back`` (same arguments); ``message-with-ack`` is
  acknowledged with its arguments; ``ask`` makes the server emit ``question``
  with the same arguments and wait for the client's ack, whose values come
  back as ``answer``; ``disconnect-me`` disconnects the socket; a socket that
  sent ``watch`` gets ``gone`` with the sid and reason of every socket that
  leaves its namespace afterwards.
  Any other namespace is refused with ``Invalid namespace``.
- ``/engine.io/``: bare Engine.IO; every message is sent back as it came.
- ``/healthz``: counters, as JSON.

It is the server of the interop tests, and the engine's API in one page.
"""

from __future__ import annotations

import argparse
import contextlib
from typing import Any

import uvloop

import msstorm


def build(options: dict[str, int]) -> tuple[msstorm.Server, msstorm.EngineServer]:
    sio = msstorm.Server(**options)
    for name in ("/", "/custom"):
        register_echo(sio, name)

    eio = msstorm.EngineServer(**options)
    eio.on("message", eio.send)
    return sio, eio


def register_echo(sio: msstorm.Server, namespace: str) -> None:
    watchers: set[str] = set()

    def on(event: str) -> Any:
        return sio.on(event, namespace=namespace)

    @on("connect")
    def connect(sid: str, auth: Any) -> None:
        sio.emit("auth", auth, to=sid, namespace=namespace)

    @on("message")
    def message(sid: str, *args: Any) -> None:
        sio.emit("message-back", *args, to=sid, namespace=namespace)

    @on("message-with-ack")
    def message_with_ack(sid: str, *args: Any) -> tuple[Any, ...]:
        return args

    @on("ask")
    def ask(sid: str, *args: Any) -> None:
        def answered(*values: Any) -> None:
            sio.emit("answer", *values, to=sid, namespace=namespace)

        sio.emit("question", *args, to=sid, namespace=namespace, callback=answered)

    @on("disconnect-me")
    def disconnect_me(sid: str, *args: Any) -> None:
        sio.disconnect(sid, namespace=namespace)

    @on("watch")
    def watch(sid: str, *args: Any) -> None:
        watchers.add(sid)

    @on("disconnect")
    def disconnect(sid: str, reason: str) -> None:
        watchers.discard(sid)
        for watcher in watchers:
            sio.emit("gone", sid, reason, to=watcher, namespace=namespace)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=3000, help="port to listen on")
    parser.add_argument("--ping-interval", type=int, default=25000, metavar="MS")
    parser.add_argument("--ping-timeout", type=int, default=20000, metavar="MS")
    parser.add_argument("--max-payload", type=int, default=1_000_000, metavar="BYTES")
    parser.add_argument("--connect-timeout", type=int, default=45000, metavar="MS")
    parser.add_argument(
        "--cors-origin", default=None, metavar="ORIGINS", help="'*' or origins, comma-separated"
    )
    return parser.parse_args()


async def main() -> None:
    args = parse_args()
    sio, eio = build(
        {
            "ping_interval": args.ping_interval,
            "ping_timeout": args.ping_timeout,
            "max_payload": args.max_payload,
            "connect_timeout": args.connect_timeout,
        }
    )
    listener = await msstorm.serve(
        sio, eio, host=args.host, port=args.port, cors_origin=args.cors_origin
    )
    print(f"echo server on http://{args.host}:{listener.port}", flush=True)
    await listener.wait_closed()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(main())
