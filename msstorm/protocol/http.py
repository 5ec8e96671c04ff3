"""HTTP/1.1 requests read without I/O: what the port's front needs, and its limits.

How it works

- ``RequestReader`` is fed the bytes of one TCP connection (``feed``) and hands
  out complete requests, one at a time (``next_request``): the request line, the
  headers (names lower-cased, repeated ones joined by ", "), and the body that
  ``Content-Length`` announces. Requests may arrive pipelined; each call takes
  one off the front.
- ``request_line`` shows the first line as soon as it is complete, before the
  headers: enough for the front to tell a WebSocket upgrade (handed to picows
  whole) from a request it serves itself.
- Limits a server facing the Internet needs: the request line (``414``), the
  whole head (``431``), the body (``413``). A body without a length, or chunked,
  is refused (``411``): no Engine.IO client sends one. Anything malformed is
  ``400``. Each refusal is an ``HttpError`` carrying its status; the connection
  is then closed, since what follows it cannot be trusted to start a request.

Bytes in, requests out: nothing here reads a clock, opens a socket or logs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import HttpError

__all__ = ["MAX_HEAD", "MAX_REQUEST_LINE", "Request", "RequestReader"]

MAX_REQUEST_LINE = 8192
MAX_HEAD = 16384
_TOKEN = frozenset(b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_METHOD = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ")


@dataclass(slots=True)
class Request:
    """One complete HTTP request."""

    method: str
    path: str
    query: str
    version: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    @property
    def keep_alive(self) -> bool:
        """Whether the connection may carry another request after this one."""
        connection = self.headers.get("connection", "").lower()
        if self.version == "HTTP/1.0":
            return "keep-alive" in connection
        return "close" not in connection


def parse_request_line(line: bytes) -> tuple[str, str, str, str]:
    """``(method, path, query, version)`` of a request line (without its CRLF)."""
    parts = line.split(b" ")
    if len(parts) != 3:
        raise HttpError(400, "malformed request line")
    method, target, version = parts
    if not method or not set(method) <= _METHOD:
        raise HttpError(400, "malformed request method")
    if version not in (b"HTTP/1.1", b"HTTP/1.0"):
        raise HttpError(505 if version.startswith(b"HTTP/") else 400, "HTTP/1.1 only")
    if not target.startswith(b"/") or any(c <= 32 or c >= 127 for c in target):
        raise HttpError(400, "malformed request target")
    path, _, query = target.decode("ascii").partition("?")
    return method.decode("ascii"), path, query, version.decode("ascii")


def _parse_headers(lines: list[bytes]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in lines:
        name, colon, value = line.partition(b":")
        if not colon or not name or not set(name) <= _TOKEN:
            # A blank before the colon or a folded line would let two parsers
            # disagree on the headers (request smuggling): refuse them.
            raise HttpError(400, "malformed header line")
        if any(c < 32 and c != 9 for c in value):
            raise HttpError(400, "control character in a header")
        text = value.strip(b" \t").decode("latin-1")
        key = name.decode("ascii").lower()
        if key in headers:
            if key in ("content-length", "host"):
                raise HttpError(400, f"repeated {key} header")
            headers[key] += ", " + text
        else:
            headers[key] = text
    return headers


def _body_length(headers: dict[str, str], max_body: int) -> int:
    if "transfer-encoding" in headers:
        raise HttpError(411, "a body must come with Content-Length, not chunked")
    length = headers.get("content-length")
    if length is None:
        return 0
    if not length.isdigit() or len(length) > 12:
        raise HttpError(400, "malformed Content-Length")
    size = int(length)
    if size > max_body:
        raise HttpError(413, f"body over {max_body} bytes")
    return size


class RequestReader:
    """The requests of one connection, as its bytes arrive."""

    __slots__ = ("_buffer", "_pending", "max_body", "max_head")

    def __init__(self, max_head: int = MAX_HEAD, max_body: int = 1_000_000) -> None:
        self.max_head = max_head
        self.max_body = max_body
        self._buffer = bytearray()
        # A request whose head is parsed and whose body is still arriving.
        self._pending: tuple[Request, int] | None = None

    @property
    def buffered(self) -> bytes:
        """What has been fed and not yet taken as a request."""
        return bytes(self._buffer)

    def feed(self, data: bytes | memoryview) -> None:
        self._buffer += data

    def request_line(self) -> bytes | None:
        """The first line of the next request once it is complete (no CRLF), else None
        (also while a request's body is still arriving)."""
        if self._pending is not None:
            return None
        end = self._buffer.find(b"\r\n", 0, MAX_REQUEST_LINE + 2)
        if end < 0:
            if len(self._buffer) > MAX_REQUEST_LINE:
                raise HttpError(414, "request line too long")
            return None
        return bytes(self._buffer[:end])

    def next_request(self) -> Request | None:
        """The next complete request, or None until more bytes arrive."""
        if self._pending is None:
            head_end = self._buffer.find(b"\r\n\r\n", 0, self.max_head + 4)
            if head_end < 0:
                if len(self._buffer) > self.max_head:
                    raise HttpError(431, "request head too large")
                self.request_line()  # an over-long first line says so at once
                return None
            lines = bytes(self._buffer[:head_end]).split(b"\r\n")
            method, path, query, version = parse_request_line(lines[0])
            request = Request(method, path, query, version, _parse_headers(lines[1:]))
            del self._buffer[: head_end + 4]
            self._pending = (request, _body_length(request.headers, self.max_body))
        request, size = self._pending
        if len(self._buffer) < size:
            return None
        request.body = bytes(self._buffer[:size])
        del self._buffer[:size]
        self._pending = None
        return request
