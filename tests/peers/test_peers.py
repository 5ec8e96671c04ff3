"""msstorm-server and its peers (Node socket.io, python-socketio) side by side:
the same swarm, the same monitor, the same answers.

Every test runs against each server of ``SERVERS`` (the ``storm`` fixture), with
``CLIENTS`` msstorm-client connections answering pokes. Nothing here is timed:
speed is bench/'s business; this suite makes sure the peers play the same game.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest
import socketio

CLIENTS = 200
TOKEN = "peer-suite-token"
MAX_TREE_LEAVES = 1024
STATS = ("min", "p50", "p90", "p99", "p999", "max", "mean")


def check_summary(status: dict[str, Any], kind: str, expected: int) -> None:
    """A finished operation's status, every poke answered."""
    assert status["type"] == kind and status["done"] is True
    assert "timedOut" not in status
    # The contract's keys, in order; a server may add others (msstorm adds destId, treeLeaves).
    contract = ["op", "type", "done", "summary", kind]
    assert [key for key in status if key in contract] == contract
    assert set(status) - set(contract) <= {"destId", "treeLeaves"}
    summary = status["summary"]
    assert set(summary) == {"expected", "received", "lost", "elapsedMs", "rtt", "pingDelay"}
    assert (summary["expected"], summary["received"], summary["lost"]) == (expected, expected, 0)
    assert summary["elapsedMs"] > 0
    for name in ("rtt", "pingDelay"):
        assert list(summary[name]) == list(STATS)
    rtt = summary["rtt"]
    assert 0 < rtt["min"] <= rtt["p50"] <= rtt["p90"] <= rtt["p99"] <= rtt["p999"] <= rtt["max"]
    assert rtt["min"] <= rtt["mean"] <= rtt["max"]


async def test_unicast(storm: Any, monitor: Any) -> None:
    m = await monitor(storm.url)
    ack = await m.initiate({"type": "unicast"})
    assert set(ack) == {"op", "expected"} and ack["expected"] == 1
    status = await m.status_of(ack["op"])
    assert status["op"] == ack["op"]
    check_summary(status, "unicast", 1)
    answer = status["unicast"]
    assert set(answer) == {"clientId", "pingDelay", "rtt"}
    assert isinstance(answer["clientId"], str) and answer["rtt"] > 0
    # the same client again, by its sid
    again = await m.initiate({"type": "unicast", "destId": answer["clientId"]})
    status = await m.status_of(again["op"])
    check_summary(status, "unicast", 1)
    assert status["unicast"]["clientId"] == answer["clientId"]


async def test_broadcast(storm: Any, monitor: Any) -> None:
    m = await monitor(storm.url)
    ack = await m.initiate({"type": "broadcast"})
    assert ack["expected"] == CLIENTS
    status = await m.status_of(ack["op"])
    check_summary(status, "broadcast", CLIENTS)
    answers = status["broadcast"]
    assert len(answers) == CLIENTS
    assert all(len(pair) == 2 and pair[1] > 0 for pair in answers)


async def test_tree_of_64_leaves(storm: Any, monitor: Any) -> None:
    m = await monitor(storm.url)
    ack = await m.initiate({"type": "tree", "treeLeaves": 64})
    assert ack["expected"] == 127
    status = await m.status_of(ack["op"])
    check_summary(status, "tree", 127)
    tree = status["tree"]
    assert len(tree) == 127
    assert all(set(e) == {"parent", "rtt", "pingDelay", "clientId", "depth"} for e in tree)
    assert Counter(e["depth"] for e in tree) == {d: 2**d for d in range(7)}
    (root,) = [e for e in tree if e["depth"] == 0]
    assert root["parent"] == -1
    # every poke was caused by the answer of a client poked one level up
    by_depth: dict[int, Counter[str]] = {}
    for e in tree:
        by_depth.setdefault(e["depth"], Counter())[e["clientId"]] += 1
    caused = Counter((e["depth"], e["parent"]) for e in tree if e["depth"])
    for (depth, parent), children in caused.items():
        # each answer makes two pokes: a client poked n times at depth-1 has 2n children
        assert children == 2 * by_depth[depth - 1][parent]


async def test_status_requests(storm: Any, monitor: Any) -> None:
    m = await monitor(storm.url)
    overview = await m.request()
    contract = ["clients", "operations", "finished", "counts"]
    assert [key for key in overview if key in contract] == contract
    assert set(overview) - set(contract) <= {"cluster", "settings"}  # msstorm's extras
    assert overview["clients"] == CLIENTS
    ack = await m.initiate({"type": "unicast"})
    await m.status_of(ack["op"])
    full = await m.request({"op": ack["op"]})
    check_summary(full, "unicast", 1)
    short = await m.request({"op": ack["op"], "detail": "summary"})
    assert list(short) == ["op", "type", "done", "summary"]
    overview = await m.request({"detail": "summary"})
    assert ack["op"] in overview["finished"]
    assert overview["counts"]["unicast completed"] >= 1
    assert (await m.request({"op": "nope"}))["error"]["code"] == "unknown-operation"
    assert (await m.request([1]))["error"]["code"] == "bad-request"
    assert (await m.request("summary"))["error"]["code"] == "bad-request"


BAD_REQUESTS: list[tuple[tuple[Any, ...], str]] = [
    ((), "bad-request"),
    (("broadcast",), "bad-request"),
    (([{"type": "broadcast"}],), "bad-request"),
    (({"type": "broadcast"}, 2), "bad-request"),
    (({},), "bad-type"),
    (({"type": "multicast"},), "bad-type"),
    (({"type": 1},), "bad-type"),
    (({"type": "tree"},), "bad-tree-leaves"),
    (({"type": "tree", "treeLeaves": 3},), "bad-tree-leaves"),
    (({"type": "tree", "treeLeaves": 0},), "bad-tree-leaves"),
    (({"type": "tree", "treeLeaves": -4},), "bad-tree-leaves"),
    (({"type": "tree", "treeLeaves": "4"},), "bad-tree-leaves"),
    (({"type": "tree", "treeLeaves": True},), "bad-tree-leaves"),
    (({"type": "tree", "treeLeaves": 2 * MAX_TREE_LEAVES},), "tree-too-large"),
    (({"type": "tree", "treeLeaves": 2**40},), "tree-too-large"),
    (({"type": "unicast", "destId": 5},), "bad-dest"),
    (({"type": "unicast", "destId": ["x"]},), "bad-dest"),
    (({"type": "unicast", "destId": "nobody"},), "unknown-client"),
]


async def test_bad_initiate_poke(storm: Any, monitor: Any) -> None:
    m = await monitor(storm.url)
    before = (await m.request({"detail": "summary"}))["counts"]
    codes = []
    for args, _ in BAD_REQUESTS:
        answer = await m.initiate(*args)
        assert list(answer) == ["error"], (args, answer)
        assert isinstance(answer["error"]["message"], str) and answer["error"]["message"]
        codes.append(answer["error"]["code"])
    assert codes == [code for _, code in BAD_REQUESTS]
    # refusals are counted, and start nothing
    after = await m.request({"detail": "summary"})
    assert after["operations"] == []
    refused = Counter(code for _, code in BAD_REQUESTS)
    for code, n in refused.items():
        key = f"initiatePoke refused: {code}"
        assert after["counts"][key] - before.get(key, 0) == n


def test_refusals_without_clients(storm: Any) -> None:
    answers = storm.before_clients
    for kind in ("broadcast", "unicast", "tree"):
        assert answers[kind]["error"]["code"] == "no-clients", answers
    assert answers["tree of 3"]["error"]["code"] == "bad-tree-leaves"
    assert answers["overview"]["clients"] == 0


async def refused(url: str, auth: Any) -> list[Any]:
    """Connect a monitor with ``auth``: it must be refused; the CONNECT_ERROR data."""
    sio = socketio.AsyncClient(reconnection=False)
    errors: list[Any] = []
    sio.on("connect_error", errors.append, namespace="/monitor")
    with pytest.raises(socketio.exceptions.ConnectionError):
        await sio.connect(
            url, transports=["websocket"], namespaces=["/monitor"], auth=auth, wait_timeout=5
        )
    await sio.disconnect()
    return errors


async def test_wrong_token_is_refused(storm: Any, monitor: Any) -> None:
    m = await monitor(storm.url)
    before = (await m.request({"detail": "summary"}))["counts"].get("monitor refused", 0)
    for auth in ({"token": TOKEN + "x"}, {"token": ""}, {"token": 1}, {}, None):
        assert await refused(storm.url, auth) == [{"message": "invalid monitor token"}], auth
    after = (await m.request({"detail": "summary"}))["counts"]["monitor refused"]
    assert after - before == 5
    # the right token still works
    other = await monitor(storm.url)
    assert (await other.request({"detail": "summary"}))["clients"] == CLIENTS


class Pokee:
    """A python-socketio client of "/" that keeps its pokes and answers when told."""

    def __init__(self) -> None:
        self.sio = socketio.AsyncClient(reconnection=False)
        self.pokes: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.gone = asyncio.Event()
        self.sio.on("poke", self.pokes.put_nowait)
        self.sio.on("disconnect", lambda *reason: self.gone.set())

    async def connect(self, url: str) -> str:
        await self.sio.connect(url, transports=["websocket"], wait_timeout=5)
        sid = self.sio.get_sid("/")
        assert sid is not None
        return sid

    async def answer(self, poke: dict[str, Any]) -> None:
        back = {"id": poke["id"], "delay": 0.5, "serverTs": poke["ts"]}
        await self.sio.emit("pokeBack", back)


async def until_clients(m: Any, count: int) -> None:
    for _ in range(100):
        if (await m.request({"detail": "summary"}))["clients"] == count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"never {count} clients")


async def test_silent_client_times_out(storm: Any, monitor: Any) -> None:
    """A client that does not answer: its unicast and the broadcast end at
    --op-timeout with its answer lost; its late answer is counted, and ignored."""
    m = await monitor(storm.url)
    silent = Pokee()
    sid = await silent.connect(storm.url)
    try:
        await until_clients(m, CLIENTS + 1)
        unicast = await m.initiate({"type": "unicast", "destId": sid})
        broadcast = await m.initiate({"type": "broadcast"})
        assert broadcast["expected"] == CLIENTS + 1
        running = await m.request({"op": unicast["op"]})
        assert running["done"] is False and running["unicast"] is None
        status = await m.status_of(unicast["op"])
        contract = ["op", "type", "done", "timedOut", "summary", "unicast"]
        assert [key for key in status if key in contract] == contract
        assert status["done"] is True and status["timedOut"] is True
        assert status["unicast"] is None
        summary = status["summary"]
        assert (summary["expected"], summary["received"], summary["lost"]) == (1, 0, 1)
        assert summary["rtt"] == dict.fromkeys(STATS)
        status = await m.status_of(broadcast["op"])
        assert status["timedOut"] is True and len(status["broadcast"]) == CLIENTS
        summary = status["summary"]
        assert (summary["received"], summary["lost"]) == (CLIENTS, 1)
        # too late now
        before = (await m.request({"detail": "summary"}))["counts"]
        for _ in range(2):
            await silent.answer(await asyncio.wait_for(silent.pokes.get(), 1))
        await silent.answer({"id": "no-such-op.00000000", "ts": 1.0})
        late = "answers unknown or late"
        for _ in range(100):  # the answers travel on another connection than the request
            after = (await m.request({"detail": "summary"}))["counts"]
            if after.get(late, 0) - before.get(late, 0) >= 3:
                break
            await asyncio.sleep(0.05)
        assert after[late] - before.get(late, 0) == 3, (before, after)
        assert after["unicast timed out"] >= 1 and after["broadcast timed out"] >= 1
        assert not silent.gone.is_set()
    finally:
        await silent.sio.disconnect()
    await until_clients(m, CLIENTS)


@pytest.mark.parametrize(
    "answer", [("nonsense",), ({"id": 1, "delay": 0, "serverTs": 0},), ({"id": "x.1"},)]
)
async def test_malformed_pokeback_closes_the_client(
    storm: Any, monitor: Any, answer: tuple[Any, ...]
) -> None:
    m = await monitor(storm.url)
    before = (await m.request({"detail": "summary"}))["counts"].get("malformed pokeBacks", 0)
    broken = Pokee()
    await broken.connect(storm.url)
    await broken.sio.emit("pokeBack", answer[0])
    await asyncio.wait_for(broken.gone.wait(), 5)
    await broken.sio.disconnect()
    counts = (await m.request({"detail": "summary"}))["counts"]
    assert counts["malformed pokeBacks"] - before == 1
    await until_clients(m, CLIENTS)


async def test_swarm_saw_every_poke(storm: Any, monitor: Any) -> None:
    """Last: stop the swarm; it answered as many pokes as the server counted answers."""
    m = await monitor(storm.url)
    counts = (await m.request({"detail": "summary"}))["counts"]
    answered = counts["answers"]  # the silent and broken clients above never answered in time
    code, summary, err = storm.stop_swarm()
    assert summary is not None, err
    assert summary["peak_connected"] == CLIENTS and summary["errors"] == {}, summary
    assert summary["reconnects"] == 0
    assert summary["pokes_answered"] == answered
    assert code == 0, err


@pytest.mark.parametrize("name", ["node", "python-socketio"])
async def test_status_request_without_ack_gets_a_status_event(
    launch: Any, monitor: Any, name: str
) -> None:
    """PROTOCOL.md: statusRequest is answered with a ``status`` event when it asks
    for no ack. (msstorm-server drops the answer then: not tested here for it.)"""
    server = launch(name)
    m = await monitor(server.url)
    await m.sio.emit("statusRequest", {"detail": "summary"}, namespace="/monitor")
    status = await asyncio.wait_for(m.events.get(), 5)
    assert status["clients"] == 0 and status["operations"] == []
    await m.sio.emit("statusRequest", {"op": "nope"}, namespace="/monitor")
    status = await asyncio.wait_for(m.events.get(), 5)
    assert status["error"]["code"] == "unknown-operation"
