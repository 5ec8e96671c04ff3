"""Several workers on one port with the embedded bus acting as one server."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections import Counter

from nodes import Node, free_port
from stormkit import Clients

CLIENTS = 2000  # a few thousand, over every worker


def tag(sid: str | None) -> str:
    assert sid is not None
    return sid[:4]


async def test_workers_act_as_one_server(nodes: list[Node]) -> None:
    node = Node(free_port(), "--workers", "3", "--op-timeout", "10")
    nodes.append(node)
    await node.until(lambda h: h["cluster"]["workers"] == 3, what="3 workers")
    clients = Clients(node.url)
    pokees = await clients.pokees_(CLIENTS)
    by_worker = Counter(tag(p.sid) for p in pokees)
    assert len(by_worker) == 3, by_worker  # the kernel spread them over every worker
    await node.until(lambda h: h["cluster"]["clients"] == CLIENTS, what="every client in the view")
    await asyncio.sleep(1.5)  # every worker's view, not only the one that answered, is fresh
    monitor = await clients.monitor()
    try:
        # A unicast to a client of another worker than the monitor's.
        first = await monitor.initiate({"type": "unicast"})
        origin = first["op"][:4]
        await monitor.status_of(first["op"])
        far = next(p for p in pokees if tag(p.sid) != origin)
        ack = await monitor.initiate({"type": "unicast", "destId": far.sid})
        status = await monitor.status_of(ack["op"])
        assert status["unicast"]["clientId"] == far.sid and status["summary"]["lost"] == 0
        assert far.pokes[-1]["id"].split("@")[1].startswith(tag(far.sid))
        # A broadcast is answered by every client of every worker.
        ack = await monitor.initiate({"type": "broadcast"})
        assert ack["expected"] == CLIENTS
        status = await monitor.status_of(ack["op"])
        assert (status["summary"]["received"], len(status["broadcast"])) == (CLIENTS, CLIENTS)
        # A tree's pokes land on several workers, and its links hold across them.
        ack = await monitor.initiate({"type": "tree", "treeLeaves": 128})
        status = await monitor.status_of(ack["op"])
        tree = status["tree"]
        assert len(tree) == 255 and status["summary"]["lost"] == 0
        assert len({tag(e["clientId"]) for e in tree}) == 3
        answered = {(e["depth"], e["clientId"]) for e in tree}
        for entry in tree:
            if entry["depth"]:
                assert (entry["depth"] - 1, entry["parent"]) in answered
        overview = await monitor.request()
        assert overview["clients"] == CLIENTS and len(overview["cluster"]["perWorker"]) == 3
        # /metrics, wherever the scrape lands, shows every worker.
        by_worker = await asyncio.to_thread(node.metric, "msstorm_clients")
        assert len(by_worker) == 3 and sum(by_worker.values()) == CLIENTS
        pokes = await asyncio.to_thread(node.metric, "msstorm_pokes_sent_total")
        assert sum(pokes.values()) == 1 + 1 + CLIENTS + 255
    finally:
        await monitor.close()
        clients.close()


async def test_a_killed_worker_is_lost_and_restarted(nodes: list[Node]) -> None:
    node = Node(free_port(), "--workers", "2", "--op-timeout", "20")
    nodes.append(node)
    await node.until(lambda h: h["cluster"]["workers"] == 2, what="2 workers")
    clients = Clients(node.url)
    pokees = await clients.pokees_(80)
    await node.until(lambda h: h["cluster"]["clients"] == 80, what="80 clients in the view")
    await asyncio.sleep(1.5)  # every worker's view is fresh
    monitor = await clients.monitor()
    try:
        origin = (await monitor.request())["cluster"]["worker"]
        victims = [p for p in pokees if tag(p.sid) != origin]
        assert victims, "every client landed on the monitor's worker"
        for pokee in victims:
            pokee.answering = False  # the poke reaches them, the answer never comes
        view = (await monitor.request())["cluster"]["perWorker"]
        victim_tag = tag(victims[0].sid)
        victim_pid = view[victim_tag]["pid"]
        ack = await monitor.initiate({"type": "broadcast"})
        assert ack["expected"] == 80
        while any(not p.pokes for p in pokees):
            await asyncio.sleep(0.01)
        os.kill(victim_pid, signal.SIGKILL)
        status = await monitor.status_of(ack["op"], timeout=15)
        summary = status["summary"]
        assert status["done"] and "timedOut" not in status  # it ended before its deadline
        assert (summary["received"], summary["lost"]) == (80 - len(victims), len(victims))
        assert status["workersLost"] == [victim_tag]
        await node.until(
            lambda h: (
                h["cluster"]["workers"] == 2
                and h["cluster"]["perWorker"].get(victim_tag, {}).get("pid")
                not in (None, victim_pid)
            ),
            what="the worker restarted, back in the cluster",
        )
    finally:
        await monitor.close()
        clients.close()


async def test_more_clients_than_the_workers_hold_is_refused() -> None:
    done = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "msstorm.storm.cli",
        "--max-clients",
        "100000",
        "--workers",
        "2",
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(done.communicate(), 20)
    assert done.returncode == 2  # a usage error, refused before any worker starts
    assert b"100,000 clients need at least 6 workers" in err
