"""Fixtures of the storm tests (helpers in stormkit.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from stormkit import TOKEN, StormServer

import msstorm
from msstorm.storm import Storm


@pytest.fixture
async def storm_server() -> AsyncIterator[StormServer]:
    server = msstorm.Server(ping_interval=5000, ping_timeout=5000)
    storm = Storm(server, token=TOKEN, op_timeout=1.5, max_tree_leaves=1024)
    await storm.start()
    listener = await msstorm.serve(server, host="127.0.0.1", port=0)
    served = StormServer(storm, listener)
    try:
        yield served
    finally:
        served.close()
        listener.close()
        await listener.wait_closed()
        await storm.close()
