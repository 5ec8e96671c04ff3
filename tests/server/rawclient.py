"""Loopback helpers: the echo endpoints served in the test's own event loop, and a
raw WebSocket client that speaks Engine.IO by hand, so tests see every frame."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import picows

import msstorm

ROOT = Path(__file__).resolve().parents[2]


def load_echo() -> Any:
    spec = importlib.util.spec_from_file_location("echo_example", ROOT / "examples" / "echo.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ECHO = load_echo()
OPTIONS = {
    "ping_interval": 300,
    "ping_timeout": 200,
    "max_payload": 10_000,
    "connect_timeout": 1000,
}


class Echo:
    """Echo endpoints on a loopback port: ``/socket.io/`` on every server of the
    tests, ``/engine.io/`` too on msstorm's."""

    def __init__(self, port: int, timer_lag: float = 0.0) -> None:
        self.port = port
        self.url = f"ws://127.0.0.1:{port}"
        # How late the server may act on a deadline it keeps: none for msstorm, which
        # checks a polling session's deadline on every request; Node's engine.io acts
        # when its setTimeout fires, which may be a few milliseconds late.
        self.timer_lag = timer_lag


class Served(Echo):
    """examples/echo.py's endpoints, served in the test's own event loop."""

    def __init__(self, listener: msstorm.Listener, sio: msstorm.Server, eio: msstorm.EngineServer):
        super().__init__(listener.port)
        self.listener = listener
        self.sio = sio
        self.eio = eio

    async def client(self, path: str = "/socket.io/", **options: Any) -> RawClient:
        return await RawClient.connect(f"{self.url}{path}?EIO=4&transport=websocket", **options)


@contextlib.asynccontextmanager
async def serving() -> AsyncIterator[Served]:
    """examples/echo.py's endpoints on a free port, built when entered (after a test has
    changed what it needs to), closed on the way out."""
    sio, eio = ECHO.build(OPTIONS)
    listener = await msstorm.serve(sio, eio, host="127.0.0.1", port=0)
    try:
        yield Served(listener, sio, eio)
    finally:
        listener.close()
        await listener.wait_closed()


class RawClient(picows.WSListener):
    """A bare WebSocket peer: queues every frame, answers pings unless told not to."""

    def __init__(self, answer_pings: bool = True) -> None:
        self.answer_pings = answer_pings
        self.frames: asyncio.Queue[tuple[picows.WSMsgType, bytes]] = asyncio.Queue()
        self.pings = 0
        self.close_code: int | None = None
        self.close_message = b""
        self.disconnected = asyncio.get_running_loop().create_future()
        self.transport: Any = None

    @classmethod
    async def connect(cls, url: str, answer_pings: bool = True) -> RawClient:
        transport, client = await picows.ws_connect(
            lambda: cls(answer_pings), url, use_aiofastnet=False, enable_auto_pong=True
        )
        client.transport = transport
        return client

    def on_ws_frame(self, transport: picows.WSTransport, frame: picows.WSFrame) -> None:
        payload = frame.get_payload_as_bytes()
        if frame.msg_type == picows.WSMsgType.CLOSE:
            self.close_code = frame.get_close_code().value
            self.close_message = frame.get_close_message() or b""
            transport.disconnect()
        elif payload == b"2" and frame.msg_type == picows.WSMsgType.TEXT:
            self.pings += 1
            if self.answer_pings:
                transport.send(picows.WSMsgType.TEXT, b"3")
        else:
            self.frames.put_nowait((frame.msg_type, payload))

    def on_ws_disconnected(self, transport: picows.WSTransport) -> None:
        if not self.disconnected.done():
            self.disconnected.set_result(None)

    def send(self, data: bytes | str, binary: bool = False) -> None:
        if isinstance(data, str):
            data = data.encode()
        kind = picows.WSMsgType.BINARY if binary else picows.WSMsgType.TEXT
        self.transport.send(kind, data)

    async def recv(self, timeout: float = 2.0) -> bytes:
        _, payload = await asyncio.wait_for(self.frames.get(), timeout)
        return payload

    async def recv_frame(self, timeout: float = 2.0) -> tuple[picows.WSMsgType, bytes]:
        return await asyncio.wait_for(self.frames.get(), timeout)

    async def open(self) -> bytes:
        """The Engine.IO open packet."""
        frame = await self.recv()
        assert frame.startswith(b"0{")
        return frame

    async def join(self, namespace: str = "/", auth: bytes = b"") -> bytes:
        """Open, connect to a namespace, swallow the echo's auth event; the CONNECT answer."""
        await self.open()
        prefix = b"40" if namespace == "/" else b"40" + namespace.encode() + b","
        self.send(prefix + auth)
        answer = await self.recv()
        assert answer.startswith(prefix + b'{"sid":'), answer
        auth_event = await self.recv()
        assert b'["auth"' in auth_event
        return answer

    async def closed(self, timeout: float = 3.0) -> int | None:
        """Wait for the server to close; the close code it sent."""
        await asyncio.wait_for(asyncio.shield(self.disconnected), timeout)
        return self.close_code

    def close(self) -> None:
        if self.transport is not None:
            self.transport.disconnect()


class HttpAnswer:
    """One HTTP response, as read off the socket."""

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"HttpAnswer({self.status}, {self.headers}, {self.body[:200]!r})"


class HttpPeer:
    """A keep-alive HTTP/1.1 connection written by hand: every byte is the test's."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, port: int) -> HttpPeer:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    def send(
        self,
        method: str,
        target: str,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
    ) -> None:
        lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1"]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        if body or method == "POST":
            lines.append(f"Content-Length: {len(body)}")
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)

    async def answer(self, timeout: float = 3.0) -> HttpAnswer:
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), timeout)
        status_line, *header_lines = head.decode("latin-1").split("\r\n")[:-2]
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("transfer-encoding", "").lower() == "chunked":  # Node's errors come so
            body = await asyncio.wait_for(self._chunks(), timeout)
        else:
            size = int(headers.get("content-length", "0"))
            body = await asyncio.wait_for(self.reader.readexactly(size), timeout)
        return HttpAnswer(int(status_line.split()[1]), headers, body)

    async def _chunks(self) -> bytes:
        body = b""
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            chunk = await self.reader.readexactly(size + 2)  # and its CRLF
            if size == 0:
                return body  # no trailers: nobody here sends them
            body += chunk[:-2]

    async def request(
        self,
        method: str,
        target: str,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        timeout: float = 3.0,
    ) -> HttpAnswer:
        self.send(method, target, body, headers)
        return await self.answer(timeout)

    async def closed_by_server(self, timeout: float = 3.0) -> bool:
        return await asyncio.wait_for(self.reader.read(), timeout) == b""

    def close(self) -> None:
        self.writer.close()


async def http(
    port: int, method: str, target: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> HttpAnswer:
    """One request on a connection of its own."""
    peer = await HttpPeer.connect(port)
    try:
        return await peer.request(method, target, body, headers)
    finally:
        peer.close()
