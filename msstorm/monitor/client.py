"""The monitor's connection: python-socketio's ``AsyncClient`` on ``/monitor``.

``MonitorClient`` connects with the token (WebSocket transport only), starts
operations with ``initiatePoke`` and waits for the ``status`` the server pushes
when one ends, polling ``statusRequest`` (answered through its ack) for the
progress meanwhile. Whatever stops it from doing that (no server, a refused
token, a refused operation, a lost connection) is a ``MonitorError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import socketio  # type: ignore[import-untyped]

NAMESPACE = "/monitor"

log = logging.getLogger("msstorm.monitor")


class MonitorError(Exception):
    """Something that stops the monitor: ``code`` for machines, the message for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def to_json(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}}


@dataclass
class Waited:
    """How the wait for an operation ended."""

    ack: dict[str, Any]  # initiatePoke's answer: op and expected
    status: dict[str, Any]  # the final status, or the last one when we gave up
    gave_up: bool  # the monitor's timeout passed before the server ended it


ProgressCallback = Callable[[dict[str, Any]], None]


class MonitorClient:
    """One monitor connection to a MessageStorm server."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        request_timeout: float = 10.0,
    ) -> None:
        self.url = url
        self.token = token
        self.request_timeout = request_timeout
        self._http: aiohttp.ClientSession | None = None
        self._sio: Any = None
        self._finals: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._refusal: Any = None  # the CONNECT_ERROR's data, when the namespace is refused
        self._lost: asyncio.Future[str] | None = None
        self._closing = False

    # -- connection -----------------------------------------------------------

    async def connect(self) -> None:
        loop = asyncio.get_running_loop()
        self._lost = loop.create_future()
        self._http = aiohttp.ClientSession()
        sio = socketio.AsyncClient(
            reconnection=False,
            handle_sigint=False,  # Ctrl-C is the command's to handle
            http_session=self._http,
            request_timeout=self.request_timeout,
            # A final status carries one entry per answer: tens of MB for a big
            # broadcast, far over aiohttp's 4 MB default.
            websocket_extra_options={"max_msg_size": 0},
        )
        sio.on("status", self._on_status, namespace=NAMESPACE)
        sio.on("connect_error", self._on_connect_error, namespace=NAMESPACE)
        sio.on("disconnect", self._on_disconnect, namespace=NAMESPACE)
        self._sio = sio
        try:
            await asyncio.wait_for(
                sio.connect(
                    self.url,
                    transports=["websocket"],
                    namespaces=[NAMESPACE],
                    auth={"token": self.token},
                    wait_timeout=self.request_timeout,
                ),
                self.request_timeout,
            )
        except socketio.exceptions.ConnectionError as exc:
            await self.close()
            if NAMESPACE in sio.failed_namespaces:  # a CONNECT_ERROR, not a failed handshake
                raise self._refused() from None
            raise MonitorError("unreachable", await self._why_unreachable(exc)) from None
        except TimeoutError:
            await self.close()
            raise MonitorError(
                "unreachable",
                f"cannot reach {self.url}: no answer within {self.request_timeout:g} s",
            ) from None
        except (OSError, ValueError, aiohttp.ClientError) as exc:  # a URL aiohttp refuses...
            await self.close()
            raise MonitorError("unreachable", f"cannot reach {self.url}: {exc}") from None

    def _refused(self) -> MonitorError:
        refusal = self._refusal
        message = refusal.get("message") if isinstance(refusal, dict) else refusal
        said = f" (the server said: {message})" if message else ""
        if isinstance(message, str) and "namespace" in message.lower():
            return MonitorError(
                "no-monitor-namespace",
                f"the server at {self.url} has no {NAMESPACE} namespace{said}: "
                "is it msstorm-server?",
            )
        return MonitorError("token-refused", f"monitor token refused by the server{said}")

    async def _why_unreachable(self, exc: Exception) -> str:
        """python-socketio says only 'Connection error': find out what failed."""
        parts = urlsplit(self.url)
        host = parts.hostname or "127.0.0.1"
        port = parts.port or (443 if parts.scheme in ("https", "wss") else 80)
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
        except (OSError, TimeoutError) as error:
            reason = error.strerror if isinstance(error, OSError) and error.strerror else error
            if isinstance(error, socket.gaierror):
                reason = f"unknown host {host!r}"
            return f"cannot reach {self.url}: {reason or 'no answer'}"
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return (
            f"cannot reach {self.url}: something listens there but the Socket.IO handshake "
            f"failed ({exc}); is it msstorm-server, and is the URL's scheme right?"
        )

    async def close(self) -> None:
        self._closing = True
        if self._sio is not None and self._sio.connected:
            with contextlib.suppress(Exception):
                await self._sio.disconnect()
        if self._http is not None and not self._http.closed:
            await self._http.close()

    # -- events ---------------------------------------------------------------

    def _final(self, op: str) -> asyncio.Future[dict[str, Any]]:
        if op not in self._finals:
            self._finals[op] = asyncio.get_running_loop().create_future()
        return self._finals[op]

    async def _on_status(self, status: Any = None, *_: Any) -> None:
        if not isinstance(status, dict) or not isinstance(status.get("op"), str):
            log.debug("status without an operation: %r", status)
            return
        if not status.get("done", True):
            return  # a progress status; the final one says done
        future = self._final(status["op"])
        if not future.done():
            future.set_result(status)

    async def _on_connect_error(self, data: Any = None, *_: Any) -> None:
        self._refusal = data if data is not None else ""

    async def _on_disconnect(self, reason: Any = None, *_: Any) -> None:
        if self._lost is not None and not self._lost.done() and not self._closing:
            self._lost.set_result(str(reason) if reason else "the server closed the connection")

    # -- requests -------------------------------------------------------------

    async def _call(self, event: str, argument: Any, what: str) -> Any:
        self._check_connected()
        try:
            return await self._sio.call(
                event, argument, namespace=NAMESPACE, timeout=self.request_timeout
            )
        except socketio.exceptions.TimeoutError:
            self._check_connected()
            raise MonitorError(
                "no-answer",
                f"the server did not answer {what} within {self.request_timeout:g} s",
            ) from None
        except socketio.exceptions.SocketIOError as exc:
            self._check_connected()
            raise MonitorError("disconnected", f"{what} failed: {exc}") from None

    def _check_connected(self) -> None:
        if self._lost is not None and self._lost.done():
            raise MonitorError(
                "disconnected", f"lost the connection to {self.url}: {self._lost.result()}"
            )

    async def initiate(self, request: dict[str, Any]) -> dict[str, Any]:
        """``initiatePoke``: its ack ``{"op", "expected"}``, or a ``MonitorError``."""
        ack = await self._call("initiatePoke", request, "initiatePoke")
        if isinstance(ack, dict) and isinstance(ack.get("error"), dict):
            error = ack["error"]
            code = str(error.get("code", "refused"))
            raise MonitorError(
                code, f"the server refused {_describe(request)}: {error.get('message', code)}"
            )
        if not isinstance(ack, dict) or not isinstance(ack.get("op"), str):
            raise MonitorError("bad-answer", f"unexpected answer to initiatePoke: {ack!r}")
        return ack

    async def status_request(self, op: str | None = None, detail: bool = True) -> dict[str, Any]:
        """``statusRequest``, answered through its ack: an operation's status or the
        overview; a server's refusal (unknown operation...) is a ``MonitorError``."""
        request: dict[str, Any] = {}
        if op is not None:
            request["op"] = op
        if not detail:
            request["detail"] = "summary"
        status = await self._call("statusRequest", request, "statusRequest")
        if not isinstance(status, dict):
            raise MonitorError("bad-answer", f"unexpected answer to statusRequest: {status!r}")
        if isinstance(status.get("error"), dict):
            error = status["error"]
            code = str(error.get("code", "refused"))
            raise MonitorError(code, f"the server says: {error.get('message', code)}")
        return status

    # -- operations -----------------------------------------------------------

    async def run_operation(
        self,
        request: dict[str, Any],
        *,
        timeout: float,
        refresh: float = 0.25,
        on_start: Callable[[dict[str, Any]], None] | None = None,
        on_progress: ProgressCallback | None = None,
        detail_when_giving_up: bool = True,
    ) -> Waited:
        """Start an operation and wait for its final status, ``timeout`` seconds at most.

        ``on_progress`` gets a summary status every ``refresh`` seconds meanwhile.
        When the server has not ended it in time, the status is asked for (with
        the per-answer array when ``detail_when_giving_up``) and ``gave_up`` is set.
        """
        ack = await self.initiate(request)
        op: str = ack["op"]
        if on_start is not None:
            on_start(ack)
        final = self._final(op)
        assert self._lost is not None
        poller = None
        if on_progress is not None:
            poller = asyncio.ensure_future(self._poll(op, refresh, on_progress))
        try:
            deadline = time.monotonic() + timeout
            waiters: set[asyncio.Future[Any]] = {final, self._lost}
            await asyncio.wait(
                waiters,
                timeout=max(0.0, deadline - time.monotonic()),
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            if poller is not None:
                poller.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await poller
        if final.done():
            del self._finals[op]
            return Waited(ack, final.result(), gave_up=False)
        self._check_connected()
        status = await self.status_request(op, detail=detail_when_giving_up)
        if status.get("done"):  # it ended while we asked: as good as pushed
            self._finals.pop(op, None)
            return Waited(ack, status, gave_up=False)
        return Waited(ack, status, gave_up=True)

    async def _poll(self, op: str, refresh: float, on_progress: ProgressCallback) -> None:
        while True:
            await asyncio.sleep(refresh)
            try:
                status = await self.status_request(op, detail=False)
            except MonitorError:
                continue  # progress is best effort; the wait itself reports failures
            on_progress(status)


def _describe(request: dict[str, Any]) -> str:
    kind = request.get("type", "?")
    if "treeLeaves" in request:
        return f"a {kind} of {request['treeLeaves']} leaves"
    if "destId" in request:
        return f"a {kind} to {request['destId']}"
    return f"a {kind}"
