"""Helpers of the watching tests: msstorm-server as a subprocess, free ports, the browser."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from stormkit import TOKEN

ADMIN = "admin:s3cret-pass"
HERE = Path(__file__).parent
ADMIN_UI_DIST = HERE / "admin-ui" / "node_modules" / "@socket.io" / "admin-ui" / "ui" / "dist"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def get_json(url: str, token: str | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(url)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


class Server:
    """msstorm-server with the options given, its output kept for failures."""

    def __init__(self, *options: str, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - closed by stop()
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "msstorm.storm.cli",
                "--port",
                str(self.port),
                "--monitor-token",
                TOKEN,
                *options,
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-4000:]

    async def until(self, check: Any, timeout: float = 30.0, what: str = "") -> dict[str, Any]:
        """Poll /healthz until ``check(health)`` holds."""
        deadline = time.monotonic() + timeout
        state = None
        while True:
            try:
                _, state = await asyncio.to_thread(get_json, f"{self.url}/healthz")
            except OSError:
                state = None
            if state is not None and check(state):
                return state
            if self.process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(
                    f"{what or 'the server'} not reached; last health {state}\n{self.output()}",
                    pytrace=False,
                )
            await asyncio.sleep(0.1)

    def workers(self) -> list[int]:
        """The pids of this server's worker processes."""
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == self.process.pid:
                pids.append(int(entry.name))
        return pids

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


def swarm(url: str, conns: int, logs: Path) -> subprocess.Popen[bytes]:
    """msstorm-client with ``conns`` clients of ``url``."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "msstorm.swarm.cli",
            "--url",
            url,
            "--conns",
            str(conns),
            "--log",
            str(logs / "client"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def chromium(offline: bool = False) -> Any:
    """Debian's chromium, headless, through chromium-driver; its console log kept."""
    for program in ("chromium", "chromedriver"):
        if shutil.which(program) is None:
            pytest.fail(
                f"{program} is required for the browser tests: `make system-deps` installs "
                "Debian's chromium and chromium-driver",
                pytrace=False,
            )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "chromium"
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,1800",
        "--no-first-run",
        "--disable-extensions",
    ):
        options.add_argument(argument)
    if offline:
        # Every name but this machine's resolves nowhere: nothing else can be loaded.
        options.add_argument("--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=shutil.which("chromedriver") or "chromedriver")
    return webdriver.Chrome(options=options, service=service)


def console_errors(driver: Any) -> list[dict[str, Any]]:
    """The console's SEVERE entries since the last call."""
    return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def screenshot(driver: Any, name: str) -> Path:
    """Keep a screenshot with the test run's output (build/test-screenshots/)."""
    folder = Path(os.environ.get("MSSTORM_SCREENSHOTS", "build/test-screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


def wait(driver: Any, check: Any, what: str, timeout: float = 30.0, *, shot: str) -> Any:
    """``check()``'s first true value; past ``timeout``, a screenshot named ``shot`` and
    a failure saying what the page never showed."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
        except Exception:  # the page is still being drawn
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            screenshot(driver, shot)
            pytest.fail(f"the page never showed {what}", pytrace=False)
        time.sleep(0.2)
