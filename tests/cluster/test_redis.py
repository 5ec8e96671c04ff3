"""Two msstorm-server instances joined by a real redis-server: one storm."""

from __future__ import annotations

import asyncio
import signal

from nodes import Node, Redis, free_port
from stormkit import Clients


async def test_two_instances_over_redis(nodes: list[Node], redis: Redis) -> None:
    a = Node(
        free_port(), "--workers", "1", "--bus", redis.url, "--node-id", "Aa", "--op-timeout", "8"
    )
    b = Node(
        free_port(), "--workers", "1", "--bus", redis.url, "--node-id", "Bb", "--op-timeout", "8"
    )
    nodes += [a, b]
    for node in (a, b):
        await node.until(lambda h: h["cluster"]["workers"] == 2, what="both instances")
    at_a, at_b = Clients(a.url), Clients(b.url)
    pokees = await at_a.pokees_(30) + await at_b.pokees_(20)
    for node in (a, b):
        await node.until(lambda h: h["cluster"]["clients"] == 50, what="50 clients in the view")
    monitors = [await at_a.monitor(), await at_b.monitor()]
    try:
        # Clients of both receive a broadcast started from either.
        for monitor in monitors:
            ack = await monitor.initiate({"type": "broadcast"})
            assert ack["expected"] == 50
            status = await monitor.status_of(ack["op"])
            assert (status["summary"]["received"], status["summary"]["lost"]) == (50, 0)
        assert all(len(p.pokes) == 2 for p in pokees)
        # A unicast from A to a client of B, and a tree across both.
        far = at_b.pokees[0]
        ack = await monitors[0].initiate({"type": "unicast", "destId": far.sid})
        assert (await monitors[0].status_of(ack["op"]))["unicast"]["clientId"] == far.sid
        ack = await monitors[1].initiate({"type": "tree", "treeLeaves": 64})
        status = await monitors[1].status_of(ack["op"])
        assert status["summary"]["received"] == 127
        assert {e["clientId"][:2] for e in status["tree"]} == {"Aa", "Bb"}

        # Redis stops mid-run: each instance goes on alone, says so, and nothing hangs.
        redis.stop()
        overview = await monitors[0].request()
        for _ in range(100):
            if overview["cluster"]["bus"]["state"] == "reconnecting":
                break
            await asyncio.sleep(0.1)
            overview = await monitors[0].request()
        assert overview["cluster"]["bus"]["state"] == "reconnecting"
        await a.until(lambda h: h["cluster"]["workers"] == 1, what="B forgotten by A")
        ack = await monitors[0].initiate({"type": "broadcast"})
        assert ack["expected"] == 30  # A's own clients
        status = await monitors[0].status_of(ack["op"])
        assert (status["summary"]["received"], status["summary"]["lost"]) == (30, 0)

        # Redis is back: the buses reconnect and the storm is whole again.
        redis.start()
        for node in (a, b):
            await node.until(
                lambda h: h["cluster"]["workers"] == 2, timeout=30, what="both instances again"
            )
        ack = await monitors[1].initiate({"type": "broadcast"})
        assert ack["expected"] == 50
        status = await monitors[1].status_of(ack["op"])
        assert status["summary"]["received"] == 50
        bus = (await monitors[1].request())["cluster"]["bus"]
        assert bus["state"] == "up" and bus["problems"]["reconnects"] >= 1
    finally:
        for monitor in monitors:
            await monitor.close()
        at_a.close()
        at_b.close()


async def test_an_instance_that_stops_answering_as_a_broadcast_starts(
    nodes: list[Node], redis: Redis
) -> None:
    """Its clients, as the cluster held them when the monitor asked, are in the ack's
    ``expected``; the final status counts them lost and names its worker."""
    options = ("--workers", "1", "--bus", redis.url, "--op-timeout", "20")
    a = Node(free_port(), *options, "--node-id", "Aa")
    b = Node(free_port(), *options, "--node-id", "Bb")
    nodes += [a, b]
    for node in (a, b):
        await node.until(lambda h: h["cluster"]["workers"] == 2, what="both instances")
    at_a, at_b = Clients(a.url), Clients(b.url)
    await at_a.pokees_(30)
    await at_b.pokees_(20)
    await a.until(lambda h: h["cluster"]["clients"] == 50, what="50 clients in A's view")
    monitor = await at_a.monitor()
    try:
        b.process.send_signal(signal.SIGSTOP)
        ack = await monitor.initiate({"type": "broadcast"})
        assert ack["expected"] == 50
        status = await monitor.status_of(ack["op"])
        summary = status["summary"]
        assert (summary["received"], summary["lost"]) == (30, 20)
        assert status["workersLost"] == ["BbAA"] and "timedOut" not in status
    finally:
        b.process.send_signal(signal.SIGCONT)
        await monitor.close()
        at_a.close()
        at_b.close()
