"""Fixtures of the loopback tests (helpers in rawclient.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import pytest
import uvloop
from rawclient import ECHO, OPTIONS, Served

import msstorm


def pytest_asyncio_loop_factories(config: Any, item: Any) -> Mapping[str, Callable[[], Any]]:
    # Every server test runs on asyncio's loop and on uvloop.
    return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    sio, eio = ECHO.build(OPTIONS)
    listener = await msstorm.serve(sio, eio, host="127.0.0.1", port=0)
    try:
        yield Served(listener, sio, eio)
    finally:
        listener.close()
        await listener.wait_closed()
