"""The bus between the workers of a cluster: one interface, three implementations.

A message is a JSON object naming its kind in ``"t"``, with an optional binary
blob beside it (a histogram, a slice of per-client answers already written as
JSON), so that bulky data crosses the bus without being parsed on the way.
A worker sends to one worker by its tag, or publishes to every other worker.
Delivery is best effort and in order between two workers; a message that cannot
be delivered (a worker gone, the bus down) is counted and dropped, and the
application's timeouts take it from there: nothing waits on the bus forever.

- ``LocalBus``: a single process, no peers (the application code is the same).
- ``HubBus`` (hub.py): the workers of one machine, through the supervisor's hub.
- ``RedisBus`` (redis_bus.py): several machines, over Redis pub/sub.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable
from typing import Any

import orjson

Handler = Callable[[dict[str, Any], bytes], None]
_SEPARATOR = b"\x00"  # JSON text never holds a raw NUL


def encode(message: dict[str, Any], blob: bytes = b"") -> bytes:
    return orjson.dumps(message) + _SEPARATOR + blob


def decode(data: bytes) -> tuple[dict[str, Any], bytes]:
    head, _, blob = data.partition(_SEPARATOR)
    message = orjson.loads(head)
    if not isinstance(message, dict) or not isinstance(message.get("t"), str):
        raise ValueError("not a bus message")
    return message, blob


class Bus(ABC):
    """How one worker talks to the others."""

    kind = ""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.state = "starting"
        self.problems: Counter[str] = Counter()  # dropped messages, reconnects, bad frames
        self._handler: Handler | None = None

    def listen(self, handler: Handler) -> None:
        """``handler(message, blob)`` receives every message for this worker."""
        self._handler = handler

    def deliver(self, data: bytes, skip_from: str = "") -> None:
        """Hand a received frame to the application (unless it came from ``skip_from``:
        a pub/sub channel echoes what its subscribers publish)."""
        try:
            message, blob = decode(data)
        except ValueError:
            self.problems["malformed messages"] += 1
            return
        if self._handler is not None and (not skip_from or message.get("from") != skip_from):
            self._handler(message, blob)

    def send(self, to: str, message: dict[str, Any], blob: bytes = b"") -> None:
        """Send to the worker ``to`` (this one included); sets ``message["from"]``."""
        message["from"] = self.tag
        data = encode(message, blob)
        if to == self.tag:
            asyncio.get_running_loop().call_soon(self.deliver, data)
        else:
            self._send(to, data)

    def publish(self, message: dict[str, Any], blob: bytes = b"") -> None:
        """Send to every other worker; sets ``message["from"]``."""
        message["from"] = self.tag
        self._publish(encode(message, blob))

    def echo(self, message: dict[str, Any]) -> None:
        """Send ``message`` to this worker through the bus itself, which times the bus
        (membership.py). It names no sender: a pub/sub bus drops its own messages."""
        self._send(self.tag, encode(message))

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "state": self.state, "problems": dict(self.problems)}

    @abstractmethod
    async def start(self) -> None: ...

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    def _send(self, to: str, data: bytes) -> None: ...

    @abstractmethod
    def _publish(self, data: bytes) -> None: ...


class LocalBus(Bus):
    """A cluster of one: messages to oneself are delivered, there is nobody else."""

    kind = "local"

    async def start(self) -> None:
        self.state = "up"

    async def close(self) -> None:
        self.state = "closed"

    def echo(self, message: dict[str, Any]) -> None:
        asyncio.get_running_loop().call_soon(self.deliver, encode(message))

    def _send(self, to: str, data: bytes) -> None:
        self.problems["messages to unknown workers"] += 1

    def _publish(self, data: bytes) -> None:
        pass


REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


def open_bus(
    tag: str, url: str = "embedded", hub: str | None = None, cluster: str = "msstorm"
) -> Bus:
    """The bus of worker ``tag``: Redis for a ``redis://`` ``url``, the node's hub when
    there is one (``hub``, its socket), else none but this worker (``LocalBus``)."""
    if url.startswith(REDIS_SCHEMES):
        from .redis_bus import RedisBus

        return RedisBus(tag, url, cluster)
    if url != "embedded":
        raise ValueError(f"a bus is 'embedded' or redis://host:port/db, not {url!r}")
    if hub is not None:
        from .hub import HubBus

        return HubBus(tag, hub)
    return LocalBus(tag)
