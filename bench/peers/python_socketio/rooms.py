"""A rooms app on python-socketio's ``AsyncServer`` API, for bench/run_rooms.py.

    python rooms.py --port 3000                   # python-socketio (aiohttp, uvloop)
    python rooms.py --port 3000 --engine msstorm  # the same handlers on msstorm

Each socket enters three rooms when it connects: ``all``, one of ten and one of a
hundred. ``count`` acks the sockets connected; ``fanout(room, times)`` emits
``news`` to the room ``times`` times, the sender skipped, then acks. The only
lines that differ between the two servers are the import and the serving.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

import uvloop

ENGINE = "msstorm" if "msstorm" in sys.argv[1:] else "python-socketio"

if ENGINE == "msstorm":
    import msstorm as socketio
else:
    import socketio

sio = socketio.AsyncServer(ping_interval=25, ping_timeout=60)
connected = [0]
NEWS = {"text": "x" * 40}


@sio.event
async def connect(sid: str, environ: dict[str, Any], auth: Any) -> None:
    connected[0] += 1
    i = connected[0]
    await sio.enter_room(sid, "all")
    await sio.enter_room(sid, f"ten-{i % 10}")
    await sio.enter_room(sid, f"hundred-{i % 100}")


@sio.event
async def disconnect(sid: str, reason: str) -> None:
    connected[0] -= 1


@sio.event
async def count(sid: str) -> int:
    return connected[0]


@sio.event
async def fanout(sid: str, room: str, times: int) -> bool:
    for n in range(times):
        await sio.emit("news", {"n": n, **NEWS}, to=room, skip_sid=sid)
    return True


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=3000)
    p.add_argument("--engine", choices=["python-socketio", "msstorm"], default="python-socketio")
    args = p.parse_args()
    if ENGINE == "msstorm":
        return socketio.run(sio, port=args.port, log_level="warning")
    from aiohttp import web

    app = web.Application()
    sio.attach(app)
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, backlog=4096)
    return 0


if __name__ == "__main__":
    sys.exit(main())
