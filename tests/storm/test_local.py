"""msstorm-storm (make storm): server, swarm and scenario from one command, then nothing left."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from pathlib import Path


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
