"""Socket.IO's admin UI (``@socket.io/admin-ui`` 0.5) on namespace ``/admin``.

The UI is a Socket.IO client: it joins ``/admin`` with ``{username, password}``
(or a ``sessionId`` it was given), receives ``config`` with the features served,
and ``server_stats`` every 2 s from every worker. Each worker emits its own
stats to the admin sockets it holds and publishes them on the bus; the other
workers emit them to theirs, so an admin connected to any worker sees them all.

Production mode (the default) sends aggregates only. Development mode adds the
socket list of namespace ``/`` and its connect and disconnect events, which a
million clients would flood: it refuses clients beyond ``DEVELOPMENT_LIMIT``.

A session id is a nonce and its HMAC under the credentials: any worker can
check one without a shared table, and it is void once the credentials change.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import secrets
import socket
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from msstorm.protocol.errors import ConnectionRefused
from msstorm.server import ids

if TYPE_CHECKING:
    from .app import Storm

log = logging.getLogger("msstorm.admin")

NAMESPACE = "/admin"
CLIENTS = "/"
STATS_EVERY = 2.0
MODES = ("production", "development")
# Development mode sends an event per socket to every admin: beyond this many
# clients it would cost more than the storm it shows.
DEVELOPMENT_LIMIT = 5000
HOSTNAME = socket.gethostname()


class AuthError(ValueError):
    """A ``--admin-auth`` that is not ``USER:PASSWORD``."""


def parse_auth(text: str) -> tuple[str, str]:
    """``USER:PASSWORD`` (the password may hold colons), neither empty."""
    username, colon, password = text.partition(":")
    if not colon or not username or not password:
        raise AuthError("--admin-auth must be USER:PASSWORD, both non-empty")
    return username, password


def _same(given: Any, expected: str) -> bool:
    """Constant-time comparison of a client's string to the expected one."""
    if not isinstance(given, str):
        return hmac.compare_digest(b"\x00", expected.encode())  # same work, always False
    return hmac.compare_digest(given.encode(), expected.encode())


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat()


class AdminUI:
    """The ``/admin`` namespace of one worker."""

    def __init__(
        self,
        storm: Storm,
        username: str,
        password: str,
        *,
        mode: str = "production",
        every: float = STATS_EVERY,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"--admin-mode must be production or development, not {mode!r}")
        self.storm = storm
        self.server = storm.server
        self.username = username
        self.password = password
        self.mode = mode
        self.every = every
        self.started = time.time()
        self._key = hashlib.sha256(f"{username}\x00{password}".encode()).digest()
        self._last = self._cumulative()
        self._timer: asyncio.TimerHandle | None = None
        self._connected_at: dict[str, float] = {}  # development mode: sid -> when
        self.admins = self.server.namespace(NAMESPACE)
        self.server.on("connect", self.admin_connect, namespace=NAMESPACE)
        self.server.on("emit", self.admin_emit, namespace=NAMESPACE)
        self.server.on("_disconnect", self.admin_disconnect, namespace=NAMESPACE)
        storm.bus_handlers["admin-stats"] = self._stats_from_peer
        storm.bus_handlers["admin-event"] = self._event_from_peer
        storm.bus_handlers["admin-do"] = self._do_from_peer
        storm.bus_handlers["admin-sockets?"] = self._sockets_asked
        if mode == "development":
            self.server.on("connect", self.client_connect, namespace=CLIENTS)
            self.server.on("disconnect", self.client_disconnect, namespace=CLIENTS)

    @property
    def features(self) -> list[str]:
        features = ["AGGREGATED_EVENTS", "EMIT", "DISCONNECT"]
        if self.mode == "development":
            features.append("ALL_EVENTS")
        return features

    def start(self) -> None:
        self._timer = asyncio.get_running_loop().call_later(self.every, self._tick)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()

    # -- admins ------------------------------------------------------------------

    def admin_connect(self, sid: str, auth: Any) -> Any:
        auth = auth if isinstance(auth, dict) else {}
        if "sessionId" in auth:
            valid = self._valid_session(auth["sessionId"])
        else:
            # Both compared whatever the first says: the time tells nothing.
            valid = _same(auth.get("username"), self.username)
            valid &= _same(auth.get("password"), self.password)
        if not valid:
            self.server.stats.refused["AdminCredentials"] += 1
            raise ConnectionRefused("invalid credentials")
        self.server.emit("session", self._new_session(), to=sid, namespace=NAMESPACE)
        self.server.emit(
            "config", {"supportedFeatures": self.features}, to=sid, namespace=NAMESPACE
        )
        if self.mode == "development":
            self.storm.spawn(self._send_sockets(sid))
        return None

    def _new_session(self) -> str:
        nonce = secrets.token_urlsafe(12)
        return f"{nonce}.{hmac.new(self._key, nonce.encode(), 'sha256').hexdigest()}"

    def _valid_session(self, session: Any) -> bool:
        if not isinstance(session, str):
            return False
        nonce, _, mac = session.partition(".")
        expected = hmac.new(self._key, nonce.encode(), "sha256").hexdigest()
        return hmac.compare_digest(mac.encode(), expected.encode())

    def admin_emit(self, sid: str, *args: Any) -> None:
        """``emit(nsp, filter, event, ...args)``: to one socket (its sid is its room).
        Anything else is ignored, and counted."""
        if len(args) >= 3 and all(isinstance(a, str) for a in args[:3]):
            nsp, target, event = args[:3]
            self._do(target, {"do": "emit", "nsp": nsp, "sid": target, "e": event, "a": args[3:]})
        else:
            self.server.stats.ignored += 1

    def admin_disconnect(self, sid: str, *args: Any) -> None:
        """``_disconnect(nsp, close, filter)``: that socket, or its whole connection."""
        if len(args) == 3 and isinstance(args[0], str) and isinstance(args[2], str):
            nsp, close, target = args
            self._do(target, {"do": "disconnect", "nsp": nsp, "sid": target, "close": bool(close)})
        else:
            self.server.stats.ignored += 1

    def _do(self, target: str, action: dict[str, Any]) -> None:
        owner = ids.owner_of(target)
        if owner == self.storm.tag:
            self._act(action)
        elif owner in self.storm.membership.peers:
            self.storm.bus.send(owner, {"t": "admin-do", **action})

    def _do_from_peer(self, message: dict[str, Any], blob: bytes) -> None:
        self._act(message)

    def _act(self, action: dict[str, Any]) -> None:
        nsp, sid = action["nsp"], action["sid"]
        if nsp not in self.server.namespaces:
            return
        if action["do"] == "emit":
            self.server.emit(action["e"], *action["a"], to=sid, namespace=nsp)
        elif action.get("close"):
            self.server.close(sid, namespace=nsp)
        else:
            self.server.disconnect(sid, namespace=nsp)

    # -- server_stats --------------------------------------------------------------

    def _cumulative(self) -> dict[tuple[str, str], int]:
        """Counts since start, by (type, subType): the aggregated events are their deltas."""
        stats = self.server.stats
        traffic = self.server.traffic
        counts = {
            ("rawConnection", ""): stats.handshakes,
            ("packetsIn", ""): traffic.frames_in,
            ("packetsOut", ""): traffic.frames_out,
            ("bytesIn", ""): traffic.bytes_in,
            ("bytesOut", ""): traffic.bytes_out,
        }
        for reason, n in stats.disconnects.items():
            counts["rawDisconnection", reason] = n
        return counts

    def stats(self) -> dict[str, Any]:
        """This worker's ``server_stats``, its events those since the last call."""
        now = self._cumulative()
        timestamp = int(time.time()) * 1000
        events = []
        for (kind, sub), n in now.items():
            count = n - self._last.get((kind, sub), 0)
            if count > 0:
                event: dict[str, Any] = {"timestamp": timestamp, "type": kind, "count": count}
                if sub:
                    event["subType"] = sub
                events.append(event)
        self._last = now
        return {
            "serverId": self.storm.tag,
            "hostname": HOSTNAME,
            "pid": os.getpid(),
            "uptime": round(time.time() - self.started, 3),
            "clientsCount": self.server.stats.connections,
            "pollingClientsCount": sum(1 for s in self.server.polling.values() if not s.upgraded),
            "aggregatedEvents": events,
            "namespaces": [
                {"name": name, "socketsCount": len(nsp.sockets)}
                for name, nsp in sorted(self.server.namespaces.items())
            ],
        }

    def _tick(self) -> None:
        stats = self.stats()
        self.server.emit("server_stats", stats, namespace=NAMESPACE)
        self.storm.bus.publish({"t": "admin-stats", "s": stats})
        self._timer = asyncio.get_running_loop().call_later(self.every, self._tick)

    def _stats_from_peer(self, message: dict[str, Any], blob: bytes) -> None:
        if self.admins.sockets:
            self.server.emit("server_stats", message["s"], namespace=NAMESPACE)

    # -- development mode: the sockets of "/" ---------------------------------------

    def client_connect(self, sid: str, auth: Any) -> None:
        if self.storm.membership.total() >= DEVELOPMENT_LIMIT:
            raise ConnectionRefused(
                f"this server runs the admin UI in development mode, which serves at most "
                f"{DEVELOPMENT_LIMIT} clients (an event per socket to every admin): "
                "restart it with --admin-mode production"
            )
        self._connected_at[sid] = time.time()
        # The CONNECT is not answered yet: the socket is described once it is.
        asyncio.get_running_loop().call_soon(self._announce, sid)

    def _announce(self, sid: str) -> None:
        described = self._describe(sid)
        if described is not None:
            self._event("socket_connected", [described, _iso(time.time())])

    def client_disconnect(self, sid: str, reason: str) -> None:
        self._connected_at.pop(sid, None)
        self._event("socket_disconnected", [CLIENTS, sid, reason, _iso(time.time())])

    def _event(self, event: str, args: list[Any]) -> None:
        if self.admins.sockets:
            self.server.emit(event, *args, namespace=NAMESPACE)
        self.storm.bus.publish({"t": "admin-event", "e": event, "a": args})

    def _event_from_peer(self, message: dict[str, Any], blob: bytes) -> None:
        if self.admins.sockets:
            self.server.emit(message["e"], *message["a"], namespace=NAMESPACE)

    def _describe(self, sid: str) -> dict[str, Any] | None:
        conn = self.server.namespaces[CLIENTS].sockets.get(sid)
        if conn is None:
            return None
        session = conn.session
        polling = getattr(conn, "upgraded", True) is False
        issued = self._connected_at.get(sid, 0.0)
        return {
            "id": sid,
            "clientId": getattr(session, "sid", ""),
            "transport": "polling" if polling else "websocket",
            "nsp": CLIENTS,
            "data": {},
            "handshake": {
                "address": conn.peer or "",
                "headers": {},
                "query": {},
                "issued": int(issued * 1000),
                "secure": False,
                "time": _iso(issued) if issued else "",
                "url": self.server.path,
                "xdomain": False,
            },
            "rooms": [sid],
        }

    def local_sockets(self) -> list[dict[str, Any]]:
        described = (self._describe(sid) for sid in list(self.server.namespaces[CLIENTS].members))
        return [d for d in described if d is not None]

    def _sockets_asked(self, message: dict[str, Any], blob: bytes) -> None:
        self.storm.answer(message, {"sockets": self.local_sockets()})

    async def _send_sockets(self, sid: str) -> None:
        """``all_sockets``: every worker's sockets of ``/``."""
        await asyncio.sleep(0)  # after the CONNECT, session and config
        sockets = self.local_sockets()
        others = [t for t in self.storm.membership.alive() if t != self.storm.tag]
        replies = await asyncio.gather(
            *(self.storm.ask(t, {"t": "admin-sockets?"}) for t in others), return_exceptions=True
        )
        for reply in replies:
            if not isinstance(reply, BaseException):
                sockets += reply[0].get("sockets", [])
        self.server.emit("all_sockets", sockets, to=sid, namespace=NAMESPACE)
