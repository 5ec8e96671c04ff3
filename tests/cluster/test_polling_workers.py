"""Long-polling clients of a node of several workers: no sticky load balancer needed.

The kernel gives each new TCP connection to any worker; a polling request or an
upgrade naming another worker's session is handed to that worker (handoff.py).
Unmodified python-socketio clients, some polling only and some with their
default transports (polling, then the upgrade), join a 3-worker node and answer
a broadcast and a tree.
"""

from __future__ import annotations

import asyncio
from typing import Any

import socketio
from nodes import Node, free_port
from stormkit import Clients, answer_to


class SioPokee:
    """A python-socketio client that answers pokes."""

    def __init__(self) -> None:
        self.sio = socketio.AsyncClient(reconnection=False)
        self.pokes: list[dict[str, Any]] = []
        self.sio.on("poke", self.poke)

    async def poke(self, poke: dict[str, Any]) -> None:
        self.pokes.append(poke)
        await self.sio.emit("pokeBack", answer_to(poke))


async def test_polling_clients_of_several_workers(nodes: list[Node]) -> None:
    node = Node(free_port(), "--workers", "3", "--op-timeout", "10")
    nodes.append(node)
    await node.until(lambda h: h["cluster"]["workers"] == 3, what="3 workers")
    pokees = [SioPokee() for _ in range(24)]
    try:
        for i, pokee in enumerate(pokees):
            transports = ["polling"] if i % 2 else None  # None: the client's default
            await asyncio.wait_for(pokee.sio.connect(node.url, transports=transports), 10)
        assert {p.sio.transport() for p in pokees[0::2]} == {"websocket"}  # upgraded
        assert {p.sio.transport() for p in pokees[1::2]} == {"polling"}
        assert len({p.sio.get_sid()[:4] for p in pokees}) > 1  # sessions on several workers
        await node.until(lambda h: h["cluster"]["clients"] == 24, what="24 clients in the view")
        await asyncio.sleep(1.5)  # every worker's view is fresh

        monitor = await Clients(node.url).monitor()
        try:
            ack = await monitor.initiate({"type": "broadcast"})
            assert ack["expected"] == 24
            status = await monitor.status_of(ack["op"])
            assert (status["summary"]["received"], status["summary"]["lost"]) == (24, 0)
            ack = await monitor.initiate({"type": "tree", "treeLeaves": 16})
            status = await monitor.status_of(ack["op"])
            assert (status["summary"]["received"], status["summary"]["lost"]) == (31, 0)
        finally:
            await monitor.close()
        # Requests did cross workers, and every one found its session.
        sent = await asyncio.to_thread(node.metric, "msstorm_handoffs_total", direction="sent")
        adopted = await asyncio.to_thread(
            node.metric, "msstorm_handoffs_total", direction="adopted"
        )
        failed = await asyncio.to_thread(node.metric, "msstorm_handoffs_total", direction="failed")
        assert sum(sent.values()) == sum(adopted.values()) > 0
        assert sum(failed.values()) == 0
    finally:
        for pokee in pokees:
            await pokee.sio.disconnect()
