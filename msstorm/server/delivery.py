"""Emits to many sockets, a slice at a time, in the order they were made.

An emit to a room of 100,000 sockets must not hold the event loop for the whole
fan-out: heartbeats, handshakes and other emits wait meanwhile. ``Delivery``
sends an emit's first ``SLICE`` recipients at once and the rest from a task that
yields to the loop between slices. While anything waits, later emits wait behind
it (even a unicast), so that each socket still receives emits in the order they
were made.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any

SLICE = 2048  # recipients per turn of the loop: ~10-30 ms of sends

SendFrame = Callable[..., int]


class _Batch:
    __slots__ = ("at", "conns", "done", "frames")

    def __init__(self, frames: Any, conns: list[Any], at: int) -> None:
        self.frames = frames
        self.conns = conns
        self.at = at  # the next recipient to send to
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()


class Delivery:
    """The fan-out queue of one server; ``send_frame`` is a fast path's (fanout.py)."""

    def __init__(self, send_frame: SendFrame, slice_size: int = SLICE) -> None:
        self.send_frame = send_frame
        self.slice = slice_size
        self._queue: deque[_Batch] = deque()
        self._task: asyncio.Task[None] | None = None

    def send(self, frames: Any, conns: list[Any]) -> None:
        """Send ``frames`` (what the codec's ``encode`` returned) to each of ``conns``."""
        if self._queue:
            self._queue.append(_Batch(frames, conns, 0))
            return
        n = len(conns)
        first = min(n, self.slice)
        self._send(frames, conns, 0, first)
        if first < n:
            self._queue.append(_Batch(frames, conns, first))
            self._task = asyncio.ensure_future(self._drain())

    def sent(self) -> asyncio.Future[None] | None:
        """What resolves once every emit made so far is sent (None: it is already)."""
        return self._queue[-1].done if self._queue else None

    def cancel(self) -> None:
        """Drop what waits (the server is closing)."""
        if self._task is not None:
            self._task.cancel()
        for batch in self._queue:
            batch.done.cancel()
        self._queue.clear()

    def _send(self, frames: Any, conns: list[Any], start: int, stop: int) -> None:
        send_frame = self.send_frame
        if type(frames) is bytes:
            send_frame(frames, conns, start, stop)
            return
        # Text then its attachments, to each connection of the slice: nothing else
        # is sent to them in between.
        send_frame(frames[0], conns, start, stop)
        for attachment in frames[1:]:
            send_frame(attachment, conns, start, stop, True)

    async def _drain(self) -> None:
        queue = self._queue
        while queue:
            await asyncio.sleep(0)
            batch = queue[0]
            stop = min(batch.at + self.slice, len(batch.conns))
            self._send(batch.frames, batch.conns, batch.at, stop)
            batch.at = stop
            if stop >= len(batch.conns):
                queue.popleft()
                if not batch.done.done():
                    batch.done.set_result(None)
        self._task = None
