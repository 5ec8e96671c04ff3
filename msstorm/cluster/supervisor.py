"""The supervisor of a node: its workers on one port, and the hub between them.

``msstorm-server --workers N`` runs this: it starts the embedded bus's hub (unless
the bus is Redis), starts N worker processes that all listen on the same port
(SO_REUSEPORT), restarts a worker that dies, and stops them all on SIGINT or
SIGTERM. How many workers fit is arithmetic over the open-file limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from .hub import Hub

log = logging.getLogger("msstorm.cluster")

# File descriptors a worker keeps for itself (listening socket, bus, logs, the loop).
RESERVED_FDS = 256
RESTART_DELAY = 1.0


class CapacityError(ValueError):
    """A ``--max-clients`` the workers cannot hold; the message has the arithmetic."""


def per_worker(fd_limit: int) -> int:
    return max(fd_limit - RESERVED_FDS, 1)


def plan_workers(max_clients: int | None, workers: int | None, fd_limit: int, cores: int) -> int:
    """How many workers: as asked, or enough for ``max_clients`` and the cores."""
    capacity = per_worker(fd_limit)
    needed = -(-max_clients // capacity) if max_clients else 1
    if workers is None:
        return max(needed, cores)
    if workers < 1:
        raise CapacityError("--workers must be at least 1")
    if max_clients and workers * capacity < max_clients:
        raise CapacityError(
            f"{max_clients:,} clients need at least {needed} workers: one worker holds "
            f"{capacity:,} (open-file limit {fd_limit:,} less {RESERVED_FDS} kept back), "
            f"and --workers is {workers}"
        )
    return workers


@dataclass
class Worker:
    index: int
    process: asyncio.subprocess.Process | None = None
    restarts: int = 0
    started: float = field(default_factory=time.monotonic)


class Supervisor:
    """Runs ``command(index)`` for every worker index, with the hub if any.

    ``env`` is the workers' environment (default: this process's): what must not be
    on a command line, which every local user can read, goes there.
    """

    def __init__(
        self,
        count: int,
        command: list[str],
        embedded_bus: bool,
        stop_timeout: float = 30.0,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.count = count
        self.stop_timeout = stop_timeout  # a worker still there after this long is killed
        self.command = command  # the worker command; --worker-index and --hub are added
        self.env = dict(env) if env is not None else None
        self.hub: Hub | None = None
        # The node's meeting place: the hub's socket, and each worker's for handoffs.
        self.run_dir: str | None = None
        self.embedded_bus = embedded_bus
        self.workers = [Worker(i) for i in range(count)]
        self.stopping = False

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        self.run_dir = tempfile.mkdtemp(prefix="msstorm-")
        if self.embedded_bus:
            self.hub = Hub(os.path.join(self.run_dir, "hub.sock"))
            await self.hub.start()
        watchers = [asyncio.ensure_future(self._keep(worker)) for worker in self.workers]
        await stop.wait()
        self.stopping = True
        log.info("stopping %d workers", self.count)
        for worker in self.workers:
            if worker.process is not None and worker.process.returncode is None:
                worker.process.send_signal(signal.SIGTERM)
        _, pending = await asyncio.wait(watchers, timeout=self.stop_timeout)
        for worker in self.workers:
            if worker.process is not None and worker.process.returncode is None:
                worker.process.kill()
        for task in pending:
            task.cancel()
        if self.hub is not None:
            await self.hub.close()
        shutil.rmtree(self.run_dir, ignore_errors=True)
        return 0

    def _command(self, worker: Worker) -> list[str]:
        command = [*self.command, "--worker-index", str(worker.index)]
        if self.run_dir is not None:
            command += ["--run-dir", self.run_dir]
        if self.hub is not None:
            command += ["--hub", self.hub.path]
        return command

    async def _keep(self, worker: Worker) -> None:
        """Run the worker; start it again whenever it dies, until we stop."""
        while not self.stopping:
            worker.started = time.monotonic()
            worker.process = await asyncio.create_subprocess_exec(
                *self._command(worker), env=self.env
            )
            code = await worker.process.wait()
            if self.stopping:
                return
            worker.restarts += 1
            log.error(
                "worker %d (pid %d) exited with status %s: restarting it (restart %d)",
                worker.index,
                worker.process.pid,
                code,
                worker.restarts,
            )
            await asyncio.sleep(RESTART_DELAY)


def die_with_parent() -> None:
    """Ask Linux to end this worker when its supervisor ends, however it ends."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
