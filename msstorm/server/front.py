"""The first bytes of every TCP connection on the port: HTTP/1.1, until it is a WebSocket.

Every accepted connection starts as an ``HttpConnection``. A ``GET`` that asks for
Engine.IO's WebSocket transport is handed over, with the bytes read so far, to a
picows protocol on the same transport: from then on picows reads the socket and
nothing of the front stays with the connection. Every other request is served
here, one at a time on a keep-alive connection: long-polling, ``/healthz``,
``/metrics``, CORS preflights, and the errors.

The front is a BufferedProtocol reading into one buffer shared by every
connection of the process: uvloop keeps a reference to a plain protocol's
``data_received`` even after the transport changes hands, and a buffered one
gives that reference nothing to hold.

Each connection waits in the heartbeat's timer wheel under its deadline: the
whole of a request must arrive within ``timeout`` of its first byte (an idle
keep-alive connection is closed after as long), so a client that sends half a
request holds a socket for that long and no more.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from msstorm.protocol.errors import HttpError
from msstorm.protocol.http import Request, RequestReader

log = logging.getLogger("msstorm.server")

READ_SIZE = 65536


def websocket_wanted(line: bytes) -> bool:
    """Whether a request line asks for Engine.IO's WebSocket transport (or is a
    WebSocket to somewhere else): picows then takes the connection whole."""
    return line.startswith(b"GET ") and b"transport=websocket" in line


def requested_sid(line: bytes) -> str | None:
    """The ``sid`` a request line names, if any."""
    parts = line.split(b" ")
    if len(parts) != 3:
        return None
    for field in parts[1].partition(b"?")[2].split(b"&"):
        if field.startswith(b"sid="):
            return field[4:].decode("latin-1")
    return None


def hand_over(transport: asyncio.BaseTransport, protocol: Any, data: bytes) -> None:
    """Give ``transport`` to a buffered ``protocol``, which first reads ``data``."""
    transport.set_protocol(protocol)
    protocol.connection_made(transport)
    offset = 0
    while offset < len(data):
        buffer = protocol.get_buffer(len(data) - offset)
        size = min(len(buffer), len(data) - offset)
        buffer[:size] = data[offset : offset + size]
        protocol.buffer_updated(size)
        offset += size


class Front:
    """What the HTTP connections of one listener share."""

    def __init__(
        self,
        serve: Callable[[HttpConnection, Request], None],
        websocket: Callable[[], Any],
        heartbeat: Any,
        *,
        timeout: float,
        max_body: int,
    ) -> None:
        self.serve = serve  # the router: answers a request now or later
        self.websocket = websocket  # a new picows protocol
        self.heartbeat = heartbeat
        self.timeout = timeout
        self.max_body = max_body
        self.buffer = bytearray(READ_SIZE)
        self.view = memoryview(self.buffer)
        self.open = 0  # connections still speaking HTTP
        # Where requests for sessions of other workers of this node go (handoff.py).
        self.handoff: Any = None
        self.address_limit: Any = None  # limits.AddressLimit, when connections are counted
        self._adopting: set[asyncio.Task[Any]] = set()

    def connection(self, carried: bytes = b"") -> HttpConnection:
        return HttpConnection(self, carried)

    def adopt(self, sock: Any, carried: bytes) -> None:
        """Serve a connection another worker accepted, ``carried`` its bytes read so far."""
        loop = asyncio.get_running_loop()
        task = loop.create_task(
            loop.connect_accepted_socket(lambda: self.connection(carried), sock)
        )
        self._adopting.add(task)
        task.add_done_callback(self._adopted)

    def _adopted(self, task: asyncio.Task[Any]) -> None:
        self._adopting.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("could not adopt a connection: %s", task.exception())


class HttpConnection(asyncio.BufferedProtocol):
    """One TCP connection while it speaks HTTP."""

    __slots__ = (
        "carried",
        "counted",
        "deadline",
        "front",
        "in_next",
        "peer",
        "reader",
        "request",
        "transport",
        "waiter",
    )

    def __init__(self, front: Front, carried: bytes = b"") -> None:
        self.front = front
        self.carried = carried  # bytes another worker read before handing it over
        self.transport: Any = None
        self.reader: RequestReader | None = RequestReader(max_body=front.max_body)
        self.request: Request | None = None  # the one being answered
        self.waiter: Any = None  # what holds this request open (a long-poll's session)
        self.deadline = 0.0
        self.peer = ""
        self.counted = False  # against the address limit
        self.in_next = False

    # -- asyncio callbacks ------------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.peer = peer[0] if peer else ""
        self.front.open += 1
        self._wait(self.front.timeout)
        limit = self.front.address_limit
        if limit is not None and limit.counted(self.peer):
            if not limit.admit(self.peer):
                self.fail(HttpError(429, "too many connections from your address"))
                return
            self.counted = True
        if self.carried:
            assert self.reader is not None
            self.reader.feed(self.carried)
            self.carried = b""
            self._next()

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.front.view

    def buffer_updated(self, nbytes: int) -> None:
        if self.reader is None:
            return
        self.reader.feed(self.front.view[:nbytes])
        if self.request is None:
            self._next()

    def eof_received(self) -> bool:
        return False  # a client that stops sending is done: close

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is not None:
            self._detach()
        self.reader = None
        waiter, self.waiter = self.waiter, None
        if waiter is not None:
            waiter.request_gone(self)

    # -- requests ---------------------------------------------------------------

    def _next(self) -> None:
        """Serve the complete requests in the buffer, one after the other."""
        self.in_next = True  # a request answered at once loops here, not recursively
        try:
            while self.reader is not None and self.request is None and self.transport is not None:
                try:
                    line = self.reader.request_line()
                    if line is not None and self._elsewhere(line):
                        return
                    if line is not None and websocket_wanted(line):
                        self._to_websocket()
                        return
                    request = self.reader.next_request()
                except HttpError as exc:
                    self.fail(exc)
                    return
                if request is None:
                    return
                self.request = request
                self.front.serve(self, request)
        finally:
            self.in_next = False

    def _elsewhere(self, line: bytes) -> bool:
        """Send the connection to the worker owning the session it names, if another."""
        handoff = self.front.handoff
        if handoff is None or b"sid=" not in line:
            return False
        sid = requested_sid(line)
        owner = handoff.owner_elsewhere(sid) if sid else None
        if owner is None:
            return False
        assert self.reader is not None
        transport = self.transport
        if not handoff.send(
            owner, transport.get_extra_info("socket").fileno(), self.reader.buffered
        ):
            self.fail(HttpError(503, "the worker holding this session cannot be reached"))
            return True
        self._detach()
        transport.abort()  # the owner has its own descriptor of the socket now
        return True

    def _to_websocket(self) -> None:
        assert self.reader is not None
        data = self.reader.buffered
        transport = self._detach()  # the Connection counts it from now on
        hand_over(transport, self.front.websocket(), data)

    def hold(self, waiter: Any) -> None:
        """Keep the request open until ``respond``; ``waiter.request_gone(self)`` is
        called if the client goes first."""
        self.waiter = waiter

    def respond(
        self,
        status: int,
        body: bytes = b"",
        content_type: str = "text/plain; charset=UTF-8",
        headers: list[tuple[str, str]] | None = None,
        close: bool = False,
    ) -> None:
        """Answer the current request; the connection then serves the next or closes."""
        request, self.request = self.request, None
        self.waiter = None
        transport = self.transport
        if transport is None:
            return
        close = close or request is None or not request.keep_alive
        head = [
            f"HTTP/1.1 {status} {_reason(status)}",
            f"Content-Type: {content_type}",
            f"Content-Length: {len(body)}",
            "Cache-Control: no-store",
        ]
        if headers:
            head += [f"{name}: {value}" for name, value in headers]
        if close:
            head.append("Connection: close")
        transport.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
        if close:
            self._detach()
            transport.close()
            return
        self._wait(self.front.timeout)
        if not self.in_next:
            self._next()

    def fail(self, exc: HttpError, headers: list[tuple[str, str]] | None = None) -> None:
        """Answer with an error and close: what follows cannot be trusted."""
        self.respond(exc.status, exc.message.encode(), headers=headers, close=True)

    def close(self, reason: str = "") -> None:
        if self.transport is not None:
            self._detach().close()

    def _detach(self) -> Any:
        """This object is done with its transport (closed, or handed over): the transport."""
        transport, self.transport = self.transport, None
        self.reader = None
        self.front.open -= 1
        if self.counted:
            self.counted = False
            self.front.address_limit.release(self.peer)
        return transport

    # -- time -------------------------------------------------------------------

    def _wait(self, seconds: float) -> None:
        heartbeat = self.front.heartbeat
        self.deadline = heartbeat.loop.time() + seconds
        heartbeat.schedule(self, self.deadline)

    def on_timer(self, wheel: Any, now: float) -> None:
        if self.transport is None or self.waiter is not None:
            return  # handed over, closed, or held open by a long-poll (which ends by itself)
        if now < self.deadline:
            wheel.schedule(self, self.deadline)
        elif self.request is None and self.reader is not None and not self.reader.buffered:
            self.close()  # an idle keep-alive connection
        else:
            self.fail(HttpError(408, "request not received in time"))


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"
