"""Serving an ``AsyncServer``: in this process (``serve``), or over workers and nodes (``run``).

``run("module:app", workers=N, bus=...)`` starts workers as ``msstorm-server``
does: a supervisor (``msstorm.cluster.supervisor``) runs N processes on the same
port, each one ``python -m msstorm.app.worker module:app ...``, joined by the
embedded bus, or by Redis to the workers of other nodes (``bus="redis://..."``).
A worker imports the application itself, as uvicorn's do: the module must build
it at import time.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import signal
import sys
from typing import Any

import uvloop

from msstorm import extras
from msstorm.cluster.bus import REDIS_SCHEMES, open_bus
from msstorm.cluster.supervisor import Supervisor
from msstorm.server import Listener, ids
from msstorm.server import serve as serve_endpoints

from .server import AsyncServer

log = logging.getLogger("msstorm.app")


async def serve(*apps: Any, host: str = "127.0.0.1", port: int = 3000, **options: Any) -> Listener:
    """Listen on ``host:port`` and serve ``apps`` (``AsyncServer``s, or the engine's
    ``Server``/``EngineServer``) until the listener is closed; options as
    ``msstorm.server.serve``'s. An ``AsyncServer`` that has joined no bus is a
    cluster of one."""
    endpoints = []
    for app in apps:
        if isinstance(app, AsyncServer):
            if app.cors_allowed_origins is not None:
                options.setdefault("cors_origin", app.cors_allowed_origins)
            endpoints.append(app.engine)
        else:
            endpoints.append(app)
    return await serve_endpoints(*endpoints, host=host, port=port, **options)


def load(spec: str) -> AsyncServer:
    """The ``AsyncServer`` that ``"package.module:attribute"`` names."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"an application is named 'module:attribute', not {spec!r}")
    module = importlib.import_module(module_name)
    app = getattr(module, attribute, None)
    if not isinstance(app, AsyncServer):
        raise ValueError(f"{spec} is not an msstorm.AsyncServer (it is {type(app).__name__})")
    return app


def run(
    app: str | AsyncServer,
    host: str = "127.0.0.1",
    port: int = 3000,
    workers: int = 1,
    bus: str = "embedded",
    cluster: str = "msstorm",
    node_id: str | None = None,
    log_level: str = "info",
) -> int:
    """Serve ``app`` until SIGINT or SIGTERM: in this process with ``workers=1``, else
    with a supervisor and ``workers`` processes on the same port (``app`` is then
    ``"module:attribute"``, imported by each). ``bus="redis://host:port/db"`` joins
    the other nodes started with the same URL and ``cluster`` name. Blocks; returns
    the exit status."""
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a whole number, at least 1, not {workers!r}")
    if bus != "embedded" and not bus.startswith(REDIS_SCHEMES):
        raise ValueError(f"bus is 'embedded' or redis://host:port/db, not {bus!r}")
    if bus != "embedded":
        _require_redis()
    node_id = node_id or ids.node_id()
    ids.make_tag(node_id, 0)  # refuses a bad node id now
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    if workers == 1:
        with contextlib.suppress(KeyboardInterrupt):
            uvloop.run(serve_worker(app, host, port, bus, cluster, node_id, 0, None, None))
        return 0
    if not isinstance(app, str):
        raise ValueError("with workers, name the application as 'module:attribute'")
    load(app)  # a mistake in it is told here, once, not by every worker
    command = [sys.executable, "-m", "msstorm.app.worker", app, "--host", host, "--port", str(port)]
    command += ["--bus", bus, "--cluster", cluster, "--node-id", node_id, "--log-level", log_level]
    log.info("node %s: %d workers of %s on http://%s:%d", node_id, workers, app, host, port)
    supervisor = Supervisor(workers, command, embedded_bus=bus == "embedded", stop_timeout=15)
    with contextlib.suppress(KeyboardInterrupt):
        return uvloop.run(supervisor.run())
    return 0


def _require_redis() -> None:
    try:
        importlib.import_module(extras.EXTRAS["redis"][0])
    except ImportError:
        raise ValueError(
            "a Redis bus needs the Redis client: pip install 'msstorm[redis]'"
        ) from None


async def serve_worker(
    app: str | AsyncServer,
    host: str,
    port: int,
    bus: str,
    cluster: str,
    node_id: str,
    index: int,
    hub: str | None,
    run_dir: str | None,
) -> None:
    tag = ids.make_tag(node_id, index)
    ids.set_tag(tag)
    server = load(app) if isinstance(app, str) else app
    await server.join(open_bus(tag, bus, hub, cluster))
    clustered = hub is not None or bus != "embedded"
    listener = await serve(
        server, host=host, port=port, reuse_port=clustered, handoff_dir=run_dir, backlog=4096
    )
    log.info("worker %s (pid %d) listening on http://%s:%d", tag, os.getpid(), host, listener.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    listener.stop_accepting()
    listener.close()
    await listener.wait_closed()
    await server.shutdown()
