"""Fixtures of the cluster tests (helpers in nodes.py)."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator

import pytest
from nodes import Node, Redis


@pytest.fixture
async def nodes() -> AsyncIterator[list[Node]]:
    """Start nodes with ``nodes.append(Node(...))``; all are stopped afterwards."""
    started: list[Node] = []
    try:
        yield started
    finally:
        for node in started:
            node.stop()


@pytest.fixture
def redis() -> Iterator[Redis]:
    """A real redis-server on a free port (`make system-deps` says how to get it)."""
    if shutil.which("redis-server") is None:
        pytest.fail(
            "redis-server is required: `make system-deps` says how to get it", pytrace=False
        )
    server = Redis()
    server.start()
    try:
        yield server
    finally:
        server.close()
