"""One connection of the swarm: a lean Socket.IO client that answers pokes.

The listener speaks just enough Engine.IO v4 / Socket.IO v5 to be a MessageStorm
client of any server: it joins namespace ``/`` when the ``open`` packet comes,
answers pings, answers every ``poke`` with a ``pokeBack`` (``delay`` from the
wall clock, ``serverTs``, ``treeLeaves / 2``, ``treeId``) and hands every
Socket.IO message to its swarm for the message log. Everything else (counting,
logging, reconnecting) belongs to the swarm object, shared by thousands of
these: a connection holds its transport, its slot number and its state.

``swarm_client_c.py`` is this same file compiled by Cython in pure Python mode,
typed by ``swarm_client_c.pxd``.
"""

from __future__ import annotations

import time
from collections.abc import Generator
from typing import Any

import orjson
import picows.picows
from picows import WSMsgType

from msstorm._fastpath.wire import disconnection as _disconnection
from msstorm._fastpath.wire import send as _send
from msstorm._fastpath.wire import trim as _trim

_TEXT = WSMsgType.TEXT
_OPEN = ord("0")
_CLOSE = ord("1")
_PING = ord("2")
_MESSAGE = ord("4")
_POKE = b'42["poke",'
_JOIN = b"40"
_PONG = b"3"

# Connection states, as the swarm counts them.
OPENING = 0  # WebSocket up, Socket.IO namespace not joined yet
JOINED = 1
CLOSED = 2


class SwarmClient(picows.picows.WSListener):
    """The listener of one swarm connection, in slot ``slot`` of ``swarm``."""

    def __init__(self, swarm: Any, slot: int) -> None:
        self.swarm = swarm
        self.slot = slot
        self.state = OPENING
        self.transport: Any = None

    def on_ws_connected(self, transport: Any) -> None:
        self.transport = transport
        if not _trim(transport):
            self.swarm.trims_refused += 1  # it keeps picows's buffers

    # Standing in for the transport's disconnection future, as a server's Connection does.
    def done(self) -> bool:
        return True

    def __await__(self) -> Generator[Any, None, None]:
        waiting: Generator[Any, None, None] = _disconnection(self.transport, self).__await__()
        return waiting

    def on_ws_frame(self, transport: Any, frame: Any) -> None:
        if frame.msg_type != _TEXT:
            if frame.msg_type == WSMsgType.CLOSE:
                transport.disconnect()
            else:
                self.swarm.log_binary(self.slot, frame.get_payload_as_bytes())
            return
        data = frame.get_payload_as_bytes()
        if not data:
            return
        kind = data[0]
        if kind == _PING:
            transport.send(_TEXT, _PONG)
            self.swarm.lean_soon(transport)  # what a burst made the read buffer grow to
        elif kind == _MESSAGE:
            self.swarm.log_message(self.slot, data)
            if data.startswith(_POKE):
                self.answer(data)
            elif data.startswith(b"40"):
                if self.state == OPENING:
                    self.state = JOINED
                    self.swarm.joined(self)
                    # The handshake's bytes filled the read buffer: give it back now.
                    self.swarm.lean_soon(transport)
            elif data.startswith(b"44"):
                self.swarm.refused(self, data)
                transport.disconnect()
            elif data.startswith(b"41"):
                transport.disconnect()  # the server dropped us from "/": start over
        elif kind == _OPEN:
            transport.send(_TEXT, _JOIN)
        elif kind == _CLOSE:
            transport.disconnect()

    def answer(self, data: bytes) -> None:
        """Answer a poke as the contract says; what cannot be answered is counted."""
        try:
            event = orjson.loads(memoryview(data)[2:])
            poke = event[1]
            ts = poke["ts"]
            answer = {"id": poke["id"], "delay": time.time() * 1000.0 - ts, "serverTs": ts}
        except (orjson.JSONDecodeError, LookupError, TypeError):
            self.swarm.bad_poke(self, data)
            return
        leaves = poke.get("treeLeaves")
        if type(leaves) is int and leaves >= 2:
            answer["treeLeaves"] = leaves // 2
        tree_id = poke.get("treeId")
        if tree_id is not None:
            answer["treeId"] = tree_id
        _send(self.transport, _TEXT, b"42" + orjson.dumps(["pokeBack", answer]))
        self.swarm.answered += 1

    def on_ws_disconnected(self, transport: Any) -> None:
        was = self.state
        self.state = CLOSED
        self.swarm.lost(self, was)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.disconnect()
