"""The peers in their multi-process forms, what bench/run_storm.py runs above one
process's 20,000 files: Node socket.io under the cluster module with
@socket.io/cluster-adapter, python-socketio as processes on one port with
``AsyncRedisManager`` on a real redis-server. Each plays MessageStorm as one
server: a monitor on any process sees every client, reaches a client of another
process, and operations span them all. (msstorm's own workers: tests/cluster/.)
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Redis, Storm, running, swarm, wait_for_clients

WORKERS = 2
CLIENTS = 400


@pytest.fixture(scope="module", params=("node", "python-socketio"))
def cluster(request: pytest.FixtureRequest, node_modules: Path) -> Iterator[Storm]:
    """A peer in ``WORKERS`` processes with ``CLIENTS`` swarm clients over them."""
    with contextlib.ExitStack() as stack:
        flags = ["--workers", str(WORKERS)]
        if request.param == "python-socketio":
            flags += ["--redis", stack.enter_context(Redis()).url]
        server = stack.enter_context(running(request.param, *flags, group=True))
        stack.enter_context(swarm(server, CLIENTS))
        asyncio.run(wait_for_clients(server, CLIENTS, timeout=60))
        yield server


def finished(status: dict[str, Any], kind: str, expected: int) -> None:
    assert status["type"] == kind and status["done"] is True, status
    summary = status["summary"]
    assert (summary["expected"], summary["received"], summary["lost"]) == (expected, expected, 0)


async def test_every_process_holds_clients(cluster: Storm, monitor: Any) -> None:
    m = await monitor(cluster.url)
    overview = await m.request()
    assert overview["clients"] == CLIENTS
    view = overview["cluster"]
    assert view["workers"] == WORKERS
    per = {int(w): v["clients"] for w, v in view["perWorker"].items()}
    assert sorted(per) == list(range(WORKERS))
    assert sum(per.values()) == CLIENTS
    assert all(n > 0 for n in per.values()), per  # the kernel spread them


async def test_broadcast_reaches_every_process(cluster: Storm, monitor: Any) -> None:
    m = await monitor(cluster.url)
    ack = await m.initiate({"type": "broadcast"})
    assert ack["expected"] == CLIENTS
    status = await m.status_of(ack["op"])
    finished(status, "broadcast", CLIENTS)
    assert len(status["broadcast"]) == CLIENTS


async def test_tree_spans_processes_and_unicast_reaches_another(
    cluster: Storm, monitor: Any
) -> None:
    m = await monitor(cluster.url)
    here = (await m.request({"detail": "summary"}))["cluster"]["worker"]
    ack = await m.initiate({"type": "tree", "treeLeaves": 128})
    assert ack["expected"] == 255
    status = await m.status_of(ack["op"])
    finished(status, "tree", 255)
    tree = status["tree"]
    assert Counter(e["depth"] for e in tree) == {d: 2**d for d in range(8)}
    workers = Counter(e["worker"] for e in tree)
    assert set(workers) == set(range(WORKERS)), workers  # picks uniform over all clients
    # every poke was caused by an answer one level up, wherever that client lives
    poked = Counter((e["depth"], e["clientId"]) for e in tree)
    for (depth, parent), children in Counter(
        (e["depth"], e["parent"]) for e in tree if e["depth"]
    ).items():
        assert children == 2 * poked[(depth - 1, parent)]
    # a client of a process other than the monitor's, by its sid
    there = next(e["clientId"] for e in tree if e["worker"] != here)
    ack = await m.initiate({"type": "unicast", "destId": there})
    status = await m.status_of(ack["op"])
    finished(status, "unicast", 1)
    assert status["unicast"]["clientId"] == there
    refused = await m.initiate({"type": "unicast", "destId": "nobody"})
    assert refused["error"]["code"] == "unknown-client"


async def test_status_of_an_operation_from_another_process(cluster: Storm, monitor: Any) -> None:
    """A second monitor, on whichever process the kernel gives it, finds the operation."""
    first = await monitor(cluster.url)
    ack = await first.initiate({"type": "unicast"})
    await first.status_of(ack["op"])
    for _ in range(8):  # several connections: some land on another process
        other = await monitor(cluster.url)
        status = await other.request({"op": ack["op"], "detail": "summary"})
        finished(status, "unicast", 1)
        assert ack["op"] in (await other.request({"detail": "summary"}))["finished"]
