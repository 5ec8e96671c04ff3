"""python-socketio's class-based namespaces: ``AsyncNamespace``.

Its ``on_<event>`` methods are the handlers of namespace ``namespace``
(``on_connect(sid, environ, auth)``, ``on_disconnect(sid, reason)``, events);
its ``emit``, ``enter_room``... are the server's, with this namespace by default.
A subclass that overrides ``trigger_event`` gets every event through it.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .server import AsyncServer, Targets, _SessionScope


class AsyncNamespace:
    def __init__(self, namespace: str | None = None) -> None:
        self.namespace = namespace or "/"
        self.server: AsyncServer | None = None

    def is_asyncio_based(self) -> bool:
        return True

    def _set_server(self, server: AsyncServer) -> None:
        self.server = server

    @property
    def _server(self) -> AsyncServer:
        if self.server is None:
            raise RuntimeError("this namespace is not registered with a server")
        return self.server

    def dispatches_itself(self) -> bool:
        """Whether a subclass routes events with its own ``trigger_event``."""
        return type(self).trigger_event is not AsyncNamespace.trigger_event

    async def trigger_event(self, event: str, *args: Any) -> Any:
        """Call ``on_<event>`` with ``args`` (None when there is none)."""
        handler = getattr(self, "on_" + (event or ""), None)
        if handler is None:
            return None
        result = handler(*args)
        if inspect.isawaitable(result):
            result = await result
        return result

    def _dispatch(self, event: str, *args: Any) -> Any:
        return self.trigger_event(event, *args)

    async def emit(
        self,
        event: str,
        data: Any = None,
        to: Targets = None,
        room: Targets = None,
        skip_sid: Targets = None,
        namespace: str | None = None,
        callback: Any = None,
        ignore_queue: bool = False,
    ) -> None:
        await self._server.emit(
            event, data, to, room, skip_sid, namespace or self.namespace, callback
        )

    async def send(
        self,
        data: Any,
        to: Targets = None,
        room: Targets = None,
        skip_sid: Targets = None,
        namespace: str | None = None,
        callback: Any = None,
        ignore_queue: bool = False,
    ) -> None:
        await self._server.send(data, to, room, skip_sid, namespace or self.namespace, callback)

    async def call(
        self,
        event: str,
        data: Any = None,
        to: str | None = None,
        sid: str | None = None,
        namespace: str | None = None,
        timeout: float = 60,
        ignore_queue: bool = False,
    ) -> Any:
        return await self._server.call(event, data, to, sid, namespace or self.namespace, timeout)

    async def enter_room(self, sid: str, room: str, namespace: str | None = None) -> None:
        await self._server.enter_room(sid, room, namespace or self.namespace)

    async def leave_room(self, sid: str, room: str, namespace: str | None = None) -> None:
        await self._server.leave_room(sid, room, namespace or self.namespace)

    async def close_room(self, room: str, namespace: str | None = None) -> None:
        await self._server.close_room(room, namespace or self.namespace)

    def rooms(self, sid: str, namespace: str | None = None) -> list[str]:
        return self._server.rooms(sid, namespace or self.namespace)

    async def get_session(self, sid: str, namespace: str | None = None) -> dict[str, Any]:
        return await self._server.get_session(sid, namespace or self.namespace)

    async def save_session(
        self, sid: str, session: dict[str, Any], namespace: str | None = None
    ) -> None:
        await self._server.save_session(sid, session, namespace or self.namespace)

    def session(self, sid: str, namespace: str | None = None) -> _SessionScope:
        return self._server.session(sid, namespace or self.namespace)

    async def disconnect(self, sid: str, namespace: str | None = None) -> None:
        await self._server.disconnect(sid, namespace or self.namespace)
