"""The heartbeat's tick over thousands of real connections, driven by hand: the
intervals are long enough that the loop's own ticks find nothing due, and the test
hands the tick a time of its choosing, so nothing here depends on how fast it runs."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from rawclient import RawClient

import msstorm

N = 2000
SILENT = 1234  # the one client that does not answer its ping
INTERVAL = 600.0  # seconds: no deadline of the test's connections comes by itself
TIMEOUT = 300.0


async def until(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"never happened: {what}")
        await asyncio.sleep(0.01)


async def test_one_ping_each_per_interval_and_a_missing_pong_closes_that_one() -> None:
    engine = msstorm.EngineServer(
        ping_interval=int(INTERVAL * 1000), ping_timeout=int(TIMEOUT * 1000)
    )
    listener = await msstorm.serve(engine, host="127.0.0.1", port=0, max_per_address=0)
    clients: list[RawClient] = []
    try:
        url = f"ws://127.0.0.1:{listener.port}/engine.io/?EIO=4&transport=websocket"
        for start in range(0, N, 250):  # in batches: the listen backlog stays small
            clients += await asyncio.gather(
                *(RawClient.connect(url, i != SILENT) for i in range(start, start + 250))
            )
        await asyncio.gather(*(client.open() for client in clients))
        await until(lambda: len(engine.live) == N, "every session open")
        heartbeat = listener.heartbeat
        opened = heartbeat.loop.time()

        def pings() -> list[int]:
            return [client.pings for client in clients]

        def answered() -> int:
            return sum(1 for conn in engine.live if conn.session.pong_deadline == 0.0)

        assert pings() == [0] * N and answered() == N  # nothing was due by itself
        heartbeat.tick(opened + INTERVAL)
        await until(lambda: sum(pings()) == N, "one ping to every client")
        assert pings() == [1] * N
        await until(lambda: answered() == N - 1, "every pong but one")

        heartbeat.tick(opened + INTERVAL + TIMEOUT - 1.0)  # no pong is overdue yet
        heartbeat.tick(opened + INTERVAL + TIMEOUT + 1.0)
        assert await clients[SILENT].closed() is not None
        assert clients[SILENT].close_message == b"ping timeout"
        assert engine.stats.disconnects["ping timeout"] == 1
        assert len(engine.live) == N - 1
        assert [c for c in clients if c.disconnected.done()] == [clients[SILENT]]

        heartbeat.tick(opened + 2 * INTERVAL + 1.0)  # the second interval's pings
        await until(lambda: sum(pings()) == 1 + 2 * (N - 1), "a second ping to the others")
        assert pings() == [1 if i == SILENT else 2 for i in range(N)]
        assert engine.stats.disconnects["ping timeout"] == 1
    finally:
        for client in clients:
            client.close()
        listener.close()
        await listener.wait_closed()
