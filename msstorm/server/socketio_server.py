"""The Socket.IO v5 server: namespaces, events, acks both ways, binary packets.

The public API, in the spirit of python-socketio::

    server = Server()

    @server.on("connect")
    def connect(sid, auth):            # return False or raise ConnectionRefused to refuse
        server.emit("welcome", to=sid)

    @server.on("message")
    def message(sid, *args):           # a return value becomes the ack's arguments
        return args

Handlers may be plain functions (the fast path) or coroutines (run as one Task
per call). Frames emitted to a socket while its connect handler is deciding are
held back until the CONNECT answer has been sent.

A socket is in the room named by its sid, and in those it enters
(``enter_room``); ``emit(..., to=room or [rooms], skip_sid=...)`` encodes the
packet once and hands it to each member once, a slice at a time (``Delivery``).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Iterable
from functools import partial
from inspect import iscoroutine
from typing import Any

from msstorm._fastpath import Session, codec, send_frame
from msstorm.protocol.errors import ConnectionRefused
from msstorm.protocol.packets import (
    ACK,
    BINARY_ACK,
    BINARY_EVENT,
    CONNECT,
    CONNECT_ERROR,
    DISCONNECT,
    EVENT,
)

from .delivery import Delivery
from .endpoint import HANDLER_FAILED, Endpoint
from .ids import new_sid
from .rooms import Rooms

log = logging.getLogger("msstorm.server")

Handler = Callable[..., Any]
Targets = str | Iterable[str] | None  # a sid or a room, several, or None: the namespace


class Namespace:
    """A namespace's handlers and the sockets connected to it.

    ``sockets`` maps each sid to its connection (from the CONNECT on, also while
    the connect handler decides); ``members`` lists the accepted sids in an
    order that allows a uniform random pick. ``leaving`` keeps the rooms of a
    socket that has gone while its disconnect handler runs.
    """

    __slots__ = (
        "_where",
        "fallback",
        "handlers",
        "leaving",
        "members",
        "name",
        "rooms",
        "sockets",
        "takes_ack",
    )

    def __init__(self, name: str) -> None:
        self.name = name
        self.handlers: dict[str, Handler] = {}
        self.takes_ack: set[str] = set()  # events whose handler gets an ``ack`` argument
        self.sockets: dict[str, Any] = {}  # sid -> Connection
        self.members: list[str] = []
        self._where: dict[str, int] = {}  # sid -> its position in members
        self.rooms = Rooms()
        self.leaving: dict[str, list[str]] = {}
        # Called as ``fallback(event, sid, *args)`` for events with no handler.
        self.fallback: Handler | None = None

    def add_member(self, sid: str) -> None:
        self._where[sid] = len(self.members)
        self.members.append(sid)

    def remove_member(self, sid: str) -> None:
        position = self._where.pop(sid, None)
        if position is None:
            return
        last = self.members.pop()
        if last != sid:  # move the last one into the hole
            self.members[position] = last
            self._where[last] = position

    def pick(self, k: int) -> list[str]:
        """``k`` sids drawn uniformly at random, distinct when there are enough."""
        members = self.members
        n = len(members)
        if n == 0:
            return []
        if k == 1:  # a unicast's case
            return [members[random.randrange(n)]]
        if k == 2 and n >= 2:  # the tree's case, without random.sample's set-up
            first = random.randrange(n)
            second = random.randrange(n - 1)
            return [members[first], members[second + 1 if second >= first else second]]
        if n >= k:
            return random.sample(members, k)
        return [random.choice(members) for _ in range(k)]


class Server(Endpoint):
    """Socket.IO v5 at ``path`` (``/socket.io/`` by default).

    Options are Socket.IO's, in milliseconds and bytes: ``ping_interval``,
    ``ping_timeout``, ``max_payload``, ``connect_timeout``. Namespace ``/``
    always exists; others exist once named by ``namespace()`` or ``on()``,
    and a CONNECT to any other is refused with ``Invalid namespace``.
    """

    session_class = Session
    # ``tap``: set it to an object with ``feed(conn, frame) -> bool`` to take the
    # text frames of clients joined to "/" before they are decoded (a fast path
    # for one hot event; it must return False for anything it does not handle
    # completely, and that frame then takes the generic path).

    def __init__(self, *, path: str = "/socket.io/", **options: int) -> None:
        super().__init__(path, **options)
        self.namespaces: dict[str, Namespace] = {"/": Namespace("/")}
        self._tasks: set[asyncio.Task[Any]] = set()
        self.delivery = Delivery(send_frame)

    def intervals(self) -> tuple[int, ...]:
        return (*super().intervals(), self.config.connect_timeout)

    # -- public API -----------------------------------------------------------

    def namespace(self, name: str) -> Namespace:
        """The namespace called ``name``, created if needed."""
        if not name.startswith("/"):
            raise ValueError(f"a namespace starts with '/': {name!r}")
        nsp = self.namespaces.get(name)
        if nsp is None:
            nsp = self.namespaces[name] = Namespace(name)
        return nsp

    def on(
        self,
        event: str,
        handler: Handler | None = None,
        *,
        namespace: str = "/",
        takes_ack: bool = False,
    ) -> Any:
        """Register a handler; usable as ``@server.on("event", namespace="/x")``.

        ``connect`` handlers get ``(sid, auth)``, ``disconnect`` handlers
        ``(sid, reason)``, event handlers ``(sid, *args)`` and their return
        value answers the client's ack. With ``takes_ack=True`` an event handler
        gets ``ack=`` instead: a function sending the ack, or None when the
        client asked for none (so it can answer another way).
        """
        nsp = self.namespace(namespace)

        def register(fn: Handler) -> Handler:
            nsp.handlers[event] = fn
            if takes_ack:
                nsp.takes_ack.add(event)
            else:
                nsp.takes_ack.discard(event)
            return fn

        return register(handler) if handler is not None else register

    def emit(
        self,
        event: str,
        *args: Any,
        to: Targets = None,
        skip_sid: Targets = None,
        namespace: str = "/",
        callback: Handler | None = None,
    ) -> int:
        """Send an event to a socket or a room (``to``, a sid or a room name), to
        several rooms (a list: each socket once), or to the whole namespace (None),
        less the sockets ``skip_sid`` names (one sid or several).

        The packet is encoded once whatever the number of recipients, and sent a
        slice at a time (``sent()`` tells when all of it is). ``callback``
        receives the ack arguments of each recipient. Returns the number of
        sockets it is sent to.
        """
        nsp = self.namespaces.get(namespace)
        if nsp is None:
            raise ValueError(f"unknown namespace {namespace!r}")
        data = [event, *args]
        if type(to) is str and skip_sid is None:  # one socket, the common case
            conn = nsp.sockets.get(to)
            if conn is not None and to not in nsp.rooms.members:
                ack_id = conn.session.expect_ack(callback) if callback is not None else None
                self.delivery.send(codec.encode(EVENT, namespace, data, ack_id), [conn])
                return 1
        if callback is None:
            return self.emit_frames(codec.encode(EVENT, namespace, data), to, skip_sid, namespace)
        conns = nsp.rooms.reach(nsp.sockets, _names(to), _names(skip_sid) or ())
        for conn in conns:  # each recipient its own ack id
            ack_id = conn.session.expect_ack(callback)
            self.delivery.send(codec.encode(EVENT, namespace, data, ack_id), [conn])
        return len(conns)

    def emit_frames(
        self, frames: Any, to: Targets = None, skip_sid: Targets = None, namespace: str = "/"
    ) -> int:
        """``emit`` of a packet already encoded (what the codec's ``encode`` returned),
        as another worker of a cluster sends it; 0 for an unknown namespace."""
        nsp = self.namespaces.get(namespace)
        if nsp is None:
            return 0
        conns = nsp.rooms.reach(nsp.sockets, _names(to), _names(skip_sid) or ())
        if conns:
            self.delivery.send(frames, conns)
        return len(conns)

    def sent(self) -> Any:
        """An awaitable that resolves once everything emitted so far has been handed
        to its sockets (None when it already has)."""
        return self.delivery.sent()

    # -- rooms ----------------------------------------------------------------

    def enter_room(self, sid: str, room: str, namespace: str = "/") -> bool:
        """Put a socket in a room; False if it is not connected to the namespace."""
        nsp = self.namespaces.get(namespace)
        conn = nsp.sockets.get(sid) if nsp is not None else None
        if conn is None or nsp is None:
            return False
        if room != sid:  # its own room it is always in
            nsp.rooms.enter(sid, conn, room)
        return True

    def leave_room(self, sid: str, room: str, namespace: str = "/") -> bool:
        """Take a socket out of a room; False if it was not in it."""
        nsp = self.namespaces.get(namespace)
        return nsp is not None and nsp.rooms.leave(sid, room)

    def close_room(self, room: str, namespace: str = "/") -> list[str]:
        """Take every socket out of a room; their sids."""
        nsp = self.namespaces.get(namespace)
        return nsp.rooms.close(room) if nsp is not None else []

    def rooms(self, sid: str, namespace: str = "/") -> list[str]:
        """The rooms of a socket, its own first (and, while its disconnect handler
        runs, those it was in); [] if it is not connected."""
        nsp = self.namespaces.get(namespace)
        if nsp is None:
            return []
        if sid in nsp.sockets:
            return [sid, *nsp.rooms.of(sid)]
        leaving = nsp.leaving.get(sid)
        return [sid, *leaving] if leaving is not None else []

    def transport(self, sid: str, namespace: str = "/") -> str | None:
        """``"websocket"`` or ``"polling"``: how the socket's connection carries it now."""
        nsp = self.namespaces.get(namespace)
        conn = nsp.sockets.get(sid) if nsp is not None else None
        if conn is None:
            return None
        return "websocket" if conn.transport is not None else "polling"

    async def call(
        self, event: str, *args: Any, to: str, namespace: str = "/", timeout: float = 60.0
    ) -> list[Any]:
        """Emit to one socket and wait for its ack; returns the ack's arguments."""
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()

        def answered(*values: Any) -> None:
            if not future.done():
                future.set_result(list(values))

        if not self.emit(event, *args, to=to, namespace=namespace, callback=answered):
            raise LookupError(f"no socket {to!r} in namespace {namespace!r}")
        return await asyncio.wait_for(future, timeout)

    def disconnect(self, sid: str, namespace: str = "/") -> bool:
        """Disconnect a socket from a namespace; False if it was not connected."""
        nsp = self.namespaces.get(namespace)
        conn = nsp.sockets.get(sid) if nsp is not None else None
        if conn is None or nsp is None:
            return False
        conn.session.leave(namespace)
        conn.send_text(codec.encode(DISCONNECT, namespace))
        self._left(nsp, sid, "server namespace disconnect")
        return True

    def close(
        self, sid: str, namespace: str = "/", reason: str = "forced close", code: int = 1000
    ) -> bool:
        """Close the whole connection of a socket (all its namespaces) with WebSocket
        close ``code``; False if ``sid`` is not connected."""
        nsp = self.namespaces.get(namespace)
        conn = nsp.sockets.get(sid) if nsp is not None else None
        if conn is None:
            return False
        conn.close(code, reason)
        return True

    def sids(self, namespace: str = "/") -> list[str]:
        """The sids connected to a namespace."""
        nsp = self.namespaces.get(namespace)
        return list(nsp.sockets) if nsp is not None else []

    # -- Endpoint: events from connections ------------------------------------

    def handle(self, conn: Any, packet: Any) -> None:
        kind = packet.type
        if kind == EVENT or kind == BINARY_EVENT:
            self._event(conn, packet)
        elif kind == ACK or kind == BINARY_ACK:
            callback = conn.session.take_ack(packet.id)
            if callback is None:
                self.stats.ignored += 1  # nobody waits for that ack (any more)
            else:
                self.run_handler(callback, *packet.data)
        elif kind == CONNECT:
            self._connect(conn, packet)
        elif kind == DISCONNECT:
            sid = conn.session.leave(packet.namespace)
            self._left(self.namespaces[packet.namespace], sid, "client namespace disconnect")

    def lost(self, conn: Any, reason: str) -> None:
        namespaces = conn.session.namespaces
        for name, sid in namespaces.items():
            self._left(self.namespaces[name], sid, reason)
        namespaces.clear()

    # -- events ---------------------------------------------------------------

    def _event(self, conn: Any, packet: Any) -> None:
        namespace = packet.namespace
        data = packet.data
        nsp = self.namespaces[namespace]
        handler = nsp.handlers.get(data[0])
        sid = conn.session.namespaces[namespace]
        if handler is None:
            if nsp.fallback is None:
                self.stats.ignored += 1
                return
            handler = partial(nsp.fallback, data[0])  # ``fallback(event, sid, *args)``
        if data[0] in self.namespaces[namespace].takes_ack:
            ack_id = packet.id
            ack = None if ack_id is None else lambda *args: self._ack(conn, namespace, ack_id, args)
            self._spawn_if_coroutine(self.run_handler(handler, sid, *data[1:], ack=ack))
            return
        result = self.run_handler(handler, sid, *data[1:])
        if iscoroutine(result):
            self._spawn(result, lambda value: self._ack(conn, namespace, packet.id, value))
        elif packet.id is not None and result is not HANDLER_FAILED:
            self._ack(conn, namespace, packet.id, result)

    def _ack(self, conn: Any, namespace: str, ack_id: int | None, result: Any) -> None:
        if ack_id is None or conn.closed or result is HANDLER_FAILED:
            return
        if result is None:
            args: list[Any] = []
        elif type(result) is tuple:
            args = list(result)
        else:
            args = [result]
        conn.send_frames(codec.encode(ACK, namespace, args, ack_id))

    # -- namespace membership -------------------------------------------------

    def _connect(self, conn: Any, packet: Any) -> None:
        name = packet.namespace
        nsp = self.namespaces.get(name)
        if nsp is None:
            self.stats.refused["InvalidNamespace"] += 1
            conn.send_text(codec.encode(CONNECT_ERROR, name, {"message": "Invalid namespace"}))
            return
        sid = new_sid()
        # Registered before the handler runs, so that it can emit to the new sid;
        # the session joins only once the CONNECT is accepted.
        nsp.sockets[sid] = conn
        handler = nsp.handlers.get("connect")
        if handler is None:
            self._decided(conn, nsp, sid, None)
            return
        conn.hold()
        auth = packet.data if packet.data is not None else {}
        try:
            result = handler(sid, auth)
        except Exception as exc:
            result = self._refusal(exc)
        if iscoroutine(result):
            self._spawn(
                result,
                lambda value: self._decided(conn, nsp, sid, value),
                lambda exc: self._decided(conn, nsp, sid, self._refusal(exc)),
            )
        else:
            self._decided(conn, nsp, sid, result)

    def _refusal(self, exc: BaseException) -> ConnectionRefused:
        if isinstance(exc, ConnectionRefused):
            return exc
        self.stats.handler_errors += 1
        log.error("connect handler raised", exc_info=exc)
        return ConnectionRefused("Internal server error")

    def _decided(self, conn: Any, nsp: Namespace, sid: str, result: Any) -> None:
        if conn.closed:
            nsp.sockets.pop(sid, None)
            nsp.rooms.leave_all(sid)
            return
        if result is False:
            result = ConnectionRefused("Connection refused")
        if isinstance(result, ConnectionRefused):
            nsp.sockets.pop(sid, None)
            nsp.rooms.leave_all(sid)
            conn.held = None
            conn.send_text(codec.encode(CONNECT_ERROR, nsp.name, result.payload()))
            return
        conn.session.join(nsp.name, sid)
        nsp.add_member(sid)
        answer = codec.encode(CONNECT, nsp.name, {"sid": sid})
        if conn.held is not None:
            conn.held.insert(0, answer)
            conn.release()
        else:
            conn.send_text(answer)

    def _left(self, nsp: Namespace, sid: str | None, reason: str) -> None:
        if sid is None or nsp.sockets.pop(sid, None) is None:
            return
        nsp.remove_member(sid)
        rooms = nsp.rooms.leave_all(sid)
        handler = nsp.handlers.get("disconnect")
        if handler is None:
            return
        # Its rooms stay readable (``rooms(sid)``) until the handler has returned.
        nsp.leaving[sid] = rooms
        result = self.run_handler(handler, sid, reason)
        if iscoroutine(result):
            self._spawn(
                result,
                lambda _: self._forget_leaving(nsp, sid),
                lambda exc: self._gone(nsp, sid, exc),
            )
        else:
            nsp.leaving.pop(sid, None)

    def _forget_leaving(self, nsp: Namespace, sid: str) -> None:
        nsp.leaving.pop(sid, None)

    def _gone(self, nsp: Namespace, sid: str, exc: BaseException) -> None:
        nsp.leaving.pop(sid, None)
        self.stats.handler_errors += 1
        log.error("disconnect handler raised", exc_info=exc)

    # -- running handlers -----------------------------------------------------

    def _spawn_if_coroutine(self, result: Any) -> None:
        if iscoroutine(result):
            self._spawn(result, None)

    def _spawn(
        self,
        coroutine: Any,
        on_result: Callable[[Any], None] | None,
        on_error: Callable[[BaseException], None] | None = None,
    ) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)

        def finished(task: asyncio.Task[Any]) -> None:
            self._tasks.discard(task)
            if task.cancelled():
                return
            exc = task.exception()
            if exc is not None:
                if on_error is not None:
                    on_error(exc)
                else:
                    self.stats.handler_errors += 1
                    log.error("handler raised", exc_info=exc)
            elif on_result is not None:
                on_result(task.result())

        task.add_done_callback(finished)


def _names(targets: Targets) -> Iterable[str] | None:
    """A sid, a room or several as an iterable of names (None stays None)."""
    if targets is None or isinstance(targets, str):
        return None if targets is None else (targets,)
    return targets
