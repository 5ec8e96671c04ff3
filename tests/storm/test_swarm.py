"""msstorm-client, the swarm, against the MessageStorm server: every poke answered."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

from stormkit import StormServer


async def start_swarm(url: str, *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "msstorm.swarm.cli",
        "--url",
        url,
        "--json",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def wait_for_clients(storm_server: StormServer, count: int, timeout: float = 20) -> None:
    async def enough() -> None:
        while len(storm_server.storm.clients.members) < count:
            await asyncio.sleep(0.05)

    await asyncio.wait_for(enough(), timeout)


async def test_swarm_answers_every_poke(storm_server: StormServer, tmp_path: Path) -> None:
    prefix = str(tmp_path / "swarm")
    swarm = await start_swarm(storm_server.url, "--conns", "400", "--procs", "2", "--log", prefix)
    try:
        await wait_for_clients(storm_server, 400)
        monitor = await storm_server.monitor()
        broadcast = await monitor.initiate({"type": "broadcast"})
        status = await monitor.status_of(broadcast["op"])
        assert (status["summary"]["received"], status["summary"]["lost"]) == (400, 0)
        tree = await monitor.initiate({"type": "tree", "treeLeaves": 128})
        status = await monitor.status_of(tree["op"])
        assert (status["summary"]["received"], len(status["tree"])) == (255, 255)
        unicast = await monitor.initiate({"type": "unicast"})
        assert (await monitor.status_of(unicast["op"]))["summary"]["received"] == 1
        await monitor.close()
    finally:
        swarm.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(swarm.communicate(), 20)
    assert swarm.returncode == 0, err.decode()
    summary = json.loads(out)
    assert summary["peak_connected"] == 400 and summary["processes"] == 2
    assert summary["pokes_answered"] == 400 + 255 + 1
    assert summary["errors"] == {}
    # Every message each process received is in its log, one parseable line each.
    lines = [line for n in (0, 1) for line in Path(f"{prefix}.{n}.log").read_bytes().splitlines()]
    pokes = [line for line in lines if line.split(b" ", 2)[2].startswith(b'42["poke"')]
    assert len(pokes) == 656
    assert summary["messages_logged"] == len(lines)


async def test_swarm_reconnects_after_a_drop(storm_server: StormServer) -> None:
    swarm = await start_swarm(storm_server.url, "--conns", "50", "--procs", "1", "--no-log")
    try:
        await wait_for_clients(storm_server, 50)
        victims = storm_server.storm.clients.members[:5]
        for sid in victims:
            storm_server.storm.server.close(sid)
        await asyncio.sleep(0.2)
        await wait_for_clients(storm_server, 50, timeout=10)  # back after the backoff
    finally:
        swarm.send_signal(signal.SIGTERM)
        out, _ = await asyncio.wait_for(swarm.communicate(), 20)
    summary = json.loads(out)
    assert summary["reconnects"] >= 5 and summary["errors"].get("dropped") == 5


async def test_swarm_says_why_when_it_cannot_connect(unused_tcp_port: int) -> None:
    swarm = await start_swarm(
        f"http://127.0.0.1:{unused_tcp_port}", "--conns", "20", "--no-log", "--duration", "2"
    )
    out, err = await asyncio.wait_for(swarm.communicate(), 20)
    assert swarm.returncode == 1
    assert json.loads(out)["errors"]["refused"] >= 20
    assert "most failures were 'refused'" in err.decode()


async def test_swarm_refuses_the_impossible() -> None:
    swarm = await start_swarm("http://127.0.0.1:9", "--conns", "25000", "--procs", "1")
    out, err = await asyncio.wait_for(swarm.communicate(), 20)
    assert swarm.returncode == 2
    assert "need at least 2 processes" in err.decode() and out == b""
