"""Who is alive, on the real bus: a worker that dies is known at once, and a bus or a
worker that stalls makes nobody gone."""

from __future__ import annotations

import asyncio
import os
import signal
import tempfile
from pathlib import Path
from typing import Any

from nodes import Node, free_port

from msstorm.cluster.hub import Hub, HubBus
from msstorm.cluster.membership import BEAT_EVERY, GONE_AFTER


async def test_the_hub_says_at_once_that_a_worker_left() -> None:
    with tempfile.TemporaryDirectory() as directory:
        hub = Hub(str(Path(directory) / "hub.sock"))
        await hub.start()
        heard: list[dict[str, Any]] = []
        staying, leaving = HubBus("AAAA", hub.path), HubBus("BBBB", hub.path)
        staying.listen(lambda message, blob: heard.append(message))
        try:
            await staying.start()
            await leaving.start()
            leaving.publish({"t": "beat"})
            staying.echo({"t": "echo", "at": 1.0})  # through the hub, back to itself
            while len(heard) < 2:
                await asyncio.sleep(0.01)
            await leaving.close()
            while len(heard) < 3:
                await asyncio.sleep(0.01)
            beat, echo, left = sorted(heard, key=lambda m: str(m["t"]))
            assert (beat["t"], beat["from"]) == ("beat", "BBBB")
            assert echo == {"t": "echo", "at": 1.0}
            assert left == {"t": "left", "tag": "BBBB"}
        finally:
            await staying.close()
            await hub.close()


async def test_a_stalled_hub_makes_nobody_gone(nodes: list[Node]) -> None:
    """The supervisor runs the hub: stopped for twice the time a silent worker is
    given, every worker's beats wait in it, and so do the echoes of their own."""
    node = Node(free_port(), "--workers", "3")
    nodes.append(node)
    await node.until(lambda h: h["cluster"]["workers"] == 3, what="3 workers")
    await asyncio.sleep(1.5)  # every worker's view is fresh
    os.kill(node.process.pid, signal.SIGSTOP)
    try:
        await asyncio.sleep(2 * GONE_AFTER)
    finally:
        os.kill(node.process.pid, signal.SIGCONT)
    await asyncio.sleep(3.0)  # the hub relays what waited; the beats flow again
    for _ in range(6):  # whichever worker answers
        await node.until(lambda h: h["cluster"]["workers"] == 3, what="3 workers still")
    assert "is gone" not in node.output(), node.output()


async def test_a_worker_frozen_past_its_beats_is_not_gone(nodes: list[Node]) -> None:
    """A worker stopped for two beat intervals (a long send loop, a process starved of
    the CPU) misses beats but is alive: neither its peers, nor it when it wakes up to
    their queued beats, take anyone for gone. The freeze, plus the up to one interval
    since its last beat, stays under the grace of an idle machine."""
    freeze = 2 * BEAT_EVERY
    assert freeze + BEAT_EVERY < GONE_AFTER
    node = Node(free_port(), "--workers", "3")
    nodes.append(node)
    state = await node.until(lambda h: h["cluster"]["workers"] == 3, what="3 workers")
    pids = [w["pid"] for w in state["cluster"]["perWorker"].values()]
    for pid in pids:  # each worker in turn, its beats at whatever phase they are
        await asyncio.sleep(1.5)  # every worker's view is fresh
        os.kill(pid, signal.SIGSTOP)
        try:
            await asyncio.sleep(freeze)
        finally:
            os.kill(pid, signal.SIGCONT)
    await asyncio.sleep(2.0)  # the last one's beats flow again
    for _ in range(6):  # whichever worker answers
        await node.until(lambda h: h["cluster"]["workers"] == 3, what="3 workers still")
    assert "is gone" not in node.output(), node.output()
