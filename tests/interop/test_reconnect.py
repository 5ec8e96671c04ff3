"""Default clients (polling, then the upgrade) reconnect by themselves after a server restart.

Both clients are left with their default transports and reconnection on; the
test stops the echo server, starts a new one on the same port, and checks that
each client comes back on its own, upgrades again, and exchanges events.
"""

from __future__ import annotations

import asyncio
import json
import subprocess

import socketio
from echokit import stop_server
from test_node_client import CLIENT, ROOT

TIMEOUT = 10.0
MARKER = "ready for the restart"


def test_node_client_reconnects_after_a_server_restart(echo_server):
    server = echo_server()
    params = {"restart_marker": MARKER, "timeout_ms": 15000}
    client = subprocess.Popen(
        ["node", str(CLIENT), "reconnect", server.url, json.dumps(params)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert client.stdout is not None
        assert client.stdout.readline().strip() == MARKER
        stop_server(server)
        echo_server(port=server.port)
        out, err = client.communicate(timeout=20)
    finally:
        if client.poll() is None:
            client.kill()
    assert client.returncode == 0, err
    report = json.loads(out)
    assert report["first"]["transport"] == report["second"]["transport"] == "websocket"
    assert report["first"]["id"] != report["second"]["id"]  # a new session
    assert report["first_echo"] == ["before"] and report["second_echo"] == ["after"]
    # the restart, then the scenario's own disconnect at its end
    assert report["disconnects"] == ["transport close", "io client disconnect"]


async def test_python_client_reconnects_after_a_server_restart(echo_server):
    server = echo_server()
    sio = socketio.AsyncClient(reconnection_delay=0.1, reconnection_delay_max=0.5)
    connects: asyncio.Queue[str] = asyncio.Queue()
    backs: asyncio.Queue[tuple[object, ...]] = asyncio.Queue()
    sio.on("connect", lambda: connects.put_nowait(sio.get_sid()))
    sio.on("message-back", lambda *args: backs.put_nowait(args))
    try:
        await asyncio.wait_for(sio.connect(server.url), TIMEOUT)  # default transports
        first = await asyncio.wait_for(connects.get(), TIMEOUT)
        assert sio.transport() == "websocket"  # it upgraded
        await sio.emit("message", "before")
        assert await asyncio.wait_for(backs.get(), TIMEOUT) == ("before",)

        await asyncio.to_thread(stop_server, server)
        await asyncio.to_thread(echo_server, port=server.port)
        second = await asyncio.wait_for(connects.get(), TIMEOUT)
        assert second != first and sio.transport() == "websocket"
        await sio.emit("message", "after")
        assert await asyncio.wait_for(backs.get(), TIMEOUT) == ("after",)
    finally:
        await sio.disconnect()
