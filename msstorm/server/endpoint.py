"""What every endpoint on the port shares: sessions, heartbeats, counters.

An endpoint is an application mounted at a path (``Server`` at ``/socket.io/``,
``EngineServer`` at ``/engine.io/``). Connections call it back with
``open``, ``handle``, ``refused`` and ``closed``; subclasses say what a session
is and what to do with its events.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from typing import Any

from msstorm._fastpath import EngineSession, Traffic
from msstorm.protocol.engineio import Config, open_packet
from msstorm.protocol.errors import CLOSE_POLICY_VIOLATION, ProtocolError

from .heartbeat import Heartbeat
from .ids import new_sid
from .limits import AddressLimit, RateLimitedLog
from .stats import Stats

log = logging.getLogger("msstorm.server")

HANDLER_FAILED = object()  # what ``run_handler`` returns when the handler raised


class Endpoint(ABC):
    """Base of the applications a listener serves."""

    session_class: type[EngineSession] = EngineSession
    # A fast path that sees text frames before they are decoded: an object whose
    # ``feed(conn, frame)`` returns True when it took the frame (see Server.tap), and
    # ``take(conn, ws_frame)`` the same for a WebSocket frame as picows received it.
    tap: Any = None

    def __init__(
        self,
        path: str,
        *,
        ping_interval: int = 25000,
        ping_timeout: int = 20000,
        max_payload: int = 1_000_000,
        connect_timeout: int = 45000,
        max_queued: int = 1 << 20,
    ) -> None:
        if not path.startswith("/"):
            raise ValueError(f"path must start with '/': {path!r}")
        self.path = path.rstrip("/") + "/"
        self.config = Config(ping_interval, ping_timeout, max_payload, connect_timeout, max_queued)
        self.stats = Stats()
        self.traffic = Traffic()
        self.heartbeat: Heartbeat | None = None
        self.live: set[Any] = set()  # every open Connection, for shutdown
        self.polling: dict[str, Any] = {}  # Engine.IO sid -> its long-polling session
        self.address_limit: AddressLimit | None = None  # set by serve() when there is one
        self._slow_log = RateLimitedLog()

    def attach(self, heartbeat: Heartbeat) -> None:
        """Called by the listener before the first connection arrives."""
        self.heartbeat = heartbeat

    def intervals(self) -> tuple[int, ...]:
        """The intervals (ms) the heartbeat must be able to time."""
        c = self.config
        return (c.ping_interval, c.ping_timeout)

    # -- called by Connection -------------------------------------------------

    def open(self, conn: Any, upgrades: tuple[str, ...] = ()) -> str:
        """Start a session on ``conn``, ``upgrades`` the transports it may move to; its sid."""
        heartbeat = self.heartbeat
        assert heartbeat is not None, "endpoint used before serve() attached it"
        sid = new_sid()
        conn.session = self.session_class(sid, self.config, heartbeat.loop.time())
        conn.send_text(open_packet(sid, self.config, upgrades))
        heartbeat.watch(conn)
        self.live.add(conn)
        self.stats.connections += 1
        self.stats.handshakes += 1
        self.opened(conn)
        return sid

    @abstractmethod
    def handle(self, conn: Any, event: Any) -> None:
        """An event from the connection's session."""

    def refused(self, conn: Any, exc: ProtocolError) -> None:
        """A peer broke the protocol; the connection closes right after."""
        self.stats.refused[type(exc).__name__] += 1
        log.debug("closing a connection: %s", exc)

    def close_all(self, reason: str) -> None:
        """Close every connection of this endpoint."""
        for conn in list(self.live):
            conn.close(reason=reason)

    def admit(self, conn: Any, transport: Any) -> bool:
        """A WebSocket has opened: count it against its address's limit, or refuse it."""
        limit = self.address_limit
        if limit is None:
            return True
        peer = transport.underlying_transport.get_extra_info("peername")
        address = peer[0] if peer else ""
        if not limit.counted(address):
            return True
        if not limit.admit(address):
            self.stats.refused["TooManyConnections"] += 1
            conn.close(CLOSE_POLICY_VIOLATION, "too many connections from your address")
            return False
        conn.peer = address
        return True

    def slow(self, conn: Any, waiting: int) -> None:
        """``conn`` is dropped: ``waiting`` bytes queued for it, over ``max_queued``."""
        self._slow_log.warning(
            "dropping a client that does not read: %d bytes waiting for it (max %d)",
            waiting,
            self.config.max_queued,
        )

    def closed(self, conn: Any, reason: str) -> None:
        if conn.peer is not None and self.address_limit is not None:
            self.address_limit.release(conn.peer)
            conn.peer = None
        if conn not in self.live:
            return  # refused before its session started
        self.live.discard(conn)
        self.stats.connections -= 1
        self.stats.disconnects[reason] += 1
        self.lost(conn, reason)

    # -- for subclasses -------------------------------------------------------

    def opened(self, conn: Any) -> None:  # noqa: B027 - a hook, empty by default
        """A connection's session has started."""

    def lost(self, conn: Any, reason: str) -> None:  # noqa: B027 - a hook, empty by default
        """A connection has gone, for ``reason``."""

    def run_handler(self, handler: Any, *args: Any, **kwargs: Any) -> Any:
        """Call an application handler; an exception is logged and counted, not spread
        (and ``HANDLER_FAILED`` returned)."""
        try:
            return handler(*args, **kwargs)
        except Exception:
            self.stats.handler_errors += 1
            log.exception("handler %s raised", getattr(handler, "__name__", handler))
            return HANDLER_FAILED
