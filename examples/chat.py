"""A chat with rooms, written against python-socketio's API, served by msstorm.

    python examples/chat.py --port 5000                          # one process
    python examples/chat.py --port 5000 --workers 3              # three, one port
    python examples/chat.py --port 5000 --bus redis://127.0.0.1:6379/0   # a node

``MSSTORM_CHAT_SERVER=python-socketio`` serves the same handlers with
python-socketio's own ``AsyncServer`` (on aiohttp; ``--redis URL`` joins its
processes with ``AsyncRedisManager``): the import and the lines that serve it are
all that differ. It is the application of ``tests/interop/test_rooms.py``.

A client connects with ``auth={"name": ...}`` and may then emit:
``join``/``leave`` a room (the ack: its rooms), ``say`` ``{"to": room or [rooms],
"text", "echo"}`` (``said`` to those rooms, the sender skipped unless ``echo``),
``shout`` (to everyone else), ``close`` a room, ``whoami``, ``rename``,
``ask`` ``(sid, question)`` (the server calls the other client's ``question``
and acks its answer), ``invite`` ``(sid, room)``, ``kick`` a sid, ``rooms``. When
a client goes, the others of its rooms get ``left``. Namespace ``/lobby`` is a
class-based namespace.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

PYTHON_SOCKETIO = os.environ.get("MSSTORM_CHAT_SERVER") == "python-socketio"
REDIS = os.environ.get("MSSTORM_CHAT_REDIS")  # python-socketio's processes, joined

if PYTHON_SOCKETIO:
    import socketio

    manager = socketio.AsyncRedisManager(REDIS) if REDIS else None
    sio = socketio.AsyncServer(client_manager=manager, ping_interval=5, ping_timeout=5)
else:
    import msstorm as socketio

    sio = socketio.AsyncServer(ping_interval=5, ping_timeout=5)


def others(sid: str) -> list[str]:
    return sorted(room for room in sio.rooms(sid) if room != sid)


@sio.event
async def connect(sid: str, environ: dict[str, Any], auth: Any) -> Any:
    name = (auth or {}).get("name")
    if not name:
        raise socketio.exceptions.ConnectionRefusedError("a name is required", {"field": "name"})
    if name == "nobody":
        return False
    await sio.save_session(sid, {"name": name})
    return None


@sio.event
async def disconnect(sid: str, reason: str) -> None:
    session = await sio.get_session(sid)
    rooms = others(sid)
    if rooms:
        await sio.emit("left", {"name": session["name"], "rooms": rooms}, to=rooms, skip_sid=sid)


@sio.event
async def join(sid: str, room: str) -> list[str]:
    await sio.enter_room(sid, room)
    return others(sid)


@sio.event
async def leave(sid: str, room: str) -> list[str]:
    await sio.leave_room(sid, room)
    return others(sid)


@sio.event
async def rooms(sid: str) -> dict[str, Any]:
    return {"rooms": others(sid), "own": sid in sio.rooms(sid)}


@sio.event
async def say(sid: str, message: dict[str, Any]) -> bool:
    session = await sio.get_session(sid)
    said = {"from": session["name"], "text": message["text"], "to": message["to"]}
    skip = None if message.get("echo") else sid
    await sio.emit("said", said, to=message["to"], skip_sid=skip)
    return True


@sio.event
async def shout(sid: str, text: str) -> bool:
    session = await sio.get_session(sid)
    await sio.emit("shouted", {"from": session["name"], "text": text}, skip_sid=sid)
    return True


@sio.on("close")
async def close(sid: str, room: str) -> bool:
    await sio.close_room(room)
    return True


@sio.event
async def whoami(sid: str) -> str:
    session = await sio.get_session(sid)
    return str(session["name"])


@sio.event
async def rename(sid: str, name: str) -> str:
    async with sio.session(sid) as session:
        session["name"] = name
    return name


@sio.event
async def ask(sid: str, target: str, question: str) -> Any:
    session = await sio.get_session(sid)
    try:
        return await sio.call("question", {"from": session["name"], "q": question}, to=target)
    except socketio.exceptions.TimeoutError:
        return None


@sio.event
async def invite(sid: str, target: str, room: str) -> bool:
    await sio.enter_room(target, room)  # target may be connected to another worker
    return True


@sio.event
async def kick(sid: str, target: str) -> bool:
    await sio.disconnect(target)
    return True


class Lobby(socketio.AsyncNamespace):
    """A class-based namespace: greets, and relays to its rooms."""

    async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any) -> None:
        await self.save_session(sid, {"name": (auth or {}).get("name", "?")})

    async def on_hello(self, sid: str) -> str:
        session = await self.get_session(sid)
        return f"hello {session['name']}"

    async def on_join(self, sid: str, room: str) -> None:
        await self.enter_room(sid, room)

    async def on_say(self, sid: str, room: str, text: str) -> bool:
        await self.emit("said", text, room=room)
        return True


sio.register_namespace(Lobby("/lobby"))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5000)
    p.add_argument("--workers", type=int, default=1, help="msstorm only")
    p.add_argument("--bus", default="embedded", help="msstorm only: or redis://host:port/db")
    args = p.parse_args()
    if PYTHON_SOCKETIO:
        from aiohttp import web

        app = web.Application()
        sio.attach(app)
        web.run_app(app, host=args.host, port=args.port, print=None)
        return 0
    if args.workers == 1:
        return socketio.run(sio, host=args.host, port=args.port, bus=args.bus)
    # The workers import this file as the module "chat", from its folder.
    here = os.path.dirname(os.path.abspath(__file__))
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")]))
    sys.path.insert(0, here)
    return socketio.run(
        "chat:sio", host=args.host, port=args.port, workers=args.workers, bus=args.bus
    )


if __name__ == "__main__":
    sys.exit(main())
