"""The bus over Redis pub/sub: several msstorm-server instances, on several machines.

Every worker subscribes to two channels, ``<cluster>:all`` and
``<cluster>:w:<its tag>``, and publishes to the others'. A lost Redis connection
is retried with exponential backoff; what is sent meanwhile is counted and
dropped, the state shows in ``describe()`` (and so in the monitor's status),
and the application's own timeouts end whatever was waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from msstorm.cli_types import masked_url

from .bus import Bus

log = logging.getLogger("msstorm.cluster")

RETRY_FIRST = 0.2
RETRY_MAX = 5.0
# Messages waiting for Redis at most; beyond, new ones are dropped (and counted).
QUEUE_LIMIT = 100_000


class RedisBus(Bus):
    kind = "redis"

    def __init__(self, tag: str, url: str, cluster: str = "msstorm") -> None:
        super().__init__(tag)
        self.url = url
        self.cluster = cluster
        self.channel_all = f"{cluster}:all"
        self.channel_mine = f"{cluster}:w:{tag}"
        self._outgoing: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue(QUEUE_LIMIT)
        self._tasks: list[asyncio.Task[None]] = []
        self._up = asyncio.Event()

    async def start(self) -> None:
        self._tasks = [
            asyncio.ensure_future(self._receive()),
            asyncio.ensure_future(self._send_loop()),
        ]
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._up.wait(), 5.0)

    async def close(self) -> None:
        self.state = "closed"
        for task in self._tasks:
            task.cancel()

    def _down(self, why: str) -> None:
        if self.state == "closed":
            return
        if self.state == "up":
            log.warning("worker %s: Redis connection lost (%s); retrying", self.tag, why)
        self.state = "reconnecting"
        self.problems["reconnects"] += 1
        self._up.clear()

    async def _receive(self) -> None:
        delay = RETRY_FIRST
        while self.state != "closed":
            client = aioredis.from_url(self.url)
            try:
                pubsub = client.pubsub(ignore_subscribe_messages=True)
                await pubsub.subscribe(self.channel_all, self.channel_mine)
                self.state = "up"
                self._up.set()
                delay = RETRY_FIRST
                async for item in pubsub.listen():
                    if item.get("type") == "message":
                        self.deliver(item["data"], skip_from=self.tag)
                raise ConnectionError("subscription ended")
            except (RedisError, OSError, ConnectionError) as exc:
                self._down(repr(exc))
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX)
            finally:
                with contextlib.suppress(Exception):
                    await client.aclose()

    async def _send_loop(self) -> None:
        client = aioredis.from_url(self.url)
        while True:
            channel, data = await self._outgoing.get()
            if self.state != "up":
                self.problems["dropped while disconnected"] += 1
                continue
            try:
                await client.publish(channel, data)
            except (RedisError, OSError):
                # The subscriber owns the bus's state and sees the outage too;
                # this client reconnects by itself on its next publish.
                self.problems["dropped: publish failed"] += 1

    def _enqueue(self, channel: str, data: bytes) -> None:
        if self.state != "up":
            self.problems["dropped while disconnected"] += 1
            return
        try:
            self._outgoing.put_nowait((channel, data))
        except asyncio.QueueFull:
            self.problems["dropped: queue full"] += 1

    def _send(self, to: str, data: bytes) -> None:
        self._enqueue(f"{self.cluster}:w:{to}", data)

    def _publish(self, data: bytes) -> None:
        self._enqueue(self.channel_all, data)

    def describe(self) -> dict[str, Any]:
        # /healthz shows it to anyone: never the password.
        return {**super().describe(), "url": masked_url(self.url), "cluster": self.cluster}
