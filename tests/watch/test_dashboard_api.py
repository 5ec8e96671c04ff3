"""The dashboard's JSON, from an HTTP client: the token, the state, operations started."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from stormkit import TOKEN, StormServer

import msstorm
from msstorm.storm import Storm
from msstorm.storm.dashboard import Dashboard


@pytest.fixture
async def watched() -> AsyncIterator[tuple[StormServer, str]]:
    server = msstorm.Server(ping_interval=5000, ping_timeout=5000)
    storm = Storm(server, token=TOKEN, op_timeout=3, max_tree_leaves=64)
    await storm.start()
    listener = await msstorm.serve(server, host="127.0.0.1", port=0)
    dashboard = Dashboard(storm)
    await dashboard.start("127.0.0.1", 0)
    served = StormServer(storm, listener)
    try:
        yield served, f"http://127.0.0.1:{dashboard.port}/dashboard/"
    finally:
        served.close()
        await dashboard.close()
        listener.close()
        await listener.wait_closed()
        await storm.close()


async def call(
    method: str, url: str, token: str | None = TOKEN, body: Any = None, raw: bytes | None = None
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url, headers=headers, json=body, data=raw) as response,
    ):
        return response.status, await response.json()


async def test_nothing_of_the_storm_without_the_token(watched: tuple[StormServer, str]) -> None:
    server, base = watched
    await server.pokees_(3)
    for token in (None, "wrong", TOKEN + "x", ""):
        for method, path in (("GET", "api/state"), ("POST", "api/operations")):
            status, answer = await call(method, base + path, token, {"type": "broadcast"})
            assert (status, answer["error"]["code"]) == (401, "bad-token")
            assert set(answer) == {"error"}
    assert server.storm.counts["broadcast started"] == 0
    # The page itself is public: it holds nothing of the storm.
    async with aiohttp.ClientSession() as session:
        async with session.get(base) as response:
            assert response.status == 200
            assert "default-src 'self'" in response.headers["Content-Security-Policy"]
            assert "dashboard.js" in await response.text()
        async with session.get(base + "dashboard.js") as response:
            assert response.status == 200 and "api/state" in await response.text()
        async with session.get(base + "secret.txt") as response:
            assert response.status == 404


async def test_the_state_and_operations_started_from_the_dashboard(
    watched: tuple[StormServer, str],
) -> None:
    server, base = watched
    pokees = await server.pokees_(40)
    await asyncio.sleep(1.2)  # a figures sample with the clients in it
    status, state = await call("GET", base + "api/state")
    assert status == 200
    assert state["cluster"]["clients"] == 40
    totals = state["totals"]
    assert totals["connections"] == 40 and totals["websocket"] == 40 and totals["polling"] == 0
    assert totals["rss"] > 0 and totals["rssPerConnection"] > 0
    assert state["operations"] == {"running": [], "finished": []}

    # The monitor namespace's limits and errors, as initiatePoke's ack has them.
    for request, code in (
        ({"type": "tree", "treeLeaves": 3}, "bad-tree-leaves"),
        ({"type": "tree", "treeLeaves": 128}, "tree-too-large"),
        ({"type": "nope"}, "bad-type"),
        ({"type": "unicast", "destId": "nobody"}, "unknown-client"),
        ([1, 2], "bad-request"),
    ):
        status, answer = await call("POST", base + "api/operations", body=request)
        assert (status, answer["error"]["code"]) == (200, code), request
    status, answer = await call("POST", base + "api/operations", raw=b"{not json")
    assert (status, answer["error"]["code"]) == (400, "bad-request")

    status, ack = await call("POST", base + "api/operations", body={"type": "broadcast"})
    assert status == 200 and ack["expected"] == 40
    finished = await until_finished(base, ack["op"])
    assert finished["summary"]["received"] == 40 and finished["summary"]["lost"] == 0
    assert "broadcast" not in finished  # never a per-client array
    status, ack = await call(
        "POST", base + "api/operations", body={"type": "unicast", "destId": pokees[3].sid}
    )
    await until_finished(base, ack["op"])
    status, ack = await call(
        "POST", base + "api/operations", body={"type": "tree", "treeLeaves": 16}
    )
    tree = await until_finished(base, ack["op"])
    assert tree["summary"]["received"] == 31
    _, state = await call("GET", base + "api/state")
    shown = state["distribution"]
    assert shown["op"] == ack["op"] and shown["done"]
    assert sum(n for _, _, n in shown["rtt"]) == 31
    assert all(low < high for low, high, _ in shown["rtt"])
    depths = state["tree"]["depths"]
    assert [d["depth"] for d in depths] == [0, 1, 2, 3, 4]
    assert [d["pokes"] for d in depths] == [1, 2, 4, 8, 16]
    assert [e["type"] for e in state["operations"]["finished"]] == ["broadcast", "unicast", "tree"]


async def until_finished(base: str, op: str, timeout: float = 10.0) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        _, state = await call("GET", base + "api/state")
        for entry in state["operations"]["finished"]:
            if entry["op"] == op:
                return entry  # type: ignore[no-any-return]
        assert asyncio.get_running_loop().time() < deadline, state["operations"]
        await asyncio.sleep(0.1)
