"""What an ``AsyncServer`` tells the other workers of its cluster, over the bus.

Rooms are per worker: each keeps its own sockets' rooms. An emit to a room (or
to rooms, or to a namespace) is sent here to this worker's members, and
published once to every other worker as the packet already encoded, the room
names and the sids to skip; each worker fans it out to its own members. So an
emit reaches each member once, wherever it is connected, and the packet is
encoded once per cluster.

The messages (``"t"``)::

    emit        ns, to (rooms or None), skip; the encoded frames as the blob, their
                sizes in "n" when there are attachments
    emit+cb     the same with "ev", "args" (JSON) and "cb": each recipient's ack
                comes back as {"t": "ack", "cb", "args"} to the worker that emitted
    enter, leave, disconnect    ns, sid (room): for a socket of another worker
    close       ns, room
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from msstorm.cluster.bus import Bus

if TYPE_CHECKING:
    from .server import AsyncServer

log = logging.getLogger("msstorm.app")

CALLBACK_LIFETIME = 120.0  # seconds an emit's callback waits for acks from other workers


class Relay:
    def __init__(self, app: AsyncServer, bus: Bus) -> None:
        self.app = app
        self.bus = bus
        self.callbacks: dict[int, Callable[..., Any]] = {}
        self._ids = itertools.count(1)
        bus.listen(self._on_bus)

    async def close(self) -> None:
        await self.bus.close()

    # -- out --------------------------------------------------------------------

    def emit(self, namespace: str, frames: Any, to: Any, skip: Any) -> None:
        message: dict[str, Any] = {"t": "emit", "ns": namespace, "to": _listed(to)}
        if skip is not None:
            message["skip"] = _listed(skip)
        if type(frames) is bytes:
            self.bus.publish(message, frames)
        else:
            message["n"] = [len(frame) for frame in frames]
            self.bus.publish(message, b"".join(frames))

    def emit_with_callback(
        self,
        namespace: str,
        event: str,
        args: list[Any],
        to: Any,
        skip: Any,
        callback: Callable[..., Any],
    ) -> None:
        number = next(self._ids)
        self.callbacks[number] = callback
        message = {
            "t": "emit",
            "ns": namespace,
            "to": _listed(to),
            "skip": _listed(skip),
            "ev": event,
            "args": args,
            "cb": number,
        }
        try:
            self.bus.publish(message)
        except TypeError as exc:
            del self.callbacks[number]
            raise ValueError(
                "an emit with a callback reaches other workers with JSON arguments only "
                f"(no bytes): {exc}"
            ) from None
        asyncio.get_running_loop().call_later(CALLBACK_LIFETIME, self.callbacks.pop, number, None)

    def forget_callback(self, callback: Callable[..., Any]) -> None:
        for number in [n for n, c in self.callbacks.items() if c is callback]:
            del self.callbacks[number]

    def publish(self, kind: str, namespace: str, **fields: Any) -> None:
        self.bus.publish({"t": kind, "ns": namespace, **fields})

    # -- in ---------------------------------------------------------------------

    def _on_bus(self, message: dict[str, Any], blob: bytes) -> None:
        try:
            self._handle(message, blob)
        except (KeyError, TypeError, ValueError) as exc:
            self.bus.problems["malformed messages"] += 1
            log.warning("a bus message msstorm cannot use: %r (%s)", message.get("t"), exc)

    def _handle(self, message: dict[str, Any], blob: bytes) -> None:
        kind = message["t"]
        engine = self.app.engine
        namespace = message.get("ns", "/")
        if kind == "emit":
            if "cb" in message:
                self._emit_with_callback(message)
            elif "n" in message:
                frames, at = [], 0
                for size in message["n"]:
                    frames.append(blob[at : at + size])
                    at += size
                engine.emit_frames(frames, message["to"], message.get("skip"), namespace)
            else:
                engine.emit_frames(blob, message["to"], message.get("skip"), namespace)
        elif kind == "ack":
            callback = self.callbacks.get(message["cb"])
            if callback is not None:
                callback(*message["args"])
        elif kind == "enter":
            engine.enter_room(message["sid"], message["room"], namespace)
        elif kind == "leave":
            engine.leave_room(message["sid"], message["room"], namespace)
        elif kind == "close":
            engine.close_room(message["room"], namespace)
        elif kind == "disconnect":
            engine.disconnect(message["sid"], namespace)

    def _emit_with_callback(self, message: dict[str, Any]) -> None:
        origin, number = message["from"], message["cb"]

        def answer(*args: Any) -> None:
            try:
                self.bus.send(origin, {"t": "ack", "cb": number, "args": list(args)})
            except TypeError:
                log.warning("an ack with bytes cannot cross the bus to worker %s", origin)

        namespace = message.get("ns", "/")
        if namespace in self.app.engine.namespaces:
            self.app.engine.emit(
                message["ev"],
                *message["args"],
                to=message["to"],
                skip_sid=message["skip"],
                namespace=namespace,
                callback=answer,
            )


def _listed(targets: str | Iterable[str] | None) -> list[str] | None:
    if targets is None:
        return None
    if isinstance(targets, str):
        return [targets]
    return list(targets)
