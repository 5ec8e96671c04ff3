"""The live dashboard: a page on its own port, ``/dashboard/``, and the JSON it polls.

The page (``web/``: hand-written HTML, CSS and JavaScript, no third-party code)
asks for the monitor token, or takes it from the URL's fragment
(``/dashboard/#token=...``), which no browser sends to a server. It polls
``/dashboard/api/state`` every second with the token in an ``Authorization:
Bearer`` header, never in a URL, and starts operations with a POST to
``/dashboard/api/operations``, under the monitor namespace's limits and errors
(``Storm.initiate_poke``). Without the token nothing of the storm is served.

Every worker of a node listens on the dashboard's port (SO_REUSEPORT) and any of
them serves the whole cluster (``live.LiveView``).
"""

from __future__ import annotations

import asyncio
import hmac
import inspect
import logging
from importlib import resources
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from .live import LiveView

if TYPE_CHECKING:
    from .app import Storm

log = logging.getLogger("msstorm.dashboard")

PREFIX = "/dashboard/"
ASSETS = {
    "": ("index.html", "text/html"),
    "index.html": ("index.html", "text/html"),
    "dashboard.js": ("dashboard.js", "text/javascript"),
    "dashboard.css": ("dashboard.css", "text/css"),
}
MAX_BODY = 4096
# The page loads nothing but its own files and talks to nobody but its server.
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


def _asset(name: str) -> bytes:
    return resources.files("msstorm.storm").joinpath("web", name).read_bytes()


def dashboard_url(host: str, port: int, token: str) -> str:
    """The page's address, the token in its fragment (which stays in the browser)."""
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    return f"http://{shown}:{port}{PREFIX}#token={token}"


class Dashboard:
    """The dashboard's HTTP service on one worker."""

    def __init__(self, storm: Storm) -> None:
        self.storm = storm
        self.view = LiveView(storm)
        self.assets = {path: (_asset(name), kind) for path, (name, kind) in ASSETS.items()}
        self.runner: web.AppRunner | None = None
        self.listening: asyncio.Server | None = None
        self.port = 0

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_get("/dashboard", self._to_page)
        app.router.add_get(PREFIX + "api/state", self._state)
        app.router.add_post(PREFIX + "api/operations", self._start)
        app.router.add_get(PREFIX + "{name:[a-z.]*}", self._page)
        return app

    async def start(self, host: str, port: int, reuse_port: bool = False) -> None:
        self.runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
        await self.runner.setup()
        assert self.runner.server is not None
        self.listening = await asyncio.get_running_loop().create_server(
            self.runner.server, host, port, reuse_port=reuse_port
        )
        self.port = self.listening.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self.listening is not None:
            self.listening.close()
        if self.runner is not None:
            await self.runner.cleanup()

    # -- handlers ---------------------------------------------------------------------

    async def _to_page(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(PREFIX)

    async def _page(self, request: web.Request) -> web.StreamResponse:
        asset = self.assets.get(request.match_info["name"])
        if asset is None:
            raise web.HTTPNotFound(text="Not Found")
        body, kind = asset
        return web.Response(body=body, content_type=kind, charset="utf-8", headers=HEADERS)

    def _authorized(self, request: web.Request) -> bool:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            token.strip().encode(), self.storm.token.encode()
        )

    def _refused(self) -> web.Response:
        self.storm.server.stats.refused["DashboardToken"] += 1
        return _json({"error": {"code": "bad-token", "message": "invalid monitor token"}}, 401)

    async def _state(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            return self._refused()
        return _json(await self.view.state())

    async def _start(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            return self._refused()
        try:
            body = orjson.loads(await request.read())
        except (orjson.JSONDecodeError, web.HTTPRequestEntityTooLarge):
            return _json({"error": {"code": "bad-request", "message": "not JSON"}}, 400)
        # Answered as initiatePoke is acknowledged: the operation, or the refusal.
        answer: Any = self.storm.initiate_poke("", body)
        if inspect.isawaitable(answer):
            answer = await answer
        return _json(answer)


def _json(document: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=orjson.dumps(document),
        status=status,
        content_type="application/json",
        headers=HEADERS,
    )
