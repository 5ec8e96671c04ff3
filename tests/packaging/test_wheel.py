"""The wheel, installed as a user would: into a fresh ``python -m venv`` with the pip
that venv brings (not upgraded: an old pip is what many users have), from the wheel
alone, its dependencies from the registry. Then the installed commands run a real
storm; a feature whose extra is missing says so in one line; the extras make it work.

Slow-ish: the isolated build compiles the extensions, and two virtual environments
are installed (the base one, one with the extras).
"""

from __future__ import annotations

import contextlib
import ensurepip
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
COMMANDS = ("msstorm-server", "msstorm-client", "msstorm-monitor", "msstorm-storm")
TOKEN = "packaging-test-token"
CONNS = 300


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


def environment() -> dict[str, str]:
    """Nothing of the source tree or of this test's venv; the monitor token for all."""
    away = ("PYTHONPATH", "VIRTUAL_ENV", "MSSTORM_NO_EXTENSIONS")
    return {
        **{k: v for k, v in os.environ.items() if k not in away},
        "MSSTORM_MONITOR_TOKEN": TOKEN,
    }


def run(*args: str | Path, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run a command to its end."""
    return subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, (
        f"{done.args} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    )
    return done.stdout


class Venv:
    """A fresh virtual environment with the wheel installed, and its commands."""

    def __init__(self, path: Path, requirement: str) -> None:
        self.path = path
        self.bin = path / "bin"
        self.cwd = path.parent
        ok(run(sys.executable, "-m", "venv", path, cwd=self.cwd))
        pip = ok(run(self.bin / "pip", "--version", cwd=self.cwd))
        # The pip the venv brings, not upgraded: what an old-pip user resolves with.
        assert pip.split()[1] == ensurepip.version(), pip
        ok(run(self.bin / "pip", "install", "--quiet", requirement, cwd=self.cwd))

    def run(
        self, command: str, *args: str, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        return run(self.bin / command, *args, cwd=self.cwd, timeout=timeout)

    @contextlib.contextmanager
    def start(self, command: str, *args: str) -> Iterator[subprocess.Popen[str]]:
        """A long-running command; stopped with SIGTERM at the end, and it must exit 0."""
        log = self.cwd / f"{command}.{len(list(self.cwd.glob(command + '.*.log')))}.log"
        with open(log, "w") as output:
            process = subprocess.Popen(
                [str(self.bin / command), *args],
                cwd=self.cwd,
                env=environment(),
                stdout=output,
                stderr=subprocess.STDOUT,
                text=True,
            )
        try:
            yield process
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=30) == 0, f"{command} failed:\n{log.read_text()[-4000:]}"
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()

    def logs(self) -> str:
        """What the commands started here wrote, the last of each, for a failure's message."""
        logs = sorted(self.cwd.glob("msstorm-*.log"), key=lambda p: p.stat().st_mtime)
        return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in logs)


def until(check: Any, what: str, processes: list[subprocess.Popen[str]], venv: Venv) -> None:
    deadline = time.monotonic() + 60
    while not check():
        for process in processes:
            assert process.poll() is None, f"{process.args[0]} died before {what}:\n{venv.logs()}"
        assert time.monotonic() < deadline, f"{what}: not within 60 s\n{venv.logs()}"
        time.sleep(0.2)


def broadcast_storm(
    venv: Venv, *server_options: str, plot: Path | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """msstorm-server, CONNS msstorm-client connections, one msstorm-monitor broadcast:
    the monitor's JSON line and the cluster as /healthz showed it, each command having
    exited 0."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cluster: dict[str, Any] = {}
    with venv.start("msstorm-server", "--port", str(port), *server_options) as server:
        until(lambda: health(port) is not None, "msstorm-server answered /healthz", [server], venv)
        swarm_options = ("--url", url, "--conns", str(CONNS), "--log", str(venv.cwd / "client"))
        with venv.start("msstorm-client", *swarm_options) as swarm:

            def connected() -> bool:
                cluster.update((health(port) or {}).get("cluster", {}))
                return bool(cluster.get("clients") == CONNS)

            until(connected, f"{CONNS} clients connected", [server, swarm], venv)
            monitor = ["--url", url, "broadcast", "--json"]
            if plot is not None:
                monitor += ["--plot", str(plot)]
            document: dict[str, Any] = json.loads(ok(venv.run("msstorm-monitor", *monitor)))
    logged = "".join(p.read_text() for p in venv.cwd.glob("client.*.log"))
    assert logged.count("poke") >= CONNS, f"the clients' message logs lack the pokes:\n{logged}"
    return document, cluster


def assert_all_answered(document: dict[str, Any]) -> None:
    summary = document["summary"]
    assert document["type"] == "broadcast" and document["done"] is True, document
    assert (summary["expected"], summary["received"], summary["lost"]) == (CONNS, CONNS, 0)


def assert_one_line(done: subprocess.CompletedProcess[str], line: str) -> None:
    """Refused at start: exit status 2, that one line on stderr, nothing else."""
    assert (done.returncode, done.stderr.splitlines(), done.stdout) == (2, [line], ""), done


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel `make wheel` builds: isolated build, no dependencies bundled."""
    out = tmp_path_factory.mktemp("dist")
    ok(run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", out, ROOT, cwd=out))
    (built,) = out.glob("msstorm-*.whl")
    assert "-cp3" in built.name and "none-any" not in built.name  # compiled, not pure Python
    return built


@pytest.fixture(scope="module")
def base(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Venv:
    return Venv(tmp_path_factory.mktemp("base") / "venv", str(wheel))


def test_every_command_starts_from_the_base_install(base: Venv) -> None:
    for command in COMMANDS:
        assert f"usage: {command}" in ok(base.run(command, "--help")), command
    # The installed package uses its compiled extensions, away from the source tree.
    check = (
        "import sys, msstorm._fastpath as f; "
        "print(f.compiled(f.codec), *(f.compiled(sys.modules[c.__module__]) for c in "
        "(f.Connection, f.TimerWheel, f.Histogram, f.PokeTable, f.PokeFrame)))"
    )
    assert ok(base.run("python", "-c", check)).split() == ["True"] * 6
    # Optional, hence absent: the commands above did not need them.
    absent = "import importlib.util as u; print(u.find_spec('redis'), u.find_spec('matplotlib'))"
    assert ok(base.run("python", "-c", absent)).split() == ["None", "None"]


def test_a_storm_with_the_installed_commands(base: Venv) -> None:
    document, cluster = broadcast_storm(base, "--workers", "2")
    assert_all_answered(document)
    assert cluster["bus"]["state"] == "up", cluster


def test_msstorm_storm(base: Venv) -> None:
    done = base.run(
        "msstorm-storm",
        "--conns",
        "200",
        "--scenario",
        "unicast*2, broadcast, tree:64",
        "--logs",
        str(base.cwd / "storm-logs"),
        timeout=240,
    )
    ok(done)
    assert "msstorm-storm: the storm completed with nothing lost" in done.stderr, done.stderr


def test_a_missing_extra_is_one_line_at_start(base: Venv) -> None:
    redis = "msstorm-server: --bus redis://... needs the Redis client: pip install 'msstorm[redis]'"
    done = base.run("msstorm-server", "--port", str(free_port()), "--bus", "redis://127.0.0.1:1/0")
    assert_one_line(done, redis)
    plot = "needs matplotlib: pip install 'msstorm[plot]'"
    png = str(base.cwd / "rtt.png")
    url = f"http://127.0.0.1:{free_port()}"  # nothing there: refused before connecting
    assert_one_line(
        base.run("msstorm-monitor", "--url", url, "broadcast", "--plot", png),
        f"msstorm-monitor: --plot {plot}",
    )
    logs = base.cwd / "refused-storm-logs"
    assert_one_line(
        base.run("msstorm-storm", "--conns", "10", "--plot", png, "--logs", str(logs)),
        f"msstorm-storm: --plot {plot}",
    )
    assert not logs.exists()  # refused before it started anything


def test_the_extras_install_and_work(wheel: Path, tmp_path: Path) -> None:
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is required (`make system-deps`)", pytrace=False)
    extras = Venv(tmp_path / "venv", f"{wheel}[redis,plot]")
    port = free_port()
    redis = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        until(lambda: _accepts(port), "redis-server listening", [redis], extras)
        png = tmp_path / "broadcast.png"
        bus = ("--bus", f"redis://127.0.0.1:{port}/0", "--workers", "1")
        document, cluster = broadcast_storm(extras, *bus, plot=png)
        assert_all_answered(document)
        assert (cluster["bus"]["kind"], cluster["bus"]["state"]) == ("redis", "up"), cluster
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    finally:
        redis.terminate()
        redis.wait(timeout=10)


def _accepts(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0
