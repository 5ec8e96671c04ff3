"""The processes a benchmark starts: each in its own group, its output in files,
stopped whatever happens to the benchmark (SIGTERM on its death, SIGKILL at the end)."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from bench import common


class BenchError(Exception):
    """A run could not go on; the message says why."""


_libc = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1
LIVE: set[Child] = set()  # what the last-resort cleanup kills


def _die_with_parent() -> None:
    # In the child, between fork and exec: SIGTERM when the benchmark dies, however it dies.
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class Child:
    """A process in its own process group (Ctrl-C reaches the benchmark only, and
    stopping the group stops what the child started), its output in files."""

    def __init__(self, name: str, command: list[str], workdir: Path) -> None:
        self.name = name
        self.command = command
        self.log = workdir / f"{name}.log"
        self.out = workdir / f"{name}.out"
        with self.log.open("wb") as err, self.out.open("wb") as out:
            self.proc = subprocess.Popen(
                command,
                cwd=common.ROOT,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        LIVE.add(self)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def exited(self) -> int | None:
        return self.proc.poll()

    def tail(self, lines: int = 12) -> str:
        try:
            text = self.log.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return "\n".join(f"    {line}" for line in text[-lines:])

    def output(self) -> str:
        try:
            return self.out.read_text(errors="replace")
        except OSError:
            return ""

    async def stop(self, grace: float = 15.0) -> int | None:
        """SIGTERM, SIGKILL to the group after ``grace`` seconds; the exit status."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + grace
            while self.proc.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        self.kill()
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL whatever is left of the group (the swarm's workers when its parent
        went first); reap the child."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        LIVE.discard(self)


def kill_leftovers() -> None:
    for child in list(LIVE):
        child.kill()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def wait_listening(child: Child, port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if child.exited() is not None:
            raise BenchError(
                f"{child.name} exited with status {child.exited()} before listening:\n"
                + child.tail()
            )
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 1)
            writer.close()
            return
        except (OSError, TimeoutError):
            pass
        if time.monotonic() > deadline:
            raise BenchError(f"{child.name} not listening after {timeout:.0f} s\n{child.tail()}")
        await asyncio.sleep(0.05)


async def wait_for_clients(
    monitor: Any, n: int, label: str, timeout: float = 300.0, every: float = 2.0
) -> None:
    """Wait until the server's cluster counts ``n`` clients, saying so every ``every`` s."""
    deadline = time.monotonic() + timeout
    while True:
        clients = (await monitor.status_request(detail=False))["clients"]
        common.progress(f"[{label}] {clients:,}/{n:,} clients")
        if clients >= n:
            return
        if time.monotonic() > deadline:
            raise BenchError(f"{label}: only {clients:,} of {n:,} clients after {timeout:.0f} s")
        await asyncio.sleep(every)
