"""The machines lab: a small data centre on this box, one network namespace per machine.

Each machine has its own TCP stack and an address of ``SUBNET`` on a bridge (the
switch); this host is on the bridge too (``HOST``), as an operator's laptop would
be. The lab runs what a deployment runs: ``redis-server`` on one machine, nodes of
``msstorm-server --bus redis://...`` on others, HAProxy in front of them, swarms of
``msstorm-client`` aimed at HAProxy, and a monitor machine for ``msstorm-monitor``.

A machine can lose its link (``cut``: its cable, the host's end of its veth, is
down) or stop answering (``freeze``: SIGSTOP to every process in it). Everything
made carries the ``PREFIX``; ``Lab.down`` removes it all, and ``Lab.up`` first
removes what a lab that crashed or was killed left behind. One lab runs at a time
(a lock file), and only as root: where namespaces cannot be made, ``LabError``
says why.

Used by ``bench/run_machines.py`` (``make machines``) and by ``tests/machines/``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

PREFIX = "mslab"
SUBNET = "10.213.7"  # a /24 nothing else on the box uses (checked at up())
HOST = f"{SUBNET}.1"  # this host's address on the bridge
BRIDGE = f"{PREFIX}-br"
LOCK = Path("/run") / f"{PREFIX}.lock"
PORT = 3000  # every node's, and the balancer's
REDIS_PORT = 6379
TOKEN = "lab-token"
ROOT = Path(__file__).resolve().parent.parent


class LabError(RuntimeError):
    """The lab cannot be made here (not root, no ip, no haproxy...): the message says why."""


def _ip(*args: str, check: bool = True) -> str:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise LabError(f"ip {' '.join(args)}: {done.stderr.strip() or done.returncode}")
    return done.stdout


@dataclass
class Machine:
    name: str  # "n1", "redis", "lb", "s1", "mon"
    address: str
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def netns(self) -> str:
        return f"{PREFIX}-{self.name}"

    @property
    def cable(self) -> str:
        """The host's end of this machine's veth: what ``cut`` unplugs."""
        return f"{PREFIX}-{self.name}"

    def pids(self) -> list[int]:
        """Every process in this machine's namespace."""
        out = _ip("netns", "pids", self.netns, check=False)
        return [int(p) for p in out.split()]


@dataclass
class Node:
    """An msstorm-server node: a machine, its node id, its workers' tags."""

    machine: Machine
    node_id: str
    workers: int

    @property
    def url(self) -> str:
        return f"http://{self.machine.address}:{PORT}"

    @property
    def tags(self) -> list[str]:
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        return [self.node_id + alphabet[i // 64] + alphabet[i % 64] for i in range(self.workers)]


def haproxy_config(nodes: list[Node], bind: str, stats_socket: str) -> str:
    """HAProxy in front of the nodes, as Socket.IO is deployed: sticky sessions for
    long-polling, WebSocket passed through."""
    servers = "\n".join(
        f"    server {n.machine.name} {n.machine.address}:{PORT} check cookie {n.machine.name}"
        for n in nodes
    )
    by_sid = "\n".join(
        f"    use-server {n.machine.name} if {{ urlp(sid) -m beg {n.node_id} }}" for n in nodes
    )
    return f"""\
global
    maxconn 9000
    nbthread 1
    stats socket {stats_socket} mode 600 level admin

defaults
    mode http
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    timeout tunnel 1h
    timeout check 1s

frontend socketio
    bind {bind}:{PORT}
    default_backend nodes

backend nodes
    balance leastconn
    option httpchk GET /healthz
    http-check expect status 200
    default-server inter 1s fall 2 rise 2 on-marked-down shutdown-sessions
    # Every request of a long-polling session must reach the node that holds it.
    # Browsers keep the balancer's cookie, as Socket.IO's guide has it...
    cookie msstorm insert indirect nocache
    # ...and a client that keeps no cookie (Node's and python-socketio's on an IP
    # address) sends the sid, whose first two characters name its node.
{by_sid}
{servers}
"""


class Lab:
    """The machines: ``up()``, start what runs on them, ``down()`` (always)."""

    def __init__(
        self,
        logs: Path,
        nodes: int = 3,
        workers: int = 2,
        swarms: int = 1,
        node_options: tuple[str, ...] = (),
    ) -> None:
        self.logs = logs
        self.machines: dict[str, Machine] = {}
        self.node_options = node_options
        self.node_count = nodes
        self.workers = workers
        self.swarm_count = swarms
        self.nodes: list[Node] = []
        self.swarm_conns: dict[str, int] = {}
        self._lock: IO[str] | None = None
        self._files: list[IO[bytes]] = []

    # -- the machines -----------------------------------------------------------

    def up(self) -> None:
        """The bridge and the machines, after whatever a crashed lab left behind."""
        if os.geteuid() != 0:
            raise LabError("the machines lab needs root (network namespaces, veths, a bridge)")
        for program in ("ip", "redis-server", "haproxy"):
            if not any((Path(d) / program).exists() for d in os.environ.get("PATH", "").split(":")):
                raise LabError(f"the machines lab needs {program} (`make system-deps`)")
        self._lock = open(LOCK, "w")  # noqa: SIM115 - held until down()
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise LabError(f"another machines lab is running (it holds {LOCK})") from None
        clean_leftovers()
        for line in _ip("-4", "-o", "addr").splitlines():
            if f" {SUBNET}." in line:
                raise LabError(f"{SUBNET}.0/24 is in use on this host: {line.strip()}")
        self.logs.mkdir(parents=True, exist_ok=True)
        try:
            _ip("link", "add", BRIDGE, "type", "bridge")
            _ip("addr", "add", f"{HOST}/24", "dev", BRIDGE)
            _ip("link", "set", BRIDGE, "up")
        except LabError as exc:
            raise LabError(f"cannot make the lab's bridge (namespaces need root): {exc}") from exc
        layout = [("redis", 10), ("lb", 20), ("mon", 40)]
        layout += [(f"n{i + 1}", 11 + i) for i in range(self.node_count)]
        layout += [(f"s{i + 1}", 31 + i) for i in range(self.swarm_count)]
        for name, host in layout:
            self._machine(name, f"{SUBNET}.{host}")

    def _machine(self, name: str, address: str) -> Machine:
        machine = Machine(name, address)
        ns = machine.netns
        _ip("netns", "add", ns)
        self.machines[name] = machine  # from now on down() removes it
        _ip("link", "add", machine.cable, "type", "veth", "peer", "name", "eth0", "netns", ns)
        _ip("link", "set", machine.cable, "master", BRIDGE, "up")
        _ip("-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
        _ip("-n", ns, "link", "set", "eth0", "up")
        _ip("-n", ns, "link", "set", "lo", "up")
        return machine

    def down(self) -> None:
        """Every process, namespace, veth and the bridge, whatever state they are in."""
        for machine in self.machines.values():
            for pid in machine.pids():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)  # a frozen one would not die of SIGTERM
            for process in machine.processes:
                if process.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(process.pid, signal.SIGKILL)
            for pid in machine.pids():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            for process in machine.processes:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(5)
        self.machines.clear()
        clean_leftovers()
        for file in self._files:
            file.close()
        self._files.clear()
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def spawn(self, name: str, argv: list[str], log: str) -> subprocess.Popen[bytes]:
        """Run ``argv`` on machine ``name``, its output in ``logs/<log>.log``."""
        machine = self.machines[name]
        out = open(self.logs / f"{log}.log", "ab")  # noqa: SIM115 - closed by down()
        self._files.append(out)
        process = subprocess.Popen(
            ["ip", "netns", "exec", machine.netns, *argv],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its group is ours to signal
            cwd=self.logs,
        )
        machine.processes.append(process)
        return process

    def log(self, name: str) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    # -- what runs on them --------------------------------------------------------

    @property
    def redis_url(self) -> str:
        return f"redis://{self.machines['redis'].address}:{REDIS_PORT}/0"

    @property
    def lb_url(self) -> str:
        return f"http://{self.machines['lb'].address}:{PORT}"

    def start_redis(self) -> None:
        self.spawn(
            "redis",
            [
                "redis-server",
                "--bind",
                "0.0.0.0",
                "--port",
                str(REDIS_PORT),
                "--protected-mode",
                "no",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            "redis",
        )
        wait_for(lambda: _connects(self.machines["redis"].address, REDIS_PORT), 10, "redis-server")

    def redis_process(self) -> subprocess.Popen[bytes]:
        return next(p for p in reversed(self.machines["redis"].processes) if p.poll() is None)

    def kill_redis(self) -> None:
        process = self.redis_process()
        process.kill()
        process.wait(5)

    def start_nodes(self, clustered: bool = True) -> None:
        """The nodes, their workers joined by Redis (or one node on its own bus)."""
        self.nodes = []
        for i in range(self.node_count):
            name = f"n{i + 1}"
            node = Node(self.machines[name], f"N{i + 1}", self.workers)
            self.nodes.append(node)
            self.start_node(node, clustered)
        for node in self.nodes:
            self.until_node(node, lambda h: h["cluster"]["workers"] == self.cluster_workers)

    @property
    def cluster_workers(self) -> int:
        return self.node_count * self.workers

    def start_node(self, node: Node, clustered: bool = True) -> None:
        argv = [
            sys.executable,
            "-m",
            "msstorm.storm.cli",
            "--host",
            "0.0.0.0",
            "--port",
            str(PORT),
            "--workers",
            str(node.workers),
            "--node-id",
            node.node_id,
            "--monitor-token",
            TOKEN,
            # Behind the balancer every connection comes from its one address.
            "--max-conns-per-address",
            "0",
            *self.node_options,
        ]
        if clustered:
            argv += ["--bus", self.redis_url]
        self.spawn(node.machine.name, argv, node.machine.name)

    def start_lb(self) -> None:
        lb = self.machines["lb"]
        socket_path = self.logs / "haproxy.sock"
        config = self.logs / "haproxy.cfg"
        config.write_text(haproxy_config(self.nodes, lb.address, str(socket_path)))
        self.spawn("lb", ["haproxy", "-db", "-f", str(config)], "haproxy")
        wait_for(lambda: set(self.lb_state().values()) == {"UP"}, 20, "HAProxy with every node UP")

    def lb_state(self) -> dict[str, str]:
        """Each node's state as HAProxy sees it: "UP", "DOWN"..."""
        answer = self._haproxy("show stat")
        states: dict[str, str] = {}
        for line in answer.splitlines():
            fields = line.split(",")
            if len(fields) > 17 and fields[0] == "nodes" and fields[1] not in ("BACKEND",):
                states[fields[1]] = fields[17].split(" ")[0]
        return states

    def _haproxy(self, command: str) -> str:
        import socket

        path = str(self.logs / "haproxy.sock")
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(2)
                s.connect(path)
                s.sendall(command.encode() + b"\n")
                chunks = []
                while chunk := s.recv(65536):
                    chunks.append(chunk)
            return b"".join(chunks).decode()
        except OSError:
            return ""

    def start_swarm(self, name: str, conns: int, url: str | None = None) -> None:
        self.swarm_conns[name] = conns
        argv = [
            sys.executable,
            "-m",
            "msstorm.swarm.cli",
            "--url",
            url or self.lb_url,
            "--conns",
            str(conns),
            "--procs",
            "1",
            "--no-log",
        ]
        self.spawn(name, argv, name)

    def stop_swarm(self, name: str) -> None:
        machine = self.machines[name]
        for process in machine.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait(5)
        self.swarm_conns.pop(name, None)

    @property
    def clients(self) -> int:
        return sum(self.swarm_conns.values())

    def monitor_argv(self, *args: str, node: int = 0) -> list[str]:
        """``msstorm-monitor ARGS`` on the monitor machine, talking to a node."""
        return [
            "ip",
            "netns",
            "exec",
            self.machines["mon"].netns,
            sys.executable,
            "-m",
            "msstorm.monitor",
            "--url",
            self.nodes[node].url,
            "--token",
            TOKEN,
            *args,
        ]

    def monitor(self, *args: str, node: int = 0, timeout: float = 120) -> tuple[int, str]:
        """Run ``msstorm-monitor ARGS`` to its end: its exit status and stdout."""
        done = subprocess.run(
            self.monitor_argv(*args, node=node), capture_output=True, timeout=timeout, check=False
        )
        return done.returncode, done.stdout.decode()

    # -- faults ---------------------------------------------------------------------

    def cut(self, name: str) -> None:
        """Unplug the machine's cable: its packets go nowhere, nothing is told."""
        _ip("link", "set", self.machines[name].cable, "down")

    def mend(self, name: str) -> None:
        _ip("link", "set", self.machines[name].cable, "master", BRIDGE, "up")

    def freeze(self, name: str) -> None:
        """Every process of the machine stops (SIGSTOP): it holds its sockets, says nothing."""
        for pid in self.machines[name].pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)

    def thaw(self, name: str) -> None:
        for pid in self.machines[name].pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    # -- what the cluster says --------------------------------------------------------

    def health(self, node: Node) -> dict[str, Any] | None:
        return health(node.url)

    def until_node(self, node: Node, check: Any, timeout: float = 30, what: str = "") -> None:
        def holds() -> bool:
            state = self.health(node)
            return state is not None and bool(check(state))

        wait_for(holds, timeout, what or f"node {node.machine.name}", self.log(node.machine.name))

    def per_node(self) -> dict[str, int]:
        """Clients by node id, as the first node's view of the cluster has them."""
        state = self.health(self.nodes[0]) or {}
        counts = dict.fromkeys((n.node_id for n in self.nodes), 0)
        for tag, worker in state.get("cluster", {}).get("perWorker", {}).items():
            counts[tag[:2]] = counts.get(tag[:2], 0) + worker["clients"]
        return counts

    def whole(self, clients: int | None = None, timeout: float = 60) -> None:
        """Wait until every node sees every worker and ``clients`` clients (the swarms')."""
        expected = self.clients if clients is None else clients

        def holds() -> bool:
            for node in self.nodes:
                state = self.health(node)
                if state is None:
                    return False
                cluster = state["cluster"]
                if cluster["workers"] != self.cluster_workers or cluster["clients"] != expected:
                    return False
            return True

        wait_for(holds, timeout, f"the cluster whole with {expected} clients", self.views())

    def views(self) -> str:
        """What each node sees, for a failure's message."""
        lines = []
        for node in self.nodes:
            state = self.health(node) or {}
            cluster = state.get("cluster", {})
            lines.append(
                f"{node.machine.name}: workers {cluster.get('workers')}, "
                f"clients {cluster.get('clients')}"
            )
        return "\n".join(lines)


def health(url: str) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=2) as response:
            answer: dict[str, Any] = json.loads(response.read())
            return answer
    except (OSError, ValueError):
        return None


def _connects(address: str, port: int) -> bool:
    import socket

    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((address, port)) == 0


def wait_for(check: Any, timeout: float, what: str, details: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise LabError(f"not reached in {timeout:g} s: {what}\n{details}".rstrip())
        time.sleep(0.2)


def clean_leftovers() -> None:
    """Remove every namespace, veth and bridge of ours, and the processes in them."""
    for line in _ip("netns", "list", check=False).splitlines():
        ns = line.split()[0] if line.split() else ""
        if not ns.startswith(f"{PREFIX}-"):
            continue
        for pid in _ip("netns", "pids", ns, check=False).split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGCONT)
                os.kill(int(pid), signal.SIGKILL)
        deadline = time.monotonic() + 5
        while _ip("netns", "pids", ns, check=False).split() and time.monotonic() < deadline:
            time.sleep(0.05)
        _ip("netns", "delete", ns, check=False)
    for line in _ip("-o", "link", "show", check=False).splitlines():
        parts = line.split(":")
        if len(parts) > 1:
            name = parts[1].strip().split("@")[0]
            if name.startswith(PREFIX):
                _ip("link", "delete", name, check=False)
