"""Helpers of the storm tests: a MessageStorm server in the test's loop, clients that
answer pokes over real sockets, and a python-socketio monitor."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import orjson
import picows
import socketio

import msstorm
from msstorm.storm import Storm

TOKEN = "test-token"


class Pokee(picows.WSListener):
    """A client of namespace "/" that answers every poke as the contract says."""

    def __init__(self) -> None:
        self.transport: Any = None
        self.sid: str | None = None
        self.joined = asyncio.get_running_loop().create_future()
        self.pokes: list[dict[str, Any]] = []
        self.answering = True
        self.on_poke: Callable[[Pokee, dict[str, Any]], None] | None = None
        self.disconnected = asyncio.get_running_loop().create_future()

    def on_ws_frame(self, transport: picows.WSTransport, frame: picows.WSFrame) -> None:
        data = frame.get_payload_as_bytes()
        if data.startswith(b"0{"):
            transport.send(picows.WSMsgType.TEXT, b"40")
        elif data == b"2":
            transport.send(picows.WSMsgType.TEXT, b"3")
        elif data.startswith(b'40{"sid"'):
            self.sid = orjson.loads(data[2:])["sid"]
            self.joined.set_result(self.sid)
        elif data.startswith(b'42["poke",'):
            poke = orjson.loads(data[2:])[1]
            self.pokes.append(poke)
            if self.on_poke is not None:
                self.on_poke(self, poke)
            if self.answering:
                self.send(pokeback_for(poke))

    def on_ws_disconnected(self, transport: picows.WSTransport) -> None:
        if not self.disconnected.done():
            self.disconnected.set_result(None)

    def send(self, data: bytes) -> None:
        if not self.transport.is_disconnected:
            self.transport.send(picows.WSMsgType.TEXT, data)


def pokeback_for(poke: dict[str, Any]) -> bytes:
    return b"42" + orjson.dumps(["pokeBack", answer_to(poke)])


def answer_to(poke: dict[str, Any]) -> dict[str, Any]:
    """The pokeBack the contract asks for."""
    answer: dict[str, Any] = {
        "id": poke["id"],
        "delay": time.time() * 1000.0 - poke["ts"],
        "serverTs": poke["ts"],
    }
    leaves = poke.get("treeLeaves")
    if leaves is not None and leaves >= 2:
        answer["treeLeaves"] = leaves // 2
    if "treeId" in poke:
        answer["treeId"] = poke["treeId"]
    return answer


class Clients:
    """Pokees and monitors of the MessageStorm server at ``url``."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.pokees: list[Pokee] = []

    def close(self) -> None:
        for client in self.pokees:
            client.transport.disconnect()

    async def pokee(self) -> Pokee:
        url = self.url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket"
        transport, client = await picows.ws_connect(Pokee, url, use_aiofastnet=False)
        client.transport = transport
        await asyncio.wait_for(client.joined, 5)
        self.pokees.append(client)
        return client

    async def pokees_(self, n: int) -> list[Pokee]:
        clients: list[Pokee] = []
        for start in range(0, n, 50):
            clients += await asyncio.gather(*(self.pokee() for _ in range(min(50, n - start))))
        return clients

    async def monitor(self, token: str = TOKEN) -> Monitor:
        monitor = Monitor()
        await monitor.sio.connect(
            self.url, transports=["websocket"], namespaces=["/monitor"], auth={"token": token}
        )
        return monitor


class StormServer(Clients):
    """A MessageStorm server in the test's own loop."""

    def __init__(self, storm: Storm, listener: msstorm.Listener) -> None:
        super().__init__(f"http://127.0.0.1:{listener.port}")
        self.storm = storm
        self.listener = listener


class Monitor:
    """python-socketio on /monitor, collecting pushed statuses by operation."""

    def __init__(self) -> None:
        self.sio = socketio.AsyncClient(reconnection=False)
        self.statuses: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.sio.on("status", self._status, namespace="/monitor")

    def _future(self, op: str) -> asyncio.Future[dict[str, Any]]:
        if op not in self.statuses:
            self.statuses[op] = asyncio.get_running_loop().create_future()
        return self.statuses[op]

    async def _status(self, status: dict[str, Any]) -> None:
        future = self._future(status.get("op", "overview"))
        if not future.done():
            future.set_result(status)

    async def initiate(self, request: Any) -> dict[str, Any]:
        answer: dict[str, Any] = await self.sio.call(
            "initiatePoke", request, namespace="/monitor", timeout=5
        )
        return answer

    async def status_of(self, op: str, timeout: float = 10.0) -> dict[str, Any]:
        return await asyncio.wait_for(asyncio.shield(self._future(op)), timeout)

    async def request(self, *args: Any) -> Any:
        return await self.sio.call("statusRequest", *args, namespace="/monitor", timeout=5)

    async def close(self) -> None:
        await self.sio.disconnect()
