"""The admin UI's namespace, /admin, seen from python-socketio, on a server of two workers."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import socketio
from stormkit import Clients
from watchkit import ADMIN, Server

USER, PASSWORD = ADMIN.split(":", 1)
CLIENTS = 300


class Admin:
    """A python-socketio client of /admin, collecting what the server sends."""

    def __init__(self) -> None:
        self.sio = socketio.AsyncClient(reconnection=False)
        self.received: dict[str, list[Any]] = {}
        self.refusal: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        for event in (
            "session",
            "config",
            "server_stats",
            "all_sockets",
            "socket_connected",
            "socket_disconnected",
        ):
            self.sio.on(event, self._keeper(event), namespace="/admin")
        self.sio.on("connect_error", self._refused, namespace="/admin")

    def _keeper(self, event: str) -> Any:
        async def keep(*args: Any) -> None:
            self.received.setdefault(event, []).append(args)

        return keep

    async def _refused(self, data: Any) -> None:
        if not self.refusal.done():
            self.refusal.set_result(data)

    async def connect(self, url: str, auth: dict[str, Any]) -> None:
        await self.sio.connect(url, namespaces=["/admin"], auth=auth, transports=["websocket"])

    async def refused_with(self, url: str, auth: Any) -> Any:
        with pytest.raises(socketio.exceptions.ConnectionError):
            await self.sio.connect(url, namespaces=["/admin"], auth=auth, transports=["websocket"])
        return await asyncio.wait_for(self.refusal, 5)

    async def wait_for(self, event: str, count: int = 1, timeout: float = 10.0) -> list[Any]:
        deadline = asyncio.get_running_loop().time() + timeout
        while len(self.received.get(event, [])) < count:
            if asyncio.get_running_loop().time() > deadline:
                pytest.fail(f"{count} {event!r} not received; got {self.received}", pytrace=False)
            await asyncio.sleep(0.05)
        return self.received[event]

    async def close(self) -> None:
        await self.sio.disconnect()


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    started = Server("--workers", "2", env={"MSSTORM_ADMIN_AUTH": ADMIN})
    try:
        await started.until(lambda h: h["cluster"]["workers"] == 2, what="2 workers")
        yield started
    finally:
        started.stop()


async def test_credentials_are_checked_and_kept_off_the_workers_command_lines(
    server: Server,
) -> None:
    for auth in (
        {"username": USER, "password": "wrong"},
        {"username": "someone", "password": PASSWORD},
        {"username": USER},
        {"sessionId": "forged.0000"},
        None,
    ):
        admin = Admin()
        refusal = await admin.refused_with(server.url, auth)
        assert refusal == {"message": "invalid credentials"}, auth
    admin = Admin()
    await admin.connect(server.url, {"username": USER, "password": PASSWORD})
    try:
        (session,) = (await admin.wait_for("session"))[0]
        ((config,),) = await admin.wait_for("config")
        assert "AGGREGATED_EVENTS" in config["supportedFeatures"]
        assert "ALL_EVENTS" not in config["supportedFeatures"]  # production mode
    finally:
        await admin.close()
    # The session it was given lets it in again, on whichever worker it lands.
    for _ in range(3):
        again = Admin()
        await again.connect(server.url, {"sessionId": session})
        await again.wait_for("config")
        await again.close()
    workers = server.workers()
    assert len(workers) == 2
    for pid in workers:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes()
        assert PASSWORD.encode() not in argv and b"--admin-auth" not in argv


async def test_server_stats_of_every_worker_sum_to_the_clients(server: Server) -> None:
    clients = Clients(server.url)
    pokees = await clients.pokees_(CLIENTS)
    admin = Admin()
    try:
        assert len(Counter(p.sid[:4] for p in pokees if p.sid)) == 2  # on both workers
        await server.until(lambda h: h["cluster"]["clients"] == CLIENTS, what="every client")
        await admin.connect(server.url, {"username": USER, "password": PASSWORD})
        # Every worker's stats reach an admin connected to one of them, every 2 s.
        latest: dict[str, dict[str, Any]] = {}
        deadline = asyncio.get_running_loop().time() + 10
        while len(latest) < 2 and asyncio.get_running_loop().time() < deadline:
            for (stats,) in await admin.wait_for("server_stats"):
                latest[stats["serverId"]] = stats
            await asyncio.sleep(0.2)
        assert len(latest) == 2, latest
        for stats in latest.values():
            assert set(stats) >= {
                "serverId",
                "hostname",
                "pid",
                "uptime",
                "clientsCount",
                "pollingClientsCount",
                "aggregatedEvents",
                "namespaces",
            }
            assert stats["pollingClientsCount"] == 0
            for event in stats["aggregatedEvents"]:
                assert event["timestamp"] % 1000 == 0 and event["count"] > 0
        # Engine.IO connections: the clients, and the admin's own.
        assert sum(s["clientsCount"] for s in latest.values()) == CLIENTS + 1
        sockets = Counter()
        for stats in latest.values():
            for nsp in stats["namespaces"]:
                sockets[nsp["name"]] += nsp["socketsCount"]
        assert sockets["/"] == CLIENTS and sockets["/admin"] == 1
        connected = sum(
            e["count"]
            for s in admin.received["server_stats"]
            for e in s[0]["aggregatedEvents"]
            if e["type"] == "rawConnection"
        )
        assert connected <= CLIENTS + 1  # the ramp may predate the first stats
        # A client that leaves shows in the next stats as a rawDisconnection.
        pokees[0].transport.disconnect()
        seen = len(admin.received["server_stats"])
        deadline = asyncio.get_running_loop().time() + 10
        while True:
            stats_now = [s[0] for s in admin.received["server_stats"][seen:]]
            if any(
                e["type"] == "rawDisconnection" for s in stats_now for e in s["aggregatedEvents"]
            ):
                break
            assert asyncio.get_running_loop().time() < deadline, stats_now
            await asyncio.sleep(0.1)
    finally:
        await admin.close()
        clients.close()


async def test_without_credentials_there_is_no_admin_namespace() -> None:
    server = Server()
    try:
        await server.until(lambda h: h["cluster"]["workers"] >= 1)
        admin = Admin()
        refusal = await admin.refused_with(server.url, {"username": USER, "password": PASSWORD})
        assert refusal == {"message": "Invalid namespace"}
    finally:
        server.stop()


async def test_development_mode_lists_the_sockets_and_their_events() -> None:
    server = Server(
        "--workers", "2", "--admin-mode", "development", env={"MSSTORM_ADMIN_AUTH": ADMIN}
    )
    clients = Clients(server.url)
    admin = Admin()
    try:
        await server.until(lambda h: h["cluster"]["workers"] == 2)
        pokees = await clients.pokees_(20)
        await server.until(lambda h: h["cluster"]["clients"] == 20)
        await admin.connect(server.url, {"username": USER, "password": PASSWORD})
        ((config,),) = await admin.wait_for("config")
        assert "ALL_EVENTS" in config["supportedFeatures"]
        ((sockets,),) = await admin.wait_for("all_sockets")
        assert {s["id"] for s in sockets} == {p.sid for p in pokees}
        assert all(s["nsp"] == "/" and s["transport"] == "websocket" for s in sockets)
        newcomer = await clients.pokee()
        (described, _when) = (await admin.wait_for("socket_connected"))[0]
        assert described["id"] == newcomer.sid
        newcomer.transport.disconnect()
        (nsp, sid, reason, _when) = (await admin.wait_for("socket_disconnected"))[0]
        assert (nsp, sid) == ("/", newcomer.sid) and reason
    finally:
        await admin.close()
        clients.close()
        server.stop()


@pytest.mark.parametrize(
    ("options", "env", "says"),
    [
        (["--admin-auth", "nocolon"], {}, "--admin-auth must be USER:PASSWORD"),
        ([], {"MSSTORM_ADMIN_AUTH": ":nouser"}, "--admin-auth must be USER:PASSWORD"),
        (["--admin-mode", "development"], {}, "--admin-mode needs --admin-auth"),
        (
            ["--admin-auth", ADMIN, "--admin-mode", "development", "--max-clients", "100000"],
            {},
            "at most 5000 clients",
        ),
        (["--dashboard-port", "70000"], {}, "--dashboard-port must be a port"),
    ],
)
def test_wrong_options_are_refused_at_start(
    options: list[str], env: dict[str, str], says: str
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "msstorm.storm.cli", *options],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, **env},
    )
    assert result.returncode == 2, result.stderr
    assert says in result.stderr


async def test_the_admin_may_emit_to_a_socket_and_disconnect_one(server: Server) -> None:
    clients = Clients(server.url)
    pokees = await clients.pokees_(40)
    listener = socketio.AsyncClient(reconnection=False)
    heard: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    listener.on("hello", lambda *args: heard.done() or heard.set_result(args))
    admin = Admin()
    try:
        await listener.connect(server.url, transports=["websocket"])
        await admin.connect(server.url, {"username": USER, "password": PASSWORD})
        await admin.wait_for("config")
        # Whichever worker holds the socket, the admin's worker routes it there.
        await admin.sio.emit(
            "emit", ("/", listener.get_sid("/"), "hello", 1, "two"), namespace="/admin"
        )
        assert await asyncio.wait_for(heard, 5) == (1, "two")
        for pokee in pokees[:6]:  # on both workers, most likely
            await admin.sio.emit("_disconnect", ("/", True, pokee.sid), namespace="/admin")
        for pokee in pokees[:6]:
            await asyncio.wait_for(pokee.disconnected, 5)
        # Malformed requests are ignored; the admin stays connected.
        for bad in ((), ("/",), (1, 2, 3), ("/", True, 5)):
            await admin.sio.emit("_disconnect", bad, namespace="/admin")
            await admin.sio.emit("emit", bad, namespace="/admin")
        await server.until(lambda h: h["cluster"]["clients"] == 40 + 1 - 6)
        assert admin.sio.connected
    finally:
        await admin.close()
        await listener.disconnect()
        clients.close()
