"""A storm across machines: each its own TCP stack, HAProxy in front of 3 nodes over a
real redis-server, swarms on 2 other machines, msstorm-monitor on a fifth."""

from __future__ import annotations

import asyncio
import json
import math
from collections import Counter
from typing import Any

import socketio
from lab import TOKEN, Lab
from stormkit import Monitor, answer_to


def run(lab: Lab, scenario: str, *options: str) -> tuple[int, dict[str, Any]]:
    code, out = lab.monitor("run", scenario, "--json", *options)
    return code, json.loads(out)


def test_a_storm_across_the_machines(lab: Lab) -> None:
    clients = lab.clients
    spread = lab.per_node()
    assert all(n > clients // 6 for n in spread.values()), spread  # the balancer spread them
    code, document = run(lab, "unicast*5, broadcast*3, tree:1024*2", "--details")
    assert code == 0 and document["ok"], document.get("totals")
    operations = document["operations"]
    assert [op["type"] for op in operations] == ["unicast"] * 5 + ["broadcast"] * 3 + ["tree"] * 2
    for op in operations:
        summary = op["summary"]
        assert op["done"] and summary["lost"] == 0 and summary["received"] == summary["expected"]
    assert [op["summary"]["expected"] for op in operations[5:8]] == [clients] * 3
    for op in operations[8:]:
        tree = op["tree"]
        assert len(tree) == 2047
        assert {entry["clientId"][:2] for entry in tree} == {"N1", "N2", "N3"}
        answered = {(entry["depth"], entry["clientId"]) for entry in tree}
        for entry in tree:  # a child's parent answered one level up, on whichever machine
            assert entry["depth"] == 0 or (entry["depth"] - 1, entry["parent"]) in answered


def chi_square_p(statistic: float, dof: int) -> float:
    """P(X >= statistic) for X chi-square with ``dof`` degrees of freedom: the regularized
    upper incomplete gamma Q(dof/2, statistic/2), by its series."""
    s, x = dof / 2.0, statistic / 2.0
    if x <= 0:
        return 1.0
    term = total = 1.0 / s
    n = 1
    while term > total * 1e-15:
        term *= x / (s + n)
        total += term
        n += 1
    lower = math.exp(s * math.log(x) - x - math.lgamma(s)) * total
    return max(0.0, 1.0 - lower)


def test_random_picks_are_uniform_over_the_nodes(lab: Lab) -> None:
    """Each tree poke goes to a client drawn from the whole cluster: by node, the pokes
    follow the nodes' client counts (chi-square, 2 degrees of freedom)."""
    held = lab.per_node()
    code, document = run(lab, "tree:4096", "--details")
    assert code == 0, document.get("totals")
    (tree,) = [op["tree"] for op in document["operations"]]
    drawn = Counter(entry["clientId"][:2] for entry in tree)
    total = sum(held.values())
    statistic = sum(
        (drawn[node] - len(tree) * n / total) ** 2 / (len(tree) * n / total)
        for node, n in held.items()
    )
    p = chi_square_p(statistic, len(held) - 1)
    assert p > 1e-3, (held, dict(drawn), statistic)


class SioPokee:
    """An unmodified python-socketio client that answers pokes."""

    def __init__(self) -> None:
        self.sio = socketio.AsyncClient(reconnection=False)
        self.pokes: list[dict[str, Any]] = []
        self.sio.on("poke", self.poke)

    async def poke(self, poke: dict[str, Any]) -> None:
        self.pokes.append(poke)
        await self.sio.emit("pokeBack", answer_to(poke))


async def test_default_transport_clients_through_the_balancer(lab: Lab) -> None:
    """Polling first, then the upgrade, through HAProxy: each session's requests reach
    its node (the sid names it), sessions land on every node, and they answer."""
    pokees = [SioPokee() for _ in range(30)]
    monitor = Monitor()
    try:
        for i, pokee in enumerate(pokees):
            transports = ["polling"] if i % 3 == 0 else None  # None: the client's default
            await asyncio.wait_for(pokee.sio.connect(lab.lb_url, transports=transports), 10)
        upgraded = [p for i, p in enumerate(pokees) if i % 3]
        assert {p.sio.transport() for p in upgraded} == {"websocket"}
        assert {p.sio.transport() for p in pokees[0::3]} == {"polling"}
        nodes = Counter(p.sio.get_sid()[:2] for p in pokees)
        assert set(nodes) == {"N1", "N2", "N3"}, nodes
        total = lab.clients + len(pokees)
        await asyncio.to_thread(lab.whole, total)
        await monitor.sio.connect(
            lab.nodes[1].url,
            transports=["websocket"],
            namespaces=["/monitor"],
            auth={"token": TOKEN},
        )
        for kind in ("broadcast", "broadcast"):
            ack = await monitor.initiate({"type": kind})
            assert ack["expected"] == total
            status = await monitor.status_of(ack["op"], timeout=20)
            assert (status["summary"]["received"], status["summary"]["lost"]) == (total, 0)
        assert all(len(p.pokes) == 2 for p in pokees)  # polling ones too, after many polls
    finally:
        await monitor.close()
        for pokee in pokees:
            await pokee.sio.disconnect()
