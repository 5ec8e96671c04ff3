"""msstorm-storm (make storm): server, swarm and scenario from one command, then nothing left."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
from pathlib import Path

from procs import cmdline, descendants, environ


def test_a_small_storm_runs_end_to_end(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "msstorm.storm.local",
            "--conns",
            "300",
            "--logs",
            str(tmp_path / "logs"),
            "--scenario",
            "unicast*2, broadcast*2, tree:64",
            "--plot",
            str(tmp_path / "storm.png"),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "completed with nothing lost" in done.stderr
    assert "broadcast" in done.stdout and "tree" in done.stdout  # the report's table
    assert (tmp_path / "storm.png").read_bytes().startswith(b"\x89PNG")
    logs = sorted(p.name for p in (tmp_path / "logs").iterdir())
    assert "server.log" in logs and any(name.startswith("client.") for name in logs)
    # The server it started has stopped: its port is free again.
    port = int(re.search(r"http://127\.0\.0\.1:(\d+)", done.stderr).group(1))  # type: ignore[union-attr]
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0


def test_no_process_of_a_storm_has_the_token_on_its_command_line(tmp_path: Path) -> None:
    """What every local user sees of the storm's processes while it runs: ``ps``, that
    is /proc/PID/cmdline. The token they share travels in their environment."""
    with open(tmp_path / "storm.out", "wb") as out:
        options = ["--conns", "20", "--logs", str(tmp_path / "logs"), "--scenario", "broadcast*3"]
        storm = subprocess.Popen(
            [sys.executable, "-m", "msstorm.storm.local", *options],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        seen: set[bytes] = set()  # every command line of a descendant, as it ran
        tokens: set[str] = set()
        deadline = time.monotonic() + 120
        while storm.poll() is None and time.monotonic() < deadline:
            for pid in descendants(storm.pid):
                seen.add(cmdline(pid))
                token = environ(pid).get("MSSTORM_MONITOR_TOKEN")
                if token:
                    tokens.add(token)
            time.sleep(0.02)
        if storm.poll() is None:
            storm.kill()
        assert storm.wait() == 0, (tmp_path / "storm.out").read_text()[-3000:]
    assert len(tokens) == 1, tokens  # one token, made by msstorm-storm, shared by all
    (token,) = tokens
    for module in (b"msstorm.storm.cli", b"msstorm.swarm.cli", b"msstorm.swarm.worker"):
        assert any(module in line for line in seen), (module, seen)
    assert any(b"msstorm.monitor\0" in line for line in seen), seen
    assert not [line for line in seen if token.encode() in line]


def test_a_scenario_the_monitor_refuses_is_not_reported_as_lost_answers(tmp_path: Path) -> None:
    options = ["--conns", "5", "--scenario", "frob*2", "--logs", str(tmp_path / "logs")]
    done = subprocess.run(
        [sys.executable, "-m", "msstorm.storm.local", *options],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr[-3000:]
    assert "unknown operation 'frob'" in done.stderr
    assert "msstorm-monitor failed (exit status 2)" in done.stderr
    assert "lost answers" not in done.stderr
