"""The monitor token and a Redis password stay off every command line and out of the logs.

Any local user can read /proc/PID/cmdline; /proc/PID/environ only the process's own
user. So the supervisor hands its workers both secrets in their environment, and
the nodes here run against a real redis-server that asks for its password.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import urllib.request
from collections.abc import Iterator

import pytest
import socketio
from nodes import Node, Redis, free_port
from procs import cmdline, descendants, environ
from stormkit import Clients

from msstorm.storm.cli import BUS_ENV, TOKEN_ENV, parser, worker_command, worker_environment


@pytest.fixture
def guarded_redis() -> Iterator[Redis]:
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is required: apt-get install redis-server", pytrace=False)
    server = Redis(password="pw-" + secrets.token_hex(12))
    server.start()
    try:
        yield server
    finally:
        server.close()


def plain_environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in (TOKEN_ENV, BUS_ENV)}


async def workers_of(node: Node) -> list[int]:
    """The supervisor's workers, once both are in the cluster over Redis (which they
    can join only with the password)."""
    await node.until(
        lambda h: h["cluster"]["workers"] == 2 and h["cluster"]["bus"]["state"] == "up",
        what="both workers joined over the password-protected Redis",
    )
    workers = [pid for pid in descendants(node.process.pid) if b"--worker-index" in cmdline(pid)]
    assert len(workers) == 2, [cmdline(pid) for pid in descendants(node.process.pid)]
    return workers


async def monitor_tags(url: str, token: str) -> set[str]:
    """The workers that accepted a monitor with ``token``: connections are spread over
    them by the kernel, so connect until both have answered (or 40 tries)."""
    tags: set[str] = set()
    clients = Clients(url)
    for _ in range(40):
        monitor = await clients.monitor(token)
        try:
            tags.add((await monitor.request())["cluster"]["worker"])
        finally:
            await monitor.close()
        if len(tags) == 2:
            break
    return tags


def healthz(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
        text: str = response.read().decode()
        return text


async def test_secrets_from_the_environment_reach_no_command_line(
    nodes: list[Node], guarded_redis: Redis
) -> None:
    token = "tok-" + secrets.token_hex(12)
    password = guarded_redis.password
    assert password is not None
    env = {**plain_environment(), TOKEN_ENV: token, BUS_ENV: guarded_redis.url}
    node = Node(free_port(), "--workers", "2", "--node-id", "Se", env=env)
    nodes.append(node)
    workers = await workers_of(node)

    for pid in [node.process.pid, *workers]:
        line = cmdline(pid)
        assert line, f"process {pid} is gone"
        assert token.encode() not in line and password.encode() not in line, line
    for pid in workers:  # what the workers got instead: their own environment
        assert environ(pid)[TOKEN_ENV] == token
        assert environ(pid)[BUS_ENV] == guarded_redis.url

    # The operator's token opens /monitor on every worker; another does not.
    assert len(await monitor_tags(node.url, token)) == 2
    with pytest.raises(socketio.exceptions.ConnectionError):
        await Clients(node.url).monitor("not-" + token)

    # /healthz (anyone's to read) and the log show the bus with its password masked.
    health = await asyncio.to_thread(healthz, node.port)
    bus_url = json.loads(health)["cluster"]["bus"]["url"]
    assert bus_url == f"redis://:***@127.0.0.1:{guarded_redis.port}/0"
    assert password not in health
    output = node.output()
    assert f"bus redis://:***@127.0.0.1:{guarded_redis.port}/0" in output
    assert password not in output and token not in output


async def test_secrets_given_as_options_reach_no_worker_and_are_warned_of(
    nodes: list[Node], guarded_redis: Redis
) -> None:
    token = "tok-" + secrets.token_hex(12)
    password = guarded_redis.password
    assert password is not None
    options = ["--workers", "2", "--monitor-token", token, "--bus", guarded_redis.url]
    node = Node(free_port(), *options, env=plain_environment())
    nodes.append(node)
    workers = await workers_of(node)

    for pid in workers:  # the operator's own command line is theirs; the workers' are clean
        line = cmdline(pid)
        assert line and token.encode() not in line and password.encode() not in line, line
    assert len(await monitor_tags(node.url, token)) == 2
    output = node.output()
    assert f"set ${TOKEN_ENV} instead" in output and f"set ${BUS_ENV} instead" in output
    assert password not in output


def test_the_worker_command_holds_no_secret() -> None:
    url = "redis://user:s3cret-pass@10.0.0.5:6379/2"
    args = parser().parse_args(["--monitor-token", "s3cret-token", "--bus", url, "--workers", "3"])
    args.node_id = "Ab"
    command = " ".join(worker_command(args))
    assert "s3cret" not in command and "--bus" not in command
    assert "--monitor-token" not in command and "--node-id=Ab" in command
    assert worker_environment(args) == {TOKEN_ENV: "s3cret-token", BUS_ENV: url}


def test_a_node_id_starting_with_a_dash_reaches_the_workers() -> None:
    # ids.node_id() draws from [A-Za-z0-9_-]: one node in 64 gets an id like "-x".
    args = parser().parse_args(["--workers", "2"])
    args.node_id = "-x"
    command = worker_command(args)
    worker = parser().parse_args([*command[3:], "--worker-index", "0"])
    assert worker.node_id == "-x"
