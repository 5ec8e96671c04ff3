"""Hostile and unlucky peers: the server stays up, bounded, and counts every healthy answer.

- a client that stops reading: its pokes count as lost at once, and past
  ``max_queued`` bytes waiting it is dropped; everyone else's answers count;
- a run of back-to-back broadcasts does not starve the heartbeat;
- half-sent handshakes (slowloris) are closed at the timeout while healthy
  clients connect;
- one source address may hold ``max_per_address`` connections, no more;
- SIGTERM during a broadcast: the monitor gets the final status, the server
  closes its clients properly and exits 0.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import picows
import pytest
from stormkit import TOKEN, Clients, StormServer

import msstorm
from msstorm.storm import Storm

CAP = 256 * 1024
NEWS = "x" * 16384  # a big event, to fill a socket that nobody reads


@pytest.fixture
async def guarded_server() -> AsyncIterator[Any]:
    """Factory: ``await guarded_server(ping_interval=...)`` -> a StormServer with limits:
    ``CAP`` bytes queued per client, 0.5 s for a handshake, 200 connections per address."""
    made: list[StormServer] = []

    async def make(ping_interval: int = 200) -> StormServer:
        server = msstorm.Server(
            ping_interval=ping_interval, ping_timeout=ping_interval, max_queued=CAP
        )
        storm = Storm(server, token=TOKEN, op_timeout=5, max_operations=8)
        await storm.start()
        listener = await msstorm.serve(
            server, port=0, handshake_timeout=0.5, max_per_address=200, limit_loopback=True
        )
        made.append(StormServer(storm, listener))
        return made[-1]

    try:
        yield make
    finally:
        for served in made:
            served.close()
            served.listener.close()
            await served.listener.wait_closed()
            await served.storm.close()


@pytest.fixture
async def guarded(guarded_server: Any) -> StormServer:
    served: StormServer = await guarded_server()
    return served


async def test_a_client_that_never_reads_is_dropped_and_nobody_else_loses(
    guarded_server: Any,
) -> None:
    # A heartbeat slow enough that the stuck client is not closed for missing pongs.
    guarded: StormServer = await guarded_server(ping_interval=20000)
    server = guarded.storm.server
    healthy = await guarded.pokees_(30)
    stuck = await guarded.pokee()
    stuck.answering = False
    underlying = stuck.transport.underlying_transport
    underlying.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    underlying.pause_reading()
    assert stuck.sid is not None
    conn = server.namespaces["/"].sockets[stuck.sid]
    monitor = await guarded.monitor()
    try:
        # Fill its socket (the kernel's buffers first: megabytes on loopback) until the
        # server has to queue for it (picows: pause_writing).
        for _ in range(2000):
            if conn.paused:
                break
            server.emit("news", NEWS)
            await asyncio.sleep(0.002)
        assert conn.paused
        peak = 0
        broadcasts = 0
        while not conn.closed:
            # While it is paused its pokes count as lost at once: nobody waits for it.
            ack = await monitor.initiate({"type": "broadcast"})
            status = await monitor.status_of(ack["op"], timeout=3)
            broadcasts += 1
            assert (status["summary"]["received"], status["summary"]["lost"]) == (30, 1)
            assert "timedOut" not in status
            for _ in range(4):
                if conn.closed:
                    break
                server.emit("news", NEWS)
                peak = max(peak, underlying_size(conn))
            await asyncio.sleep(0.01)
            assert broadcasts < 100, "the client that does not read was never dropped"
        underlying.resume_reading()  # it sees the connection gone once it looks
        await asyncio.wait_for(stuck.disconnected, 3)
    finally:
        await monitor.close()
    assert peak <= CAP + len(NEWS) + 64  # what waited for it never passed the cap
    assert server.stats.disconnects["slow consumer"] == 1
    # Everyone else is still here and answers.
    ack = await monitor_broadcast(guarded)
    assert ack == (30, 0)
    assert all(len(p.pokes) == broadcasts + 1 for p in healthy)


def underlying_size(conn: object) -> int:
    transport = getattr(conn, "transport", None)
    if transport is None:
        return 0
    return int(transport.underlying_transport.get_write_buffer_size())


async def monitor_broadcast(served: StormServer) -> tuple[int, int]:
    monitor = await served.monitor()
    try:
        ack = await monitor.initiate({"type": "broadcast"})
        status = await monitor.status_of(ack["op"], timeout=5)
        return status["summary"]["received"], status["summary"]["lost"]
    finally:
        await monitor.close()


async def test_back_to_back_broadcasts_do_not_starve_the_heartbeat(guarded: StormServer) -> None:
    pokees = await guarded.pokees_(150)
    monitor = await guarded.monitor()
    try:
        for _ in range(10):  # 40 broadcasts, 4 at a time, for longer than a ping cycle
            acks = await asyncio.gather(
                *(monitor.initiate({"type": "broadcast"}) for _ in range(4))
            )
            statuses = await asyncio.gather(*(monitor.status_of(a["op"]) for a in acks))
            for status in statuses:
                assert (status["summary"]["received"], status["summary"]["lost"]) == (150, 0)
    finally:
        await monitor.close()
    stats = guarded.storm.server.stats
    assert stats.disconnects["ping timeout"] == 0
    assert all(not p.disconnected.done() for p in pokees)


async def test_slowloris_handshakes_are_closed_while_healthy_clients_connect(
    guarded: StormServer,
) -> None:
    port = guarded.listener.port
    lingering = []
    for i in range(150):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        if i % 2:
            writer.write(b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\n")
        else:
            writer.write(b"POST /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nContent-")
        lingering.append((reader, writer))
    healthy = await guarded.pokees_(40)  # while the others hang on
    assert all(p.sid for p in healthy)
    for reader, _ in lingering:
        # closed by the server, the HTTP ones with a 408 first
        data = await asyncio.wait_for(reader.read(), 3)
        assert data == b"" or data.startswith(b"HTTP/1.1 408")
    for _, writer in lingering:
        writer.close()
    assert guarded.listener.front.open == 0
    assert await monitor_broadcast(guarded) == (40, 0)


async def test_one_address_holds_a_bounded_number_of_connections(guarded: StormServer) -> None:
    await guarded.pokees_(199)  # the monitor makes 200
    monitor = await guarded.monitor()
    try:
        url = guarded.url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket"
        with pytest.raises(picows.WSError, match="429"):
            await picows.ws_connect(picows.WSListener, url, use_aiofastnet=False)
        stats = guarded.storm.server.stats
        assert guarded.listener.front.address_limit.refused == 1
        guarded.pokees.pop().transport.disconnect()
        await asyncio.sleep(0.1)
        await guarded.pokee()  # room again
        assert stats.connections == 200
    finally:
        await monitor.close()


async def test_sigterm_during_a_broadcast_ends_it_and_exits_0() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "msstorm.storm.cli", "--workers", "1", "--port", str(port)]
    command += ["--monitor-token", TOKEN, "--op-timeout", "3", "--log-level", "warning"]
    process = subprocess.Popen(command)
    clients = Clients(f"http://127.0.0.1:{port}")
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                await asyncio.sleep(0.1)
        pokees = await clients.pokees_(20)
        for pokee in pokees[:5]:
            pokee.answering = False  # the broadcast waits for them until its timeout
        monitor = await clients.monitor()
        ack = await monitor.initiate({"type": "broadcast"})
        while sum(len(p.pokes) for p in pokees) < 20:
            await asyncio.sleep(0.01)
        process.send_signal(signal.SIGTERM)
        status = await monitor.status_of(ack["op"], timeout=8)
        assert status["done"] and status["timedOut"]
        assert (status["summary"]["received"], status["summary"]["lost"]) == (15, 5)
        code = await asyncio.to_thread(process.wait, 10)
        assert code == 0
        for pokee in pokees:
            await asyncio.wait_for(pokee.disconnected, 3)
    finally:
        clients.close()
        if process.poll() is None:
            process.kill()
            process.wait()
