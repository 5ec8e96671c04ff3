"""The read buffers picows gives each connection are cut to what msstorm needs.

trim_c.lean finds picows's read buffer through the layout of the pinned picows
version; these tests fail the day it stops finding it (a new picows), rather
than let every connection silently cost 1.25 KiB more.
"""

from __future__ import annotations

import asyncio

from msstorm._fastpath.trim_c import LEAN_CAPACITY, read_buffer_capacity, trim
from rawclient import Served


async def test_server_connections_have_lean_read_buffers(served: Served) -> None:
    client = await served.client()
    await client.join()
    (conn,) = served.sio.live
    assert read_buffer_capacity(conn.transport) == LEAN_CAPACITY
    # A burst makes picows grow it...
    client.send(b'42["message","' + b"x" * 5000 + b'"]')
    assert len(await client.recv()) > 5000
    assert read_buffer_capacity(conn.transport) > LEAN_CAPACITY
    # ...and the heartbeat's next ping gives it back (every 300 ms here).
    await asyncio.sleep(0.6)
    assert read_buffer_capacity(conn.transport) == LEAN_CAPACITY
    client.send(b'42["message","still fine"]')
    assert await client.recv() == b'42["message-back","still fine"]'
    client.close()


async def test_client_connections_too(served: Served) -> None:
    client = await served.client()
    await client.join()
    assert read_buffer_capacity(client.transport) > LEAN_CAPACITY  # picows's own
    trim(client.transport)  # what the swarm's clients do once connected
    assert read_buffer_capacity(client.transport) == LEAN_CAPACITY
    client.send(b'42["message","' + b"y" * 3000 + b'"]')
    assert len(await client.recv()) > 3000  # a bigger frame than the buffer: it grows
    client.close()
