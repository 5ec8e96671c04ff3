"""``GET /metrics``: Prometheus text, read back by prometheus_client's own parser,
with values that move as clients connect, pokes flow and bad input arrives."""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import AsyncIterator

import picows
import pytest
from prometheus_client.parser import text_string_to_metric_families
from stormkit import TOKEN, StormServer

import msstorm
from msstorm.storm import Storm

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture
async def scraped_server() -> AsyncIterator[StormServer]:
    server = msstorm.Server(ping_interval=5000, ping_timeout=5000)
    storm = Storm(server, token=TOKEN, op_timeout=1.5)
    await storm.start()
    listener = await msstorm.serve(server, port=0, metrics=storm.metrics)
    served = StormServer(storm, listener)
    try:
        yield served
    finally:
        served.close()
        listener.close()
        await listener.wait_closed()
        await storm.close()


def get(url: str) -> tuple[str, str]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.headers["Content-Type"], response.read().decode()


async def scrape(served: StormServer) -> Samples:
    content_type, text = await asyncio.to_thread(get, served.url + "/metrics")
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = tuple(sorted((k, v) for k, v in sample.labels.items() if k != "worker"))
            samples[sample.name, labels] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_metrics_move_with_clients_pokes_and_bad_input(scraped_server: StormServer) -> None:
    served = scraped_server
    before = await scrape(served)
    socketio = {"endpoint": "/socket.io/"}
    assert value(before, "msstorm_connections", **socketio) == 0
    assert value(before, "msstorm_pokes_sent_total") == 0

    await served.pokees_(20)
    monitor = await served.monitor()
    try:
        ack = await monitor.initiate({"type": "broadcast"})
        status = await monitor.status_of(ack["op"])
        assert status["summary"]["received"] == 20
        await asyncio.sleep(0.1)  # the operation's shards are folded into the totals

        # A client that sends garbage is closed, and counted.
        bad = await served.pokee()
        bad.transport.send(picows.WSMsgType.TEXT, b"4not a packet")
        await asyncio.wait_for(bad.disconnected, 3)

        after = await scrape(served)
    finally:
        await monitor.close()

    assert value(after, "msstorm_connections", **socketio) == 21  # 20 clients, the monitor
    assert value(after, "msstorm_handshakes_total", **socketio) == 22
    assert value(after, "msstorm_clients") == 20
    assert value(after, "msstorm_pokes_sent_total") == 20
    assert value(after, "msstorm_answers_total", outcome="recorded") == 20
    assert value(after, "msstorm_operations_total", type="broadcast", outcome="started") == 1
    assert value(after, "msstorm_operations_total", type="broadcast", outcome="completed") == 1
    assert value(after, "msstorm_operations_running") == 0
    assert value(after, "msstorm_rtt_milliseconds_count") == 20
    assert value(after, "msstorm_rtt_milliseconds_bucket", le="+Inf") == 20
    assert value(after, "msstorm_rtt_milliseconds_sum") > 0
    assert value(after, "msstorm_bad_input_total", kind="PacketError", **socketio) == 1
    assert value(after, "msstorm_disconnects_total", reason="parse error", **socketio) == 1
    for name in ("msstorm_frames_received_total", "msstorm_received_bytes_total"):
        assert value(after, name, **socketio) > value(before, name, **socketio)
    # 20 pokes at least went out, each over 50 bytes
    sent = value(after, "msstorm_sent_bytes_total", **socketio)
    assert sent - value(before, "msstorm_sent_bytes_total", **socketio) > 20 * 50
