"""Each MessageStorm operation end to end: real sockets, a python-socketio monitor."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import pytest
import socketio
from stormkit import Pokee, StormServer


async def test_unicast_to_a_given_client(storm_server: StormServer) -> None:
    clients = await storm_server.pokees_(20)
    target = clients[7]
    monitor = await storm_server.monitor()
    ack = await monitor.initiate({"type": "unicast", "destId": target.sid})
    assert ack["expected"] == 1
    status = await monitor.status_of(ack["op"])
    assert status["type"] == "unicast" and status["done"] is True
    assert status["unicast"]["clientId"] == target.sid
    assert status["unicast"]["rtt"] > 0
    assert status["summary"]["received"] == 1 and status["summary"]["lost"] == 0
    assert len(target.pokes) == 1 and sum(len(c.pokes) for c in clients) == 1
    poke = target.pokes[0]
    # "<op>@<worker>.<slot>": the operation, the worker that sent it, its slot there
    assert poke["id"].startswith(ack["op"] + "@") and isinstance(poke["ts"], float)
    await monitor.close()


async def test_unicast_to_a_random_client(storm_server: StormServer) -> None:
    clients = await storm_server.pokees_(20)
    monitor = await storm_server.monitor()
    ack = await monitor.initiate({"type": "unicast"})
    status = await monitor.status_of(ack["op"])
    (poked,) = [c for c in clients if c.pokes]
    assert status["unicast"]["clientId"] == poked.sid
    await monitor.close()


async def test_broadcast_gets_one_answer_per_client(storm_server: StormServer) -> None:
    clients = await storm_server.pokees_(300)
    monitor = await storm_server.monitor()
    ack = await monitor.initiate({"type": "broadcast"})
    assert ack["expected"] == 300
    status = await monitor.status_of(ack["op"])
    assert status["done"] is True and "timedOut" not in status
    summary = status["summary"]
    assert (summary["expected"], summary["received"], summary["lost"]) == (300, 300, 0)
    assert len(status["broadcast"]) == 300
    assert all(len(pair) == 2 and pair[1] > 0 for pair in status["broadcast"])
    assert all(len(c.pokes) == 1 for c in clients)
    assert len({c.pokes[0]["id"] for c in clients}) == 300  # every poke its own id
    rtt = summary["rtt"]
    assert rtt["min"] <= rtt["p50"] <= rtt["p90"] <= rtt["p99"] <= rtt["p999"] <= rtt["max"]
    await monitor.close()


async def test_tree_of_64_leaves(storm_server: StormServer) -> None:
    clients = await storm_server.pokees_(100)
    monitor = await storm_server.monitor()
    ack = await monitor.initiate({"type": "tree", "treeLeaves": 64})
    assert ack["expected"] == 127
    status = await monitor.status_of(ack["op"])
    tree = status["tree"]
    assert status["done"] is True and len(tree) == 127
    assert status["summary"]["received"] == 127
    depths = Counter(entry["depth"] for entry in tree)
    assert depths == {d: 2**d for d in range(7)}
    (root,) = [e for e in tree if e["depth"] == 0]
    assert root["parent"] == -1
    by_depth: dict[int, set[str]] = {}
    for entry in tree:
        by_depth.setdefault(entry["depth"], set()).add(entry["clientId"])
    for entry in tree:
        if entry["depth"] > 0:  # its parent answered a poke one level up
            assert entry["parent"] in by_depth[entry["depth"] - 1]
    pokes = [p for c in clients for p in c.pokes]
    assert len(pokes) == 127
    assert Counter(p["treeLeaves"] for p in pokes) == {64 >> d: 2**d for d in range(7)}
    assert {p["treeId"] for p in pokes} == {ack["op"]}
    assert sum(1 for p in pokes if p["parentId"] == -1) == 1
    await monitor.close()


async def test_two_operations_at_once_do_not_mix(storm_server: StormServer) -> None:
    clients = await storm_server.pokees_(200)
    monitor = await storm_server.monitor()
    broadcast, tree = await asyncio.gather(
        monitor.initiate({"type": "broadcast"}),
        monitor.initiate({"type": "tree", "treeLeaves": 32}),
    )
    assert broadcast["op"] != tree["op"]
    b, t = await asyncio.gather(monitor.status_of(broadcast["op"]), monitor.status_of(tree["op"]))
    assert (b["summary"]["received"], len(b["broadcast"])) == (200, 200)
    assert (t["summary"]["received"], len(t["tree"])) == (63, 63)
    ops = Counter(p["id"].split("@")[0] for c in clients for p in c.pokes)
    assert ops == {broadcast["op"]: 200, tree["op"]: 63}
    await monitor.close()


async def test_client_gone_mid_broadcast_is_lost_when_it_leaves(
    storm_server: StormServer,
) -> None:
    """No answer can come back once its connection is gone: the broadcast ends then,
    not at the operation's timeout."""
    clients = await storm_server.pokees_(50)
    quitter = clients[10]
    quitter.answering = False
    quitter.on_poke = lambda client, poke: client.transport.disconnect()
    monitor = await storm_server.monitor()
    ack = await monitor.initiate({"type": "broadcast"})
    status = await monitor.status_of(ack["op"], timeout=5)
    assert status["done"] is True and "timedOut" not in status
    summary = status["summary"]
    assert (summary["received"], summary["lost"]) == (49, 1)
    assert summary["elapsedMs"] < 1500  # before the operation timeout of the fixture
    await monitor.close()


async def test_client_gone_mid_tree_loses_its_subtree(storm_server: StormServer) -> None:
    clients = await storm_server.pokees_(8)
    for client in clients:  # whoever is poked at depth 1 first leaves instead of answering

        def leave(client: Pokee, poke: dict[str, Any]) -> None:
            if poke["treeLeaves"] == 4 and not any(c.answering is False for c in clients):
                client.answering = False
                client.transport.disconnect()

        client.on_poke = leave
    monitor = await storm_server.monitor()
    ack = await monitor.initiate({"type": "tree", "treeLeaves": 8})
    status = await monitor.status_of(ack["op"], timeout=5)
    assert status["done"] is True and "timedOut" not in status
    summary = status["summary"]
    assert (summary["expected"], summary["received"], summary["lost"]) == (15, 8, 7)
    await monitor.close()


async def test_status_request_reports_progress(storm_server: StormServer) -> None:
    clients = await storm_server.pokees_(10)
    for client in clients[:3]:
        client.answering = False
    monitor = await storm_server.monitor()
    ack = await monitor.initiate({"type": "broadcast"})
    await asyncio.sleep(0.3)
    progress = await monitor.request({"op": ack["op"]})
    assert progress["done"] is False
    assert progress["summary"]["received"] == 7 and len(progress["broadcast"]) == 7
    summary_only = await monitor.request({"op": ack["op"], "detail": "summary"})
    assert "broadcast" not in summary_only and summary_only["summary"]["expected"] == 10
    overview = await monitor.request()
    assert overview["clients"] == 10
    assert [op["op"] for op in overview["operations"]] == [ack["op"]]
    assert (await monitor.request({"op": "nope"}))["error"]["code"] == "unknown-operation"
    assert (await monitor.request([1]))["error"]["code"] == "bad-request"
    final = await monitor.status_of(ack["op"], timeout=5)
    assert final["summary"]["lost"] == 3
    assert (await monitor.request({"op": ack["op"]}))["done"] is True
    await monitor.close()


async def test_monitor_needs_the_token(storm_server: StormServer) -> None:
    for token in ("wrong", ""):
        with pytest.raises(socketio.exceptions.ConnectionError):
            await storm_server.monitor(token=token)
    sio = socketio.AsyncClient(reconnection=False)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await sio.connect(storm_server.url, transports=["websocket"], namespaces=["/monitor"])
    assert storm_server.storm.counts["monitor refused"] == 3


BAD_REQUESTS = [
    ({}, "bad-type"),
    ({"type": "multicast"}, "bad-type"),
    ({"type": 3}, "bad-type"),
    ("broadcast", "bad-request"),
    ({"type": "unicast", "destId": "no-such-sid"}, "unknown-client"),
    ({"type": "unicast", "destId": 12}, "bad-dest"),
    ({"type": "tree"}, "bad-tree-leaves"),
    ({"type": "tree", "treeLeaves": 0}, "bad-tree-leaves"),
    ({"type": "tree", "treeLeaves": 3}, "bad-tree-leaves"),
    ({"type": "tree", "treeLeaves": -4}, "bad-tree-leaves"),
    ({"type": "tree", "treeLeaves": "8"}, "bad-tree-leaves"),
    ({"type": "tree", "treeLeaves": 8.0}, "bad-tree-leaves"),
    ({"type": "tree", "treeLeaves": True}, "bad-tree-leaves"),
    ({"type": "tree", "treeLeaves": 2048}, "tree-too-large"),
]


@pytest.mark.parametrize(("request_", "code"), BAD_REQUESTS, ids=[c for _, c in BAD_REQUESTS])
async def test_bad_initiate_poke_changes_nothing(
    storm_server: StormServer, request_: object, code: str
) -> None:
    clients = await storm_server.pokees_(3)
    monitor = await storm_server.monitor()
    answer = await monitor.initiate(request_)
    assert answer["error"]["code"] == code and answer["error"]["message"]
    await asyncio.sleep(0.05)
    assert not storm_server.storm.running
    assert all(not c.pokes for c in clients)
    await monitor.close()


async def test_no_clients_connected(storm_server: StormServer) -> None:
    monitor = await storm_server.monitor()
    for kind in ("unicast", "broadcast"):
        assert (await monitor.initiate({"type": kind}))["error"]["code"] == "no-clients"
    answer = await monitor.initiate({"type": "tree", "treeLeaves": 4})
    assert answer["error"]["code"] == "no-clients"
    await monitor.close()


async def test_unknown_foreign_and_malformed_answers(storm_server: StormServer) -> None:
    honest, other, broken = await storm_server.pokees_(3)
    other.answering = False
    monitor = await storm_server.monitor()
    ack = await monitor.initiate({"type": "unicast", "destId": other.sid})
    await asyncio.sleep(0.1)
    (poke,) = other.pokes
    # Somebody else answers other's poke: counted, ignored.
    honest.send(b'42["pokeBack",{"id":"%s","delay":1,"serverTs":1}]' % poke["id"].encode())
    honest.send(b'42["pokeBack",{"id":"nope.00000001","delay":1,"serverTs":1}]')
    await asyncio.sleep(0.1)
    counts = storm_server.storm.counts
    assert counts["answers for another client's poke"] == 1
    assert counts["answers unknown or late"] == 1
    assert storm_server.storm.running[ack["op"]].received == 0
    # A pokeBack that breaks the contract closes that client, and only it.
    broken.send(b'42["pokeBack",{"id":7}]')
    await asyncio.wait_for(broken.disconnected, 3)
    assert broken.transport.close_handshake.recv.code.value == 1008
    assert storm_server.storm.counts["malformed pokeBacks"] == 1  # a fresh reading
    other.send(b'42["pokeBack",{"id":"%s","delay":1,"serverTs":1}]' % poke["id"].encode())
    status = await monitor.status_of(ack["op"])
    assert status["summary"]["received"] == 1
    await monitor.close()


async def test_late_answers_after_the_end_are_counted(storm_server: StormServer) -> None:
    (client,) = await storm_server.pokees_(1)
    client.answering = False
    monitor = await storm_server.monitor()
    ack = await monitor.initiate({"type": "unicast"})
    status = await monitor.status_of(ack["op"], timeout=5)
    assert status["timedOut"] is True and status["unicast"] is None
    client.send(
        b'42["pokeBack",{"id":"%s","delay":1,"serverTs":1}]' % client.pokes[0]["id"].encode()
    )
    await asyncio.sleep(0.1)
    assert storm_server.storm.counts["answers unknown or late"] == 1
    await monitor.close()


async def test_status_request_without_ack_is_answered_with_a_status_event(
    storm_server: StormServer,
) -> None:
    await storm_server.pokees_(4)
    monitor = await storm_server.monitor()
    await monitor.sio.emit("statusRequest", namespace="/monitor")
    overview = await monitor.status_of("overview", timeout=3)
    assert overview["clients"] == 4 and overview["operations"] == []
    assert (await monitor.request({"op": ["x"]}))["error"]["code"] == "bad-request"
    two_args = await monitor.sio.call("statusRequest", ({}, {}), namespace="/monitor")
    assert two_args["error"]["code"] == "bad-request"
    await monitor.close()


async def test_a_tree_whose_clients_all_left_ends_without_waiting(
    storm_server: StormServer,
) -> None:
    (client,) = await storm_server.pokees_(1)
    client.answering = False
    monitor = await storm_server.monitor()
    ack = await monitor.initiate({"type": "tree", "treeLeaves": 8})
    await asyncio.sleep(0.1)
    (poke,) = client.pokes
    sid = client.sid
    assert sid is not None
    client.transport.disconnect()
    while storm_server.storm.clients.members:
        await asyncio.sleep(0.01)
    # The root's answer arrives after its client left (it was in flight): the tree
    # cannot grow, and its two subtrees are lost at once rather than at the timeout.
    key = f"{ack['op']}@{storm_server.storm.tag}"  # the shard of this worker
    storm_server.storm.tap.record(sid, key, 0, 1.0, 4, time.monotonic())
    status = await monitor.status_of(ack["op"], timeout=1)
    assert "timedOut" not in status
    assert (status["summary"]["received"], status["summary"]["lost"]) == (1, 14)
    assert poke["treeLeaves"] == 8
    await monitor.close()
