"""Machines lost and found: every operation concludes, its lost answers counted and
attributed to the node that lost them, and the storm is whole again afterwards."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import AsyncIterator

import pytest
from lab import TOKEN, Lab, wait_for
from stormkit import Clients, Monitor

HEARTBEAT_MS = 2000 + 2000  # the nodes' --ping-interval and --ping-timeout


@pytest.fixture
async def monitor(lab: Lab) -> AsyncIterator[Monitor]:
    """A monitor on this host, talking to the first node (never the one lost)."""
    monitor = Monitor()
    await monitor.sio.connect(
        lab.nodes[0].url, transports=["websocket"], namespaces=["/monitor"], auth={"token": TOKEN}
    )
    try:
        yield monitor
    finally:
        await monitor.close()


async def whole_broadcast(lab: Lab, monitor: Monitor) -> None:
    """The cluster whole again, and a broadcast with every answer."""
    await asyncio.to_thread(lab.whole, lab.clients, 60)
    ack = await monitor.initiate({"type": "broadcast"})
    assert ack["expected"] == lab.clients
    status = await monitor.status_of(ack["op"], timeout=20)
    assert (status["summary"]["received"], status["summary"]["lost"]) == (lab.clients, 0)
    assert "workersLost" not in status


async def test_a_server_machine_cut_mid_broadcast(lab: Lab, monitor: Monitor) -> None:
    n3 = lab.nodes[2]
    silent = Clients(n3.url)  # poked, never answering: the broadcast is still running
    for pokee in await silent.pokees_(20):
        pokee.answering = False
    total = lab.clients + 20
    try:
        await asyncio.to_thread(lab.whole, total)
        held = lab.per_node()["N3"]  # the silent ones with them
        ack = await monitor.initiate({"type": "broadcast"})
        assert ack["expected"] == total
        deadline = time.monotonic() + 10
        while not all(p.pokes for p in silent.pokees) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        lab.cut("n3")
        status = await monitor.status_of(ack["op"], timeout=20)
        summary = status["summary"]
        assert status["done"] and "timedOut" not in status
        assert status["workersLost"] == sorted(n3.tags)
        assert summary["received"] + summary["lost"] == total
        # The silent ones at least; at most every answer n3 had not yet passed on.
        assert 20 <= summary["lost"] <= held, (summary, held)
        lab.mend("n3")
    finally:
        silent.close()
    await whole_broadcast(lab, monitor)
    up = lambda: set(lab.lb_state().values()) == {"UP"}  # noqa: E731
    await asyncio.to_thread(wait_for, up, 20, "HAProxy sees n3 UP again")


async def test_a_server_machine_that_stops_answering_as_a_broadcast_starts(
    lab: Lab, monitor: Monitor
) -> None:
    """Its clients, as the cluster held them when the monitor asked, are expected and
    lost, and the status names its workers."""
    n3 = lab.nodes[2]
    held = lab.per_node()["N3"]
    assert held > 0
    lab.freeze("n3")
    try:
        ack = await monitor.initiate({"type": "broadcast"})
        assert ack["expected"] == lab.clients
        status = await monitor.status_of(ack["op"], timeout=20)
        summary = status["summary"]
        assert status["done"] and "timedOut" not in status
        assert (summary["received"], summary["lost"]) == (lab.clients - held, held)
        assert status["workersLost"] == sorted(n3.tags)
    finally:
        lab.thaw("n3")
    await whole_broadcast(lab, monitor)


async def test_redis_killed_and_restarted_mid_storm(lab: Lab, monitor: Monitor) -> None:
    """msstorm-monitor runs broadcasts back to back on the monitor machine while
    redis-server is killed, then started again: every one ends, whatever it lost is
    counted and named, and the storm is whole afterwards."""
    storm = subprocess.Popen(
        lab.monitor_argv("run", "broadcast*40", "--pause", "0.25", "--json"),
        stdout=subprocess.PIPE,
    )
    try:
        await asyncio.sleep(2)
        lab.kill_redis()
        await asyncio.sleep(5)
        await asyncio.to_thread(lab.start_redis)
        out, _ = await asyncio.to_thread(storm.communicate, timeout=180)
    finally:
        if storm.poll() is None:
            storm.kill()
    document = json.loads(out)
    operations = document["operations"]
    assert len(operations) == 40
    lost_workers: set[str] = set()
    for op in operations:
        summary = op["summary"]
        assert op["done"] and not op["timedOut"] and "gaveUp" not in op
        assert summary["received"] + summary["lost"] == summary["expected"]
        if summary["lost"]:
            assert op["workersLost"], op  # never lost without saying whose
        lost_workers.update(op.get("workersLost", []))
    assert operations[0]["summary"]["expected"] == lab.clients  # before the kill: whole
    assert lost_workers  # the kill cut the origin off from the others mid-run
    origin = operations[0]["op"][:4]
    all_tags = {tag for node in lab.nodes for tag in node.tags}
    assert lost_workers <= all_tags - {origin}
    await whole_broadcast(lab, monitor)


async def test_a_swarm_machine_cut_off(lab: Lab, monitor: Monitor) -> None:
    """Its clients are lost at the heartbeat timeout; the other swarm's all answer, no
    worker is lost, and the cluster holds the rest."""
    kept, cut = lab.swarm_conns["s1"], lab.swarm_conns["s2"]
    lab.cut("s2")
    ack = await monitor.initiate({"type": "broadcast"})
    assert ack["expected"] == lab.clients
    status = await monitor.status_of(ack["op"], timeout=20)
    summary = status["summary"]
    assert status["done"] and "timedOut" not in status and "workersLost" not in status
    assert (summary["received"], summary["lost"]) == (kept, cut)
    # The last pong may have come just before the cut: a ping interval and its timeout.
    assert summary["elapsedMs"] < 2 * HEARTBEAT_MS
    await asyncio.to_thread(lab.whole, kept)  # every node: every worker, s1's clients
    ack = await monitor.initiate({"type": "broadcast"})
    status = await monitor.status_of(ack["op"], timeout=20)
    assert (status["summary"]["expected"], status["summary"]["lost"]) == (kept, 0)
    lab.mend("s2")
