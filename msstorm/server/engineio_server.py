"""A bare Engine.IO server: messages in and out, no namespaces, no acks.

The Socket.IO server is built on the same machinery; this endpoint exposes the
Engine.IO layer on its own, as Node's ``engine.io`` package does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .endpoint import Endpoint

Handler = Callable[..., Any]


class EngineServer(Endpoint):
    """Engine.IO v4 at ``path`` (``/engine.io/`` by default).

    Handlers: ``connect(sid)``, ``message(sid, data)`` with ``data`` a ``str``
    or ``bytes``, ``disconnect(sid, reason)``.
    """

    def __init__(self, *, path: str = "/engine.io/", **options: int) -> None:
        super().__init__(path, **options)
        self.sockets: dict[str, Any] = {}  # sid -> Connection
        self._handlers: dict[str, Handler] = {}

    def on(self, name: str, handler: Handler | None = None) -> Any:
        """Register a handler; usable as ``@engine.on("message")``."""
        if name not in ("connect", "message", "disconnect"):
            raise ValueError(f"unknown Engine.IO event {name!r}")

        def register(fn: Handler) -> Handler:
            self._handlers[name] = fn
            return fn

        return register(handler) if handler is not None else register

    def send(self, sid: str, data: str | bytes) -> bool:
        """Send one message; False when ``sid`` is not connected."""
        conn = self.sockets.get(sid)
        if conn is None:
            return False
        if isinstance(data, str):
            conn.send_text(b"4" + data.encode())
        else:
            conn.send_binary(bytes(data))
        return True

    def disconnect(self, sid: str) -> bool:
        conn = self.sockets.get(sid)
        if conn is None:
            return False
        conn.close(reason="forced close")
        return True

    # -- Endpoint -------------------------------------------------------------

    def opened(self, conn: Any) -> None:
        sid = conn.session.sid
        self.sockets[sid] = conn
        handler = self._handlers.get("connect")
        if handler is not None:
            self.run_handler(handler, sid)

    def handle(self, conn: Any, event: Any) -> None:
        handler = self._handlers.get("message")
        if handler is not None:
            self.run_handler(handler, conn.session.sid, event)

    def lost(self, conn: Any, reason: str) -> None:
        sid = conn.session.sid
        if self.sockets.pop(sid, None) is None:
            return
        handler = self._handlers.get("disconnect")
        if handler is not None:
            self.run_handler(handler, sid, reason)
