"""How a swarm is laid out: processes, connections per process, source addresses.

One process may hold fewer sockets than its open-file limit (20,000 here,
a hard limit); one (source address, destination) pair has as many connections
as the ephemeral port range; on loopback every 127.x address is ours, so a
swarm aimed at 127.x spreads its connections over 127.0.0.2, 127.0.0.3...
Every rule here is arithmetic that can say why a request cannot fit.
"""

from __future__ import annotations

import ipaddress
import os
import resource
from dataclasses import dataclass
from urllib.parse import urlsplit

# File descriptors a swarm process keeps for itself (log, pipes, the loop).
RESERVED_FDS = 64
# Connections a process holds at most by default, whatever its file limit:
# a process is one core's worth of event loop.
DEFAULT_PER_PROCESS = 15_000
# Share of the ephemeral port range we allow ourselves on one source address: the
# kernel finds a free port for each connect() by probing, and a range kept mostly
# free keeps that one or two probes (at 90% the ramp slowed to a crawl).
PORT_SHARE = 0.25
# Loopback source addresses a swarm may spread over: 127.0.0.2 and up.
MAX_SOURCES = 65_000


class PlanError(ValueError):
    """A swarm that cannot be laid out on this machine; the message says why."""


@dataclass(frozen=True)
class Plan:
    conns: int
    procs: int
    per_process: list[int]  # connections of each process
    source_ips: list[str]  # empty: let the kernel choose
    fd_limit: int
    port_range: int

    def first_slot(self, process: int) -> int:
        return sum(self.per_process[:process])


def fd_limit() -> int:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft


def ephemeral_ports() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = (int(x) for x in f.read().split())
        return high - low + 1
    except (OSError, ValueError):
        return 28232  # Linux's default range, 32768-60999


def is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def make_plan(
    url: str,
    conns: int,
    procs: int | None = None,
    source_ips: list[str] | None = None,
    limit: int | None = None,
    ports: int | None = None,
    cores: int | None = None,
) -> Plan:
    """Lay ``conns`` connections out, or raise ``PlanError`` with the arithmetic."""
    if conns < 1:
        raise PlanError("--conns must be at least 1")
    limit = fd_limit() if limit is None else limit
    ports = ephemeral_ports() if ports is None else ports
    cores = (os.cpu_count() or 1) if cores is None else cores
    per_process_max = limit - RESERVED_FDS
    if per_process_max < 1:
        raise PlanError(f"the open-file limit ({limit}) leaves no room for connections")
    needed = -(-conns // per_process_max)
    if procs is None:
        by_cores = min(cores, -(-conns // 2000))  # small swarms need no more than one
        procs = max(needed, -(-conns // DEFAULT_PER_PROCESS), by_cores, 1)
    elif procs < needed:
        raise PlanError(
            f"{conns:,} connections need at least {needed} processes: one process may "
            f"hold {per_process_max:,} sockets (open-file limit {limit:,} less "
            f"{RESERVED_FDS} kept back), and --procs is {procs}"
        )
    if procs > conns:
        procs = conns
    base, extra = divmod(conns, procs)
    per_process = [base + (1 if i < extra else 0) for i in range(procs)]

    if source_ips is None:
        source_ips = []
        per_address = int(ports * PORT_SHARE)
        if is_loopback(url) and conns > per_address:
            count = -(-conns // per_address)
            if count > MAX_SOURCES:
                raise PlanError(
                    f"{conns:,} connections need more than {MAX_SOURCES:,} loopback sources"
                )
            first = int(ipaddress.ip_address("127.0.0.2"))
            source_ips = [str(ipaddress.ip_address(first + i)) for i in range(count)]
    elif source_ips and conns > len(source_ips) * ports:
        raise PlanError(
            f"{conns:,} connections over {len(source_ips)} source addresses exceed "
            f"{ports:,} ephemeral ports each"
        )
    elif not source_ips and conns > ports:
        raise PlanError(
            f"{conns:,} connections from one address exceed its {ports:,} ephemeral ports: "
            "give --source-ips"
        )
    return Plan(conns, procs, per_process, source_ips, limit, ports)


def parse_source_ips(text: str) -> list[str]:
    """``127.0.0.2-127.0.0.40`` or ``10.0.0.5,10.0.0.6`` as a list of addresses, each
    once, ``MAX_SOURCES`` at most; ``ValueError`` says what is wrong."""
    addresses: list[str] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part:
            first, last = (ipaddress.ip_address(x.strip()) for x in part.split("-", 1))
            if first.version != last.version or int(last) < int(first):
                raise PlanError(f"empty address range {part!r}")
            if int(last) - int(first) >= MAX_SOURCES:
                raise PlanError(f"more than {MAX_SOURCES:,} addresses in {part!r}")
            addresses += [str(first + n) for n in range(int(last) - int(first) + 1)]
        else:
            addresses.append(str(ipaddress.ip_address(part)))
    if not addresses:
        raise PlanError(
            "no address given (expected e.g. 127.0.0.2-127.0.0.20 or 10.0.0.5,10.0.0.6)"
        )
    if len(addresses) > MAX_SOURCES:
        raise PlanError(f"{len(addresses):,} addresses: {MAX_SOURCES:,} at most")
    seen: set[str] = set()
    for address in addresses:
        if address in seen:
            raise PlanError(f"{address} is given twice")
        seen.add(address)
    return addresses
