"""python-socketio 5.x's ``AsyncServer``, on msstorm's engine.

An application written for python-socketio moves by changing its import and
the lines that serve it::

    import msstorm as socketio              # was: import socketio

    sio = socketio.AsyncServer(cors_allowed_origins="*")

    @sio.event
    async def connect(sid, environ, auth):
        await sio.enter_room(sid, "lobby")

    @sio.on("say")
    async def say(sid, text):
        await sio.emit("said", text, to="lobby", skip_sid=sid)

    await msstorm.serve(sio, host="0.0.0.0", port=5000)           # one process
    msstorm.run("chat:sio", port=5000, workers=4, bus="redis://")  # workers, nodes

What it does not do fails at once with a message saying so (see ``UNSUPPORTED``
and ``AsyncServer.attach``). The rooms and the fan-out are the engine's
(``msstorm.server``); with a bus (``msstorm.run``), ``Relay`` carries what
concerns sockets of other workers.
"""

from __future__ import annotations

import asyncio
import builtins
import inspect
import logging
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

from msstorm._fastpath import codec
from msstorm.cluster.bus import Bus, LocalBus
from msstorm.exceptions import TimeoutError
from msstorm.protocol.errors import ConnectionRefused
from msstorm.protocol.packets import EVENT
from msstorm.server import Server

from .namespace import AsyncNamespace
from .relay import Relay

log = logging.getLogger("msstorm.app")

Handler = Callable[..., Any]
Targets = str | Iterable[str] | None

# python-socketio options msstorm refuses, and why.
UNSUPPORTED = {
    "client_manager": "msstorm joins workers and machines itself: "
    "msstorm.run('module:app', workers=N, bus='redis://...')",
    "json": "msstorm encodes with orjson, in its compiled codec",
    "always_connect": "a connection is accepted once its connect handler has decided",
    "cookie": "msstorm sends no Engine.IO cookie",
    "allow_upgrades": "msstorm always offers the WebSocket upgrade",
    "transports": "msstorm serves both transports, WebSocket and HTTP long-polling",
}
IGNORED = frozenset(  # python-socketio options with no effect here
    {
        "logger",
        "engineio_logger",
        "http_compression",
        "compression_threshold",
        "monitor_clients",
        "cors_credentials",
    }
)


class Reasons:
    """Why a socket left, as python-socketio names it (``sio.reason``)."""

    SERVER_DISCONNECT = "server disconnect"
    CLIENT_DISCONNECT = "client disconnect"
    PING_TIMEOUT = "ping timeout"
    TRANSPORT_CLOSE = "transport close"
    TRANSPORT_ERROR = "transport error"


# The engine's reasons, in python-socketio's words.
_REASONS = {
    "client namespace disconnect": Reasons.CLIENT_DISCONNECT,
    "server namespace disconnect": Reasons.SERVER_DISCONNECT,
    "forced close": Reasons.SERVER_DISCONNECT,
    "server shutting down": Reasons.SERVER_DISCONNECT,
    "ping timeout": Reasons.PING_TIMEOUT,
    "transport close": Reasons.TRANSPORT_CLOSE,
}


class AsyncServer:
    """A Socket.IO server with python-socketio's ``AsyncServer`` API.

    ``ping_interval`` and ``ping_timeout`` are in seconds, as python-socketio's;
    ``max_http_buffer_size`` bounds a message; ``cors_allowed_origins`` lets
    browsers of other origins poll; ``namespaces`` lists namespaces accepted
    with no handler. ``engine`` is the msstorm ``Server`` underneath.
    """

    reason = Reasons

    def __init__(
        self,
        client_manager: Any = None,
        logger: Any = False,
        serializer: str = "default",
        json: Any = None,
        async_handlers: bool = True,
        always_connect: bool = False,
        namespaces: list[str] | str | None = None,
        *,
        async_mode: str | None = None,
        ping_interval: float | tuple[float, float] = 25,
        ping_timeout: float = 20,
        max_http_buffer_size: int = 1_000_000,
        cors_allowed_origins: str | list[str] | None = None,
        connect_timeout: float = 45,
        socketio_path: str = "socket.io",
        **options: Any,
    ) -> None:
        asked = {"client_manager": client_manager, "json": json, **options}
        asked["always_connect"] = always_connect or None
        for name, value in asked.items():
            if value is None or name in IGNORED:
                continue
            why = UNSUPPORTED.get(name)
            if why is None:
                raise TypeError(f"AsyncServer() got an option msstorm does not know: {name!r}")
            raise ValueError(f"AsyncServer({name}=...) is not supported by msstorm: {why}")
        if serializer != "default":
            raise ValueError(
                f"AsyncServer(serializer={serializer!r}) is not supported by msstorm: "
                "it speaks Socket.IO's default parser only (no msgpack)"
            )
        if async_mode is not None:
            raise ValueError(
                f"AsyncServer(async_mode={async_mode!r}) is not supported by msstorm: it serves "
                "its own port (msstorm.serve or msstorm.run), not inside aiohttp, ASGI or WSGI"
            )
        if not async_handlers:
            raise ValueError(
                "AsyncServer(async_handlers=False) is not supported by msstorm: coroutine "
                "handlers always run as tasks"
            )
        if namespaces == "*":
            raise ValueError("AsyncServer(namespaces='*') is not supported: name each namespace")
        if isinstance(ping_interval, tuple):
            ping_interval = ping_interval[0] + ping_interval[1]
        self.engine = Server(
            path="/" + socketio_path.strip("/") + "/",
            ping_interval=round(ping_interval * 1000),
            ping_timeout=round(ping_timeout * 1000),
            max_payload=max_http_buffer_size,
            connect_timeout=round(connect_timeout * 1000),
        )
        self.cors_allowed_origins = cors_allowed_origins
        self.handlers: dict[str, dict[str, Handler]] = {}
        self.namespace_handlers: dict[str, AsyncNamespace] = {}
        self.relay: Relay | None = None
        self._sessions: dict[tuple[str, str], dict[str, Any]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        for name in namespaces or ["/"]:
            self._namespace(name)

    # -- handlers -------------------------------------------------------------

    def on(self, event: str, handler: Handler | None = None, namespace: str | None = None) -> Any:
        """Register a handler: ``@sio.on("event")``, or ``sio.on("event", fn)``.

        ``connect`` gets ``(sid, environ, auth)`` (or ``(sid, environ)``) and refuses
        by returning False or raising ``ConnectionRefusedError``; ``disconnect`` gets
        ``(sid, reason)`` (or ``(sid)``); an event ``(sid, *args)``, its return value
        the ack; ``"*"`` any event without a handler, as ``(event, sid, *args)``.
        """
        namespace = namespace or "/"
        if namespace == "*":
            raise ValueError("catch-all namespaces ('*') are not supported by msstorm")

        def register(fn: Handler) -> Handler:
            self.handlers.setdefault(namespace, {})[event] = fn
            self._bind(namespace, event, fn)
            return fn

        return register(handler) if handler is not None else register

    def event(self, *args: Any, **kwargs: Any) -> Any:
        """``@sio.event`` registers a function under its own name (``namespace=`` too)."""
        if len(args) == 1 and not kwargs and callable(args[0]):
            return self.on(args[0].__name__)(args[0])

        def register(fn: Handler) -> Handler:
            return self.on(fn.__name__, *args, **kwargs)(fn)  # type: ignore[no-any-return]

        return register

    def register_namespace(self, namespace_handler: AsyncNamespace) -> None:
        """Serve a class-based namespace (``AsyncNamespace``) at its ``namespace``."""
        if not isinstance(namespace_handler, AsyncNamespace):
            raise ValueError("Not a valid namespace class for this server")
        namespace_handler._set_server(self)
        name = namespace_handler.namespace
        self.namespace_handlers[name] = namespace_handler
        nsp = self._namespace(name)
        mine = self.handlers.get(name, {})  # the server's own handlers come first
        if namespace_handler.dispatches_itself():
            for event in ("connect", "disconnect"):
                if event not in mine:
                    self._bind(name, event, partial(namespace_handler.trigger_event, event))
        else:
            for attribute in dir(namespace_handler):
                handler = getattr(namespace_handler, attribute)
                if attribute.startswith("on_") and callable(handler) and attribute[3:] not in mine:
                    self._bind(name, attribute[3:], handler)
        if "*" not in mine:
            nsp.fallback = namespace_handler._dispatch

    def _namespace(self, name: str) -> Any:
        nsp = self.engine.namespace(name)
        if "disconnect" not in nsp.handlers:  # sessions end with the socket, handler or not
            self._bind(name, "disconnect", None)
        return nsp

    def _bind(self, namespace: str, event: str, fn: Handler | None) -> None:
        if event == "connect" and fn is not None:
            self.engine.on(event, self._connecting(namespace, fn), namespace=namespace)
        elif event == "disconnect":
            self.engine.on(event, self._leaving(namespace, fn), namespace=namespace)
        elif event == "*":
            self.engine.namespace(namespace).fallback = fn
        elif fn is not None:
            self.engine.on(event, fn, namespace=namespace)

    def _connecting(self, namespace: str, fn: Handler) -> Handler:
        with_auth = _accepts(fn, 3)

        def refusal(exc: BaseException) -> ConnectionRefused:
            # The builtin ConnectionRefusedError, as python-socketio answers it (its
            # own, msstorm.exceptions', is a ConnectionRefused the engine answers).
            return ConnectionRefused("Connection refused by server")

        def decided(result: Any) -> Any:
            if result is False:
                return ConnectionRefused("Connection rejected by server")
            return None

        def connect(sid: str, auth: Any) -> Any:
            environ = self.get_environ(sid, namespace)
            args = (sid, environ, auth or None) if with_auth else (sid, environ)
            try:
                result = fn(*args)
            except ConnectionRefusedError as exc:
                return refusal(exc)
            if inspect.iscoroutine(result):
                return _settle(result, decided, refusal)
            return decided(result)

        return connect

    def _leaving(self, namespace: str, fn: Handler | None) -> Handler:
        with_reason = fn is not None and _accepts(fn, 2)

        def forget(sid: str) -> None:
            self._sessions.pop((namespace, sid), None)

        def disconnect(sid: str, reason: str) -> Any:
            if fn is None:
                forget(sid)
                return None
            why = _REASONS.get(reason, Reasons.TRANSPORT_ERROR)
            try:
                result = fn(sid, why) if with_reason else fn(sid)
            except BaseException:
                forget(sid)
                raise
            if inspect.iscoroutine(result):
                return _then(result, lambda: forget(sid))
            forget(sid)
            return result

        return disconnect

    # -- emitting -------------------------------------------------------------

    async def emit(
        self,
        event: str,
        data: Any = None,
        to: Targets = None,
        room: Targets = None,
        skip_sid: Targets = None,
        namespace: str | None = None,
        callback: Handler | None = None,
        ignore_queue: bool = False,
    ) -> None:
        """Emit ``event`` to a sid or a room (``to``, or ``room``), to a list of rooms
        (each socket once), or to every socket of the namespace, less ``skip_sid``.
        A tuple ``data`` is several arguments. ``callback`` gets each recipient's ack.
        On a cluster, it reaches the members of every worker and node."""
        namespace = namespace or "/"
        target = to if to is not None else room
        args = _arguments(data)
        if isinstance(target, (set, frozenset, tuple)):
            target = list(target)
        if isinstance(skip_sid, (set, frozenset, tuple)):
            skip_sid = list(skip_sid)
        engine = self.engine
        if callback is not None:
            if namespace in engine.namespaces:
                engine.emit(
                    event,
                    *args,
                    to=target,
                    skip_sid=skip_sid,
                    namespace=namespace,
                    callback=callback,
                )
            if self.relay is not None and not self._here_only(target, namespace):
                self.relay.emit_with_callback(namespace, event, args, target, skip_sid, callback)
        else:
            frames = codec.encode(EVENT, namespace, [event, *args])
            engine.emit_frames(frames, target, skip_sid, namespace)
            if self.relay is not None and not self._here_only(target, namespace):
                self.relay.emit(namespace, frames, target, skip_sid)
        waiting = engine.sent()
        if waiting is not None:
            await waiting

    async def send(
        self,
        data: Any,
        to: Targets = None,
        room: Targets = None,
        skip_sid: Targets = None,
        namespace: str | None = None,
        callback: Handler | None = None,
        ignore_queue: bool = False,
    ) -> None:
        """``emit("message", data, ...)``."""
        await self.emit("message", data, to, room, skip_sid, namespace, callback)

    async def call(
        self,
        event: str,
        data: Any = None,
        to: str | None = None,
        sid: str | None = None,
        namespace: str | None = None,
        timeout: float = 60,
        ignore_queue: bool = False,
    ) -> Any:
        """Emit to one socket and wait for its ack: its one value, a tuple of several,
        or None; ``msstorm.exceptions.TimeoutError`` after ``timeout`` seconds."""
        target = to or sid
        if target is None:
            raise ValueError("Cannot use call() to broadcast.")
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[tuple[Any, ...]] = loop.create_future()

        def answered(*args: Any) -> None:
            if not answer.done():
                answer.set_result(args)

        await self.emit(event, data, to=target, namespace=namespace, callback=answered)
        try:
            args = await asyncio.wait_for(answer, timeout)
        except builtins.TimeoutError:
            raise TimeoutError() from None
        finally:
            if self.relay is not None:
                self.relay.forget_callback(answered)
        return args if len(args) > 1 else args[0] if args else None

    def _here_only(self, target: Targets, namespace: str) -> bool:
        """Whether an emit reaches no socket of another worker: it is to one socket
        of this worker (no room of that name here)."""
        nsp = self.engine.namespaces.get(namespace)
        return (
            isinstance(target, str)
            and nsp is not None
            and target in nsp.sockets
            and target not in nsp.rooms.members
        )

    # -- rooms ----------------------------------------------------------------

    async def enter_room(self, sid: str, room: str, namespace: str | None = None) -> None:
        """Put a socket in a room (on whichever worker it is connected)."""
        namespace = namespace or "/"
        if not self.engine.enter_room(sid, room, namespace) and self.relay is not None:
            self.relay.publish("enter", namespace, sid=sid, room=room)

    async def leave_room(self, sid: str, room: str, namespace: str | None = None) -> None:
        """Take a socket out of a room."""
        namespace = namespace or "/"
        local = self._is_local(sid, namespace)
        self.engine.leave_room(sid, room, namespace)
        if not local and self.relay is not None:
            self.relay.publish("leave", namespace, sid=sid, room=room)

    async def close_room(self, room: str, namespace: str | None = None) -> None:
        """Take every socket out of a room, on every worker."""
        namespace = namespace or "/"
        self.engine.close_room(room, namespace)
        if self.relay is not None:
            self.relay.publish("close", namespace, room=room)

    def rooms(self, sid: str, namespace: str | None = None) -> list[str]:
        """The rooms of a socket of this worker, its own sid's first."""
        return self.engine.rooms(sid, namespace or "/")

    def _is_local(self, sid: str, namespace: str) -> bool:
        nsp = self.engine.namespaces.get(namespace)
        return nsp is not None and (sid in nsp.sockets or sid in nsp.leaving)

    # -- sessions -------------------------------------------------------------

    async def get_session(self, sid: str, namespace: str | None = None) -> dict[str, Any]:
        """The user session of a socket of this worker (a dict, created empty)."""
        namespace = namespace or "/"
        if not self._is_local(sid, namespace):
            raise KeyError(f"Session not found: {sid!r} is not connected to this worker")
        return self._sessions.setdefault((namespace, sid), {})

    async def save_session(
        self, sid: str, session: dict[str, Any], namespace: str | None = None
    ) -> None:
        """Store the user session of a socket of this worker."""
        namespace = namespace or "/"
        if not self._is_local(sid, namespace):
            raise KeyError(f"Session not found: {sid!r} is not connected to this worker")
        self._sessions[(namespace, sid)] = session

    def session(self, sid: str, namespace: str | None = None) -> _SessionScope:
        """``async with sio.session(sid) as session:``, saved at the end of the block."""
        return _SessionScope(self, sid, namespace)

    # -- sockets --------------------------------------------------------------

    async def disconnect(
        self, sid: str, namespace: str | None = None, ignore_queue: bool = False
    ) -> None:
        """Disconnect a socket from a namespace (on whichever worker it is)."""
        namespace = namespace or "/"
        if not self.engine.disconnect(sid, namespace) and self.relay is not None:
            self.relay.publish("disconnect", namespace, sid=sid)

    def transport(self, sid: str, namespace: str | None = None) -> str | None:
        """``"websocket"`` or ``"polling"`` (None for a socket not of this worker)."""
        return self.engine.transport(sid, namespace or "/")

    def get_environ(self, sid: str, namespace: str | None = None) -> dict[str, Any] | None:
        """What msstorm knows of a socket's connection, WSGI-style: ``REMOTE_ADDR``,
        and the transport (it keeps no HTTP headers per connection: use ``auth``)."""
        nsp = self.engine.namespaces.get(namespace or "/")
        conn = nsp.sockets.get(sid) if nsp is not None else None
        if conn is None:
            return None
        address = conn.peer or ""
        transport = conn.transport
        if not address and transport is not None:
            peer = transport.underlying_transport.get_extra_info("peername")
            address = peer[0] if peer else ""
        return {
            "REMOTE_ADDR": address,
            "msstorm.transport": "websocket" if transport is not None else "polling",
        }

    async def shutdown(self) -> None:
        """Close every connection, and leave the cluster."""
        self.engine.close_all("server shutting down")
        self.engine.delivery.cancel()
        if self.relay is not None:
            await self.relay.close()

    def start_background_task(
        self, target: Handler, *args: Any, **kwargs: Any
    ) -> asyncio.Task[Any]:
        """Run ``target(*args, **kwargs)`` (a coroutine function) as a task."""
        task: asyncio.Task[Any] = asyncio.ensure_future(target(*args, **kwargs))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def sleep(self, seconds: float = 0) -> None:
        await asyncio.sleep(seconds)

    # -- serving --------------------------------------------------------------

    async def join(self, bus: Bus) -> None:
        """Act as one server with the other workers on ``bus`` (``msstorm.run`` does it;
        a ``LocalBus``, a cluster of one, needs no relay)."""
        await bus.start()
        if not isinstance(bus, LocalBus):
            self.relay = Relay(self, bus)

    def attach(self, app: Any, socketio_path: str = "socket.io") -> None:
        raise NotImplementedError(
            "msstorm does not mount in aiohttp, ASGI or WSGI applications: it serves its own "
            "port; use `await msstorm.serve(sio, host=..., port=...)` or "
            "`msstorm.run('module:sio', ...)`"
        )

    async def handle_request(self, *args: Any, **kwargs: Any) -> Any:
        self.attach(None)

    def instrument(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(
            "AsyncServer.instrument() is not supported: Socket.IO's admin UI is served by "
            "msstorm-server --admin-auth (or $MSSTORM_ADMIN_AUTH)"
        )


class _SessionScope:
    def __init__(self, server: AsyncServer, sid: str, namespace: str | None) -> None:
        self.server = server
        self.sid = sid
        self.namespace = namespace
        self.session: dict[str, Any] = {}

    async def __aenter__(self) -> dict[str, Any]:
        self.session = await self.server.get_session(self.sid, self.namespace)
        return self.session

    async def __aexit__(self, *exc_info: object) -> None:
        await self.server.save_session(self.sid, self.session, self.namespace)


def _arguments(data: Any) -> list[Any]:
    """python-socketio's rule: None is no argument, a tuple several, anything else one."""
    if data is None:
        return []
    if type(data) is tuple:
        return list(data)
    return [data]


def _accepts(fn: Handler, count: int) -> bool:
    """Whether ``fn`` takes ``count`` positional arguments."""
    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return True
    positional = 0
    for parameter in parameters:
        if parameter.kind == parameter.VAR_POSITIONAL:
            return True
        if parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD):
            positional += 1
    return positional >= count


async def _settle(
    coroutine: Any, decided: Callable[[Any], Any], refusal: Callable[[BaseException], Any]
) -> Any:
    try:
        result = await coroutine
    except ConnectionRefusedError as exc:
        return refusal(exc)
    return decided(result)


async def _then(coroutine: Any, after: Callable[[], None]) -> Any:
    try:
        return await coroutine
    finally:
        after()
