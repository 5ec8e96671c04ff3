"""The listening socket: one port, several endpoints, HTTP and WebSocket.

Every connection on the port starts in the HTTP front (``front.py``). A request
for Engine.IO's WebSocket transport goes to picows, which asks ``Router.route``
for its listener: a new ``Connection``, the long-polling session that is
upgrading, or one that closes a second WebSocket for that session. Every other
request comes to ``Router.serve``: ``/healthz``, ``/metrics``, long-polling on
an endpoint's path, CORS preflights; anything else gets Engine.IO's HTTP error
JSON or a 404.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
from collections.abc import Awaitable, Callable, Iterable, Sequence
from http import HTTPStatus
from typing import Any

import orjson
from picows import (
    WSAutoPingStrategy,
    WSUpgradeRequest,
    WSUpgradeResponse,
    WSUpgradeResponseWithListener,
)
from picows.picows import WSProtocol  # type: ignore[attr-defined]  # not in its stub

from msstorm._fastpath import Connection
from msstorm._fastpath.wire import refusal
from msstorm.protocol.engineio import parse_handshake
from msstorm.protocol.errors import HandshakeError
from msstorm.protocol.http import Request

from . import ids, metrics
from .endpoint import Endpoint
from .front import Front, HttpConnection
from .handoff import Handoff
from .heartbeat import Heartbeat, resolution_for
from .limits import AddressLimit
from .polling import PollingConnection, TurnedAway

log = logging.getLogger("msstorm.server")


class _NoParserErrors(logging.Filter):
    """picows logs each malformed frame at ERROR; a hostile peer must not flood the
    log with them (the endpoint counts them in its stats instead)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("WS parser error")


# picows would give every connection a child logger unless handed an adapter.
_picows_logger = logging.getLogger("msstorm.picows")
_picows_logger.addFilter(_NoParserErrors())
# picows logs every connection at INFO: a million lines for a million clients.
_picows_logger.setLevel(logging.WARNING)
_PICOWS_LOG = logging.LoggerAdapter(_picows_logger, {})
_JSON = {"Content-Type": "application/json"}
JSON = "application/json"
HEALTH_PATH = "/healthz"
METRICS_PATH = "/metrics"
TRANSPORTS = ("polling", "websocket")


class Cors:
    """Cross-origin rules for browsers: ``origins`` is ``"*"`` or the allowed ones."""

    def __init__(self, origins: str | Sequence[str] | None) -> None:
        if isinstance(origins, str):
            origins = [o.strip() for o in origins.split(",") if o.strip()]
        self.origins = frozenset(origins or ())
        self.anyone = "*" in self.origins

    def headers(self, request: Request) -> list[tuple[str, str]]:
        """What an answer to ``request`` carries for the browser."""
        origin = request.headers.get("origin")
        if origin is None or not self.origins:
            return []
        if self.anyone:
            return [("Access-Control-Allow-Origin", "*")]
        if origin not in self.origins:
            return []
        return [
            ("Access-Control-Allow-Origin", origin),
            ("Access-Control-Allow-Credentials", "true"),
            ("Vary", "Origin"),
        ]

    def preflight(self, request: Request) -> list[tuple[str, str]] | None:
        """The answer's headers to an allowed OPTIONS preflight, else None."""
        headers = self.headers(request)
        if not headers:
            return None
        asked = request.headers.get("access-control-request-headers")
        headers += [
            ("Access-Control-Allow-Methods", "GET, POST, OPTIONS"),
            ("Access-Control-Max-Age", "86400"),
        ]
        if asked:
            headers.append(("Access-Control-Allow-Headers", asked))
        return headers


class Router:
    """Sends each request on the port to what its path names."""

    def __init__(
        self,
        endpoints: Iterable[Endpoint],
        extra_health: Callable[[], dict[str, Any]] | None = None,
        extra_metrics: Callable[[], Awaitable[list[metrics.Family]]] | None = None,
        cors: str | Sequence[str] | None = None,
    ) -> None:
        self.extra_health = extra_health
        self.extra_metrics = extra_metrics
        self.cors = Cors(cors)
        self.endpoints: dict[str, Endpoint] = {}
        for endpoint in endpoints:
            if endpoint.path in self.endpoints:
                raise ValueError(f"two endpoints at {endpoint.path}")
            self.endpoints[endpoint.path] = endpoint
        self._tasks: set[asyncio.Task[Any]] = set()
        self.handoff: Handoff | None = None  # set by serve() for a worker of a node

    def endpoint(self, path: str) -> Endpoint | None:
        return self.endpoints.get(path if path.endswith("/") else path + "/")

    # -- WebSocket upgrades (picows asks) ------------------------------------------

    def route(self, request: WSUpgradeRequest) -> Any:
        path, _, query = request.path.decode("latin-1").partition("?")
        endpoint = self.endpoint(path)
        if endpoint is None:
            return None  # picows answers 404
        try:
            handshake = parse_handshake(request.method, query, ("websocket",))
            session = None
            if handshake.sid is not None:
                session = endpoint.polling.get(handshake.sid)
                if session is None:
                    raise HandshakeError(HandshakeError.UNKNOWN_SID)
            if request.headers.get("upgrade", "").lower() != "websocket":
                raise HandshakeError(HandshakeError.BAD_REQUEST)
            if session is None:
                return Connection(endpoint)  # a new session
            if not session.upgradable():
                # One upgrade per session: this WebSocket opens, then is closed.
                endpoint.stats.refused["HandshakeError"] += 1
                return TurnedAway()
            return session  # the upgrade: the polling session listens to its WebSocket
        except HandshakeError as exc:
            endpoint.stats.refused["HandshakeError"] += 1
            return _response(exc.status, {"code": exc.code, "message": exc.message})

    # -- plain HTTP requests (the front asks) --------------------------------------

    def serve(self, http: HttpConnection, request: Request) -> None:
        path = request.path
        if path == HEALTH_PATH:
            http.respond(HTTPStatus.OK, orjson.dumps(self.health()), JSON)
            return
        if path == METRICS_PATH:
            self._spawn(self._metrics(http))
            return
        endpoint = self.endpoint(path)
        if endpoint is None:
            http.respond(HTTPStatus.NOT_FOUND, b"Not Found")
            return
        headers = self.cors.headers(request)
        if request.method == "OPTIONS":
            preflight = self.cors.preflight(request)
            if preflight is not None:
                http.respond(HTTPStatus.NO_CONTENT, b"", headers=preflight)
                return
        try:
            handshake = parse_handshake(request.method, request.query, TRANSPORTS)
            if handshake.transport == "websocket":
                raise HandshakeError(HandshakeError.BAD_REQUEST)  # not a GET upgrade
            if handshake.sid is None:
                PollingConnection(endpoint).start(http, headers)
                return
            session = endpoint.polling.get(handshake.sid)
            if session is None:
                raise HandshakeError(HandshakeError.UNKNOWN_SID)
            session.request(http, request, headers)
        except HandshakeError as exc:
            endpoint.stats.refused["HandshakeError"] += 1
            body = orjson.dumps({"code": exc.code, "message": exc.message})
            http.respond(exc.status, body, JSON, headers)

    async def _metrics(self, http: HttpConnection) -> None:
        if self.extra_metrics is not None:
            families = await self.extra_metrics()
        else:
            families = self.families()
        http.respond(HTTPStatus.OK, metrics.render(families).encode(), metrics.CONTENT_TYPE)

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def families(self) -> list[metrics.Family]:
        """What this listener counts, for /metrics."""
        families = metrics.server_families(self.endpoints) + metrics.trim_families(refusal())
        if self.handoff is not None:
            families += metrics.handoff_families(self.handoff)
        return families

    def health(self) -> dict[str, Any]:
        health = {
            "status": "ok",
            "pid": os.getpid(),
            "connections": sum(e.stats.connections for e in self.endpoints.values()),
            "endpoints": {path: e.stats.as_dict() for path, e in self.endpoints.items()},
            "trim": trim_health(),
        }
        if self.extra_health is not None:
            health.update(self.extra_health())
        return health


def trim_health() -> dict[str, Any]:
    """Whether picows's per-connection state is trimmed here, and if not, why."""
    reason = refusal()
    if reason is None:
        return {"active": True}
    return {"active": False, "reason": f"{reason}: each connection keeps about 4 KiB more"}


def _response(status: int, body: dict[str, Any]) -> WSUpgradeResponseWithListener:
    payload = orjson.dumps(body)
    if status >= 400:
        response = WSUpgradeResponse.create_error_response(status, payload, _JSON)
    else:
        response = WSUpgradeResponse.create_ok_response(payload, _JSON)
    return WSUpgradeResponseWithListener(response, None)


class Listener:
    """A listening port and the endpoints it serves; ``close()`` ends it all."""

    def __init__(
        self, server: asyncio.Server, router: Router, heartbeat: Heartbeat, front: Front
    ) -> None:
        self.server = server
        self.router = router
        self.heartbeat = heartbeat
        self.front = front

    @property
    def port(self) -> int:
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    def stop_accepting(self) -> None:
        """No new connection; those open carry on."""
        self.server.close()

    def close(self, reason: str = "server shutting down") -> None:
        """Stop accepting and close every connection."""
        self.server.close()
        if self.front.handoff is not None:
            self.front.handoff.close()
        for endpoint in self.router.endpoints.values():
            endpoint.close_all(reason)
        self.heartbeat.stop()

    async def wait_closed(self) -> None:
        await self.server.wait_closed()

    async def __aenter__(self) -> Listener:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()
        await self.wait_closed()


async def serve(
    *endpoints: Endpoint,
    host: str = "127.0.0.1",
    port: int = 3000,
    reuse_port: bool = False,
    backlog: int = 4096,
    handshake_timeout: float = 10.0,
    health: Callable[[], dict[str, Any]] | None = None,
    metrics: Callable[[], Awaitable[list[Any]]] | None = None,
    cors_origin: str | Sequence[str] | None = None,
    handoff_dir: str | None = None,
    max_per_address: int = 0,
    limit_loopback: bool = False,
) -> Listener:
    """Listen on ``host:port`` and serve the endpoints there until closed.

    ``port=0`` picks a free port; ``listener.port`` tells which. ``reuse_port``
    lets several processes listen on the same port (SO_REUSEPORT: the kernel
    spreads the connections). ``health()`` adds its keys to ``/healthz``;
    ``metrics()`` gives the families ``/metrics`` serves instead of the
    listener's own counters (``Router.families``). ``cors_origin`` (``"*"`` or the
    origins, comma-separated) lets browsers of other origins poll.
    ``handshake_timeout`` bounds the time an HTTP request or a WebSocket
    handshake may take to arrive. ``handoff_dir`` is where the workers of a node
    sharing the port pass each other the requests of their sessions.
    ``max_per_address`` (0: no limit) bounds the connections one source address
    may hold open; loopback addresses are exempt unless ``limit_loopback``.
    """
    if not endpoints:
        raise ValueError("serve() needs at least one endpoint")
    loop = asyncio.get_running_loop()
    intervals = [ms for endpoint in endpoints for ms in endpoint.intervals()]
    heartbeat = Heartbeat(loop, resolution_for(*intervals))
    for endpoint in endpoints:
        endpoint.attach(heartbeat)
    router = Router(endpoints, health, metrics, cors_origin)
    max_payload = max(endpoint.config.max_payload for endpoint in endpoints)
    # The picows protocol a WebSocket upgrade is handed to, as ws_create_server
    # would build it, with the settings that keep a connection small.
    websocket = functools.partial(
        WSProtocol,
        None,  # host and port: a server's protocol has none
        None,  # path
        False,  # client side
        router.route,
        _PICOWS_LOG,
        True,  # disconnect on exception
        handshake_timeout,
        False,  # auto-ping: Engine.IO has its own heartbeat
        20.0,
        20.0,
        WSAutoPingStrategy.PING_WHEN_IDLE,
        True,  # auto-pong
        max_payload,  # max frame size
        None,  # extra headers
        2048,  # read buffer: picows's floor; frames are small here
    )
    front = Front(
        router.serve, websocket, heartbeat, timeout=handshake_timeout, max_body=max_payload
    )
    if max_per_address:
        front.address_limit = AddressLimit(max_per_address, limit_loopback)
        for endpoint in endpoints:
            endpoint.address_limit = front.address_limit
    if handoff_dir is not None:
        front.handoff = router.handoff = Handoff(handoff_dir, ids.tag(), front.adopt)
        front.handoff.start()
    server = await loop.create_server(
        front.connection, host, port, reuse_port=reuse_port, backlog=backlog
    )
    return Listener(server, router, heartbeat, front)
