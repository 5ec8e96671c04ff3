"""Helpers of the cluster tests: msstorm-server nodes as subprocesses, a real redis-server."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from stormkit import TOKEN


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def health(port: int) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
            answer: dict[str, Any] = json.loads(response.read())
            return answer
    except (OSError, ValueError):
        return None


class Node:
    """One msstorm-server instance (a supervisor and its workers, or one process).

    It gets ``--monitor-token TOKEN`` unless ``env`` is given: then its environment
    is ``env`` and the token is whatever that says.
    """

    def __init__(self, port: int, *options: str, env: dict[str, str] | None = None) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - closed by stop()
        token = ["--monitor-token", TOKEN] if env is None else []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "msstorm.storm.cli", "--port", str(port), *token, *options],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
        )

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-4000:]

    async def until(self, check: Any, timeout: float = 20.0, what: str = "") -> dict[str, Any]:
        """Poll /healthz until ``check(health)`` holds."""
        deadline = time.monotonic() + timeout
        while True:
            state = await asyncio.to_thread(health, self.port)
            if state is not None and check(state):
                return state
            if self.process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(
                    f"{what or 'the node'} not reached; last health {state}\n{self.output()}",
                    pytrace=False,
                )
            await asyncio.sleep(0.1)

    def metric(self, name: str, **labels: str) -> dict[str, float]:
        """A metric of /metrics (read by prometheus_client's parser), by worker: the sum
        of its samples that carry ``labels``."""
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=5) as response:
            text = response.read().decode()
        values: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and labels.items() <= sample.labels.items():
                    worker = sample.labels["worker"]
                    values[worker] = values.get(worker, 0.0) + sample.value
        return values

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


class Redis:
    """A redis-server of the test's own, run from a temporary directory; with a
    ``password``, it asks for it (and ``url`` carries it)."""

    def __init__(self, password: str | None = None) -> None:
        self.port = free_port()
        self.password = password
        secret = f":{password}@" if password else ""
        self.url = f"redis://{secret}127.0.0.1:{self.port}/0"
        self.dir = tempfile.TemporaryDirectory(prefix="msstorm-redis-")
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        config = os.path.join(self.dir.name, "redis.conf")
        with open(config, "w") as f:  # a password in a file, not on a command line
            f.write(f"requirepass {self.password}\n" if self.password else "")
        options = ["--port", str(self.port), "--bind", "127.0.0.1"]
        options += ["--save", "", "--appendonly", "no", "--dir", self.dir.name]
        self.process = subprocess.Popen(
            ["redis-server", config, *options],
            cwd=self.dir.name,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            if time.monotonic() > deadline:
                pytest.fail("redis-server did not start", pytrace=False)
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)

    def close(self) -> None:
        self.stop()
        self.dir.cleanup()
