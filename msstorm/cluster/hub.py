"""The embedded bus: the supervisor's hub relays frames between the workers of a machine.

Each worker keeps one Unix-socket connection to the hub. A frame is a 4-byte
big-endian length, then 4 ASCII bytes naming the destination (a worker tag, or
``****`` for every worker but the sender), then the message. The hub reads
only those 8 bytes and forwards the rest untouched; the first frame a worker
sends is addressed to ``HELO`` and carries its tag. When a worker's link closes
(its process died, or left), the hub tells every other worker at once with a
message of its own, ``{"t": "left", "tag": ...}``: nobody waits for its beats to
stop to know.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from typing import Any

from .bus import Bus, encode

log = logging.getLogger("msstorm.cluster")

_LENGTH = struct.Struct(">I")
EVERYONE = b"****"
HELLO = b"HELO"
MAX_FRAME = 256 * 1024 * 1024
RETRY_FIRST = 0.2
RETRY_MAX = 5.0


def frame(to: bytes, data: bytes) -> bytes:
    return _LENGTH.pack(len(data) + 4) + to + data


async def read_frame(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    size = _LENGTH.unpack(await reader.readexactly(4))[0]
    if not 4 <= size <= MAX_FRAME:
        raise ValueError(f"bad frame size {size}")
    body = await reader.readexactly(size)
    return body[:4], body[4:]


class Hub:
    """The relay, run by the supervisor on a Unix socket."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.workers: dict[bytes, asyncio.StreamWriter] = {}
        self.frames = 0
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_unix_server(self._serve, path=self.path)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self.workers.values()):
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        tag = b""
        try:
            to, body = await read_frame(reader)
            if to != HELLO or len(body) != 4:
                return
            tag = body
            if tag in self.workers:  # a restarted worker replaces its old link
                self.workers[tag].close()
            self.workers[tag] = writer
            while True:
                to, body = await read_frame(reader)
                self.frames += 1
                data = frame(to, body)
                if to == EVERYONE:
                    for other, link in self.workers.items():
                        if other != tag:
                            link.write(data)
                elif to in self.workers:
                    self.workers[to].write(data)
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            if tag and self.workers.get(tag) is writer:  # not replaced by its restart
                del self.workers[tag]
                self._left(tag)
            writer.close()

    def _left(self, tag: bytes) -> None:
        notice = frame(EVERYONE, encode({"t": "left", "tag": tag.decode("ascii", "replace")}))
        for link in self.workers.values():
            link.write(notice)


class HubBus(Bus):
    """A worker's link to the hub; it reconnects with backoff if the link drops."""

    kind = "embedded"

    def __init__(self, tag: str, path: str) -> None:
        super().__init__(tag)
        self.path = path
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()

    async def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._connected.wait(), 5.0)

    async def close(self) -> None:
        self.state = "closed"
        if self._task is not None:
            self._task.cancel()
        if self._writer is not None:
            self._writer.close()

    async def _run(self) -> None:
        delay = RETRY_FIRST
        while self.state != "closed":
            try:
                reader, writer = await asyncio.open_unix_connection(self.path)
            except OSError as exc:
                self._down(f"cannot reach the hub: {exc}")
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX)
                continue
            writer.write(frame(HELLO, self.tag.encode()))
            self._writer = writer
            self.state = "up"
            self._connected.set()
            delay = RETRY_FIRST
            try:
                while True:
                    _, body = await read_frame(reader)
                    self.deliver(body)
            except (asyncio.IncompleteReadError, ConnectionError, ValueError) as exc:
                self._writer = None
                self._down(f"lost the hub: {exc!r}")

    def _down(self, why: str) -> None:
        if self.state == "closed":
            return
        if self.state == "up":
            log.warning("worker %s: %s; reconnecting", self.tag, why)
        self.state = "reconnecting"
        self.problems["reconnects"] += 1
        self._connected.clear()

    def _write(self, to: bytes, data: bytes) -> None:
        if self._writer is None:
            self.problems["dropped while disconnected"] += 1
            return
        self._writer.write(frame(to, data))

    def _send(self, to: str, data: bytes) -> None:
        self._write(to.encode(), data)

    def _publish(self, data: bytes) -> None:
        self._write(EVERYONE, data)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "hub": self.path}
