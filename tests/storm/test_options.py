"""Every command refuses a bad option value at start: exit status 2, a message that
names the option and says what it takes, and nothing started.

The commands run as the operator runs them, in processes of their own. A value
that slipped through would start a server or a swarm that never exits: the
timeout catches that.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from msstorm import cli_types

MODULES = {
    "msstorm-server": "msstorm.storm.cli",
    "msstorm-client": "msstorm.swarm.cli",
    "msstorm-monitor": "msstorm.monitor",
    "msstorm-storm": "msstorm.storm.local",
}
REDIS_FORMS = "redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]"


def run(command: str, *argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MSSTORM_")}
    return subprocess.run(
        [sys.executable, "-m", MODULES[command], *argv],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=30,
    )


BAD = [
    # msstorm-server: the bus
    ("msstorm-server", ["--bus", "redis:/10.0.0.5", "--workers", "2"], "--bus", REDIS_FORMS),
    ("msstorm-server", ["--bus", "redis://10.0.0.5:0"], "--bus", "port 0"),
    ("msstorm-server", ["--bus", "redis://10.0.0.5:65536"], "--bus", "not a URL"),
    ("msstorm-server", ["--bus", "redis://10.0.0.5/zero"], "--bus", "the db is a whole number"),
    ("msstorm-server", ["--bus", "redis://10.0.0.5?db=1"], "--bus", "no query options"),
    ("msstorm-server", ["--bus", "redis:///0"], "--bus", "no host"),
    ("msstorm-server", ["--bus", "rediss://:6379"], "--bus", "no host"),
    ("msstorm-server", ["--bus", "unix://redis.sock"], "--bus", "absolute"),
    ("msstorm-server", ["--bus", "unix:///run/r.sock?timeout=1"], "--bus", "only query option"),
    ("msstorm-server", ["--bus", "http://10.0.0.5:6379"], "--bus", "not a bus"),
    ("msstorm-server", ["--bus", "Embedded"], "--bus", "'embedded'"),
    ("msstorm-server", ["--cluster", "storm2"], "--cluster", "needs --bus redis://"),
    # msstorm-server: where it listens
    ("msstorm-server", ["--host", ""], "--host", "an IP address"),
    ("msstorm-server", ["--host", "10.0.0.256"], "--host", "an IP address"),
    ("msstorm-server", ["--host", "[::1]"], "--host", "an IP address"),
    ("msstorm-server", ["--port", "65536"], "--port", "from 0 to 65535"),
    ("msstorm-server", ["--port", "-1"], "--port", "from 0 to 65535"),
    ("msstorm-server", ["--port", "http"], "--port", "not a whole number"),
    ("msstorm-server", ["--port", "0", "--workers", "2"], "--port 0", "needs --workers 1"),
    ("msstorm-server", ["--cors-origin", "https://example.com/"], "--cors-origin", "origin"),
    ("msstorm-server", ["--cors-origin", "example.com"], "--cors-origin", "https://example.com"),
    ("msstorm-server", ["--cors-origin", "http://a.com:80"], "--cors-origin", "'http://a.com'"),
    ("msstorm-server", ["--cors-origin", "*,http://a.com"], "--cors-origin", "give it alone"),
    ("msstorm-server", ["--cors-origin", ","], "--cors-origin", "expected '*'"),
    # msstorm-server: sizes, counts and times
    ("msstorm-server", ["--ping-interval", "0"], "--ping-interval", "from 1 to 2147483647"),
    ("msstorm-server", ["--ping-timeout", "2147483648"], "--ping-timeout", "from 1 to"),
    ("msstorm-server", ["--connect-timeout", "-5"], "--connect-timeout", "from 1 to"),
    ("msstorm-server", ["--max-payload", "0"], "--max-payload", "1 or more"),
    ("msstorm-server", ["--max-queued", "1.5"], "--max-queued", "not a whole number"),
    ("msstorm-server", ["--max-conns-per-address", "-1"], "--max-conns-per-address", "0 or more"),
    (
        "msstorm-server",
        ["--limit-loopback", "--max-conns-per-address", "0"],
        "--limit-loopback",
        "needs a limit",
    ),
    ("msstorm-server", ["--handshake-timeout", "0"], "--handshake-timeout", "more than 0"),
    ("msstorm-server", ["--handshake-timeout", "nan"], "--handshake-timeout", "finite"),
    ("msstorm-server", ["--op-timeout", "-1"], "--op-timeout", "more than 0"),
    ("msstorm-server", ["--max-tree-leaves", "1000"], "--max-tree-leaves", "power of two"),
    ("msstorm-server", ["--max-operations", "0"], "--max-operations", "1 or more"),
    ("msstorm-server", ["--workers", "0"], "--workers", "from 1 to 4096"),
    ("msstorm-server", ["--workers", "5000"], "--workers", "from 1 to 4096"),
    ("msstorm-server", ["--max-clients", "0"], "--max-clients", "1 or more"),
    (
        "msstorm-server",
        ["--max-clients", "100000", "--workers", "2"],
        "--workers",
        "100,000 clients need at least",
    ),
    ("msstorm-server", ["--monitor-token", ""], "--monitor-token", "must not be empty"),
    ("msstorm-server", ["--node-id", "abc"], "--node-id", "2 characters"),
    # msstorm-client
    ("msstorm-client", ["--url", "ftp://10.0.0.5"], "--url", "expected http://HOST:PORT"),
    ("msstorm-client", ["--url", "http://10.0.0.5:3000/chat"], "--url", "no path"),
    ("msstorm-client", ["--url", "http://me:pw@10.0.0.5:3000"], "--url", "no user or password"),
    ("msstorm-client", ["--url", "10.0.0.5:70000"], "--url", "not a URL"),
    ("msstorm-client", ["--url", "http://10.0.0.5:0"], "--url", "port 0"),
    ("msstorm-client", ["--conns", "0"], "--conns", "1 or more"),
    ("msstorm-client", ["--procs", "0"], "--procs", "1 or more"),
    ("msstorm-client", ["--ramp", "-100"], "--ramp", "0 or more"),
    ("msstorm-client", ["--source-ips", "10.0.0.300"], "--source-ips", "IPv4 or IPv6 address"),
    ("msstorm-client", ["--source-ips", "10.0.0.9-10.0.0.2"], "--source-ips", "empty"),
    ("msstorm-client", ["--source-ips", "10.0.0.1,10.0.0.1"], "--source-ips", "given twice"),
    ("msstorm-client", ["--source-ips", "10.0.0.0-10.2.0.0"], "--source-ips", "65,000"),
    ("msstorm-client", ["--source-ips", ","], "--source-ips", "no address"),
    ("msstorm-client", ["--path", "socket.io/"], "--path", "/socket.io/"),
    ("msstorm-client", ["--duration", "0"], "--duration", "more than 0"),
    # msstorm-monitor
    ("msstorm-monitor", ["--url", "http://10.0.0.5:3000/x", "status"], "--url", "no path"),
    ("msstorm-monitor", ["--url", "10.0.0.5:0", "status"], "--url", "port 0"),
    ("msstorm-monitor", ["--timeout", "0", "status"], "--timeout", "more than 0"),
    ("msstorm-monitor", ["--connect-timeout", "-1", "status"], "--connect-timeout", "more than"),
    ("msstorm-monitor", ["status", "--refresh", "inf"], "--refresh", "finite"),
    ("msstorm-monitor", ["broadcast", "--repeat", "0"], "--repeat", "1 or more"),
    ("msstorm-monitor", ["broadcast", "--pause", "-1"], "--pause", "0 or more"),
    ("msstorm-monitor", ["tree", "--leaves", "3"], "--leaves", "power of two"),
    # msstorm-storm
    ("msstorm-storm", ["--conns", "0"], "--conns", "1 or more"),
    ("msstorm-storm", ["--connect-timeout", "0"], "--connect-timeout", "more than 0"),
]


@pytest.mark.parametrize(("command", "argv", "option", "accepted"), BAD)
def test_a_bad_value_is_refused_at_start(
    command: str, argv: list[str], option: str, accepted: str
) -> None:
    done = run(command, *argv)
    assert done.returncode == 2, done.stderr
    message = done.stderr.strip().splitlines()[-1]
    # "msstorm-monitor status: error: ..." for a subcommand's option
    assert message.startswith(command) and ": error: " in message, done.stderr
    assert option in message and accepted in message, message
    assert "Traceback" not in done.stderr


def test_a_bad_bus_from_the_environment_is_refused_too() -> None:
    done = run("msstorm-server", "--workers", "2", MSSTORM_BUS="redis:/10.0.0.5")
    assert done.returncode == 2
    assert "argument --bus: no host" in done.stderr and REDIS_FORMS in done.stderr


def test_a_refused_bus_url_does_not_show_its_password() -> None:
    done = run("msstorm-server", "--bus", "redis://:hunter2@/0")
    assert done.returncode == 2
    assert "redis://:***@/0" in done.stderr and "hunter2" not in done.stderr


@pytest.mark.parametrize(
    "url",
    [
        "embedded",
        "redis://10.0.0.5",
        "redis://10.0.0.5:6379/0",
        "redis://redis.example.com/15",
        "redis://:s3cret@10.0.0.5:6379/1",
        "redis://alice:s3cret@[fd00::5]:6380/",
        "rediss://10.0.0.5:6380/0",
        "unix:///run/redis/redis.sock",
        "unix://:s3cret@/run/redis/redis.sock?db=3",
    ],
)
def test_the_bus_forms_redis_serves_are_taken_as_given(url: str) -> None:
    assert cli_types.bus(url) == url


@pytest.mark.parametrize(
    ("given", "shown"),
    [
        ("redis://:s3cret@10.0.0.5:6379/0", "redis://:***@10.0.0.5:6379/0"),
        ("redis://alice:s3cret@10.0.0.5/0", "redis://alice:***@10.0.0.5/0"),
        ("unix://:s3cret@/run/redis.sock?db=1", "unix://:***@/run/redis.sock?db=1"),
        ("redis://10.0.0.5:6379/0", "redis://10.0.0.5:6379/0"),
        ("embedded", "embedded"),
    ],
)
def test_a_password_is_masked_wherever_the_bus_is_shown(given: str, shown: str) -> None:
    assert cli_types.masked_url(given) == shown


@pytest.mark.parametrize(
    ("parse", "text"),
    [
        (cli_types.host, "0.0.0.0"),
        (cli_types.host, "::"),
        (cli_types.host, "localhost"),
        (cli_types.host, "node-7.storm.internal."),
        (cli_types.server_url, "http://127.0.0.1:3000"),
        (cli_types.server_url, "https://storm.example.com/"),
        (cli_types.server_url, "ws://[::1]:3000"),
        (cli_types.origins, "*"),
        (cli_types.origins, "https://app.example.com,http://localhost:8080,null"),
        (cli_types.origins, "http://[::1]:5173"),
    ],
)
def test_good_addresses_are_taken_as_given(parse: object, text: str) -> None:
    assert callable(parse) and parse(text) == text


def test_host_and_port_alone_mean_http() -> None:
    assert cli_types.server_url("10.0.0.5:3000") == "http://10.0.0.5:3000"


def test_a_port_another_process_listens_on_is_refused_before_any_worker_starts() -> None:
    # With SO_REUSEPORT the workers could share it with a stranger, or fail and be
    # restarted for ever: the supervisor looks first.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run("msstorm-server", "--workers", "2", "--port", str(port))
    assert done.returncode == 1
    assert f"msstorm-server: cannot listen on 127.0.0.1:{port}: Address already in use" in (
        done.stderr
    )
    assert "workers on" not in done.stderr  # none was started
