"""The listening socket: one port, several endpoints, picows underneath.

Every request on the port comes through ``route``: ``GET /healthz`` is answered
in place; a path that names an endpoint goes through the Engine.IO handshake
checks and, when it asks for the WebSocket transport, becomes a ``Connection``;
everything else gets Engine.IO's HTTP error JSON or a 404.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any

import orjson
from picows import (
    WSUpgradeRequest,
    WSUpgradeResponse,
    WSUpgradeResponseWithListener,
    ws_create_server,
)

from msstorm._fastpath import Connection
from msstorm.protocol.engineio import parse_handshake
from msstorm.protocol.errors import HandshakeError

from .endpoint import Endpoint
from .heartbeat import Heartbeat, resolution_for

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
HEALTH_PATH = "/healthz"
SERVED_TRANSPORTS = ("websocket",)


class Router:
    """Sends each HTTP request on the port to the endpoint its path names."""

    def __init__(
        self,
        endpoints: Iterable[Endpoint],
        extra_health: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self.extra_health = extra_health
        self.endpoints: dict[str, Endpoint] = {}
        for endpoint in endpoints:
            if endpoint.path in self.endpoints:
                raise ValueError(f"two endpoints at {endpoint.path}")
            self.endpoints[endpoint.path] = endpoint

    def route(self, request: WSUpgradeRequest) -> Any:
        path, _, query = request.path.decode("latin-1").partition("?")
        if path == HEALTH_PATH:
            return _response(HTTPStatus.OK, self.health())
        endpoint = self.endpoints.get(path if path.endswith("/") else path + "/")
        if endpoint is None:
            return None  # picows answers 404
        try:
            handshake = parse_handshake(request.method, query, SERVED_TRANSPORTS)
            if handshake.sid is not None:
                # Upgrades from a polling session need the polling transport.
                raise HandshakeError(HandshakeError.UNKNOWN_SID)
            if request.headers.get("upgrade", "").lower() != "websocket":
                raise HandshakeError(HandshakeError.BAD_REQUEST)
        except HandshakeError as exc:
            endpoint.stats.refused["HandshakeError"] += 1
            return _response(exc.status, {"code": exc.code, "message": exc.message})
        return Connection(endpoint)

    def health(self) -> dict[str, Any]:
        health = {
            "status": "ok",
            "pid": os.getpid(),
            "connections": sum(e.stats.connections for e in self.endpoints.values()),
            "endpoints": {path: e.stats.as_dict() for path, e in self.endpoints.items()},
        }
        if self.extra_health is not None:
            health.update(self.extra_health())
        return health


def _response(status: int, body: dict[str, Any]) -> WSUpgradeResponseWithListener:
    payload = orjson.dumps(body)
    if status >= 400:
        response = WSUpgradeResponse.create_error_response(status, payload, _JSON)
    else:
        response = WSUpgradeResponse.create_ok_response(payload, _JSON)
    return WSUpgradeResponseWithListener(response, None)


class Listener:
    """A listening port and the endpoints it serves; ``close()`` ends it all."""

    def __init__(self, server: asyncio.Server, router: Router, heartbeat: Heartbeat) -> None:
        self.server = server
        self.router = router
        self.heartbeat = heartbeat

    @property
    def port(self) -> int:
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    def close(self, reason: str = "server shutting down") -> None:
        """Stop accepting and close every connection."""
        self.server.close()
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
) -> Listener:
    """Listen on ``host:port`` and serve the endpoints there until closed.

    ``port=0`` picks a free port; ``listener.port`` tells which. ``reuse_port``
    lets several processes listen on the same port (SO_REUSEPORT: the kernel
    spreads the connections). ``health()`` adds its keys to ``/healthz``.
    """
    if not endpoints:
        raise ValueError("serve() needs at least one endpoint")
    loop = asyncio.get_running_loop()
    intervals = [ms for endpoint in endpoints for ms in endpoint.intervals()]
    heartbeat = Heartbeat(loop, resolution_for(*intervals))
    for endpoint in endpoints:
        endpoint.attach(heartbeat)
    router = Router(endpoints, health)
    server = await ws_create_server(
        router.route,
        host,
        port,
        websocket_handshake_timeout=handshake_timeout,
        logger_name=_PICOWS_LOG,
        enable_auto_ping=False,  # Engine.IO has its own heartbeat
        max_frame_size=max(endpoint.config.max_payload for endpoint in endpoints),
        read_buffer_init_size=2048,  # picows's floor; frames are small here
        use_aiofastnet=False,  # aiofastnet costs ~20 KB per connection
        reuse_port=reuse_port,
        backlog=backlog,
    )
    return Listener(server, router, heartbeat)
