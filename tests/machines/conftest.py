"""The machines lab as a fixture: 3 server machines (2 workers each) over a real
redis-server, HAProxy in front, 2 swarm machines of 1,500 clients, a monitor machine.

It is made once for these tests (a few seconds) and healed before each one: cables
plugged back, frozen machines thawed, redis-server and nodes restarted if gone, the
swarms restarted when the cluster is not whole or a node holds no client. It needs
root; where it cannot be made the tests fail with the reason.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from lab import Lab, LabError

SWARM = 1500  # clients of each swarm machine
# Heartbeats every 2 s, 2 s to answer: a machine cut off is noticed within seconds.
NODE_OPTIONS = ("--ping-interval", "2000", "--ping-timeout", "2000", "--op-timeout", "30")


def _start(lab: Lab) -> None:
    lab.up()
    lab.start_redis()
    lab.start_nodes()
    lab.start_lb()
    for name in ("s1", "s2"):
        lab.start_swarm(name, SWARM)
    lab.whole()


def _interrupted(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # so that the lab is taken down on SIGTERM too


@pytest.fixture(scope="package")
def machines(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    lab = Lab(
        tmp_path_factory.mktemp("machines"),
        nodes=3,
        workers=2,
        swarms=2,
        node_options=NODE_OPTIONS,
    )
    previous = signal.signal(signal.SIGTERM, _interrupted)
    try:
        try:
            _start(lab)
        except LabError as exc:
            pytest.fail(f"the machines lab could not be made: {exc}", pytrace=False)
        yield lab
    finally:
        lab.down()
        signal.signal(signal.SIGTERM, previous)


def heal(lab: Lab) -> None:
    """Back to a whole lab, whatever the last test left."""
    for name in lab.machines:
        lab.mend(name)
        lab.thaw(name)
    if all(p.poll() is not None for p in lab.machines["redis"].processes):
        lab.start_redis()
    for node in lab.nodes:
        if all(p.poll() is not None for p in node.machine.processes):
            lab.start_node(node)
    try:
        lab.whole(timeout=15)
        if min(lab.per_node().values()) > 0:
            return
    except LabError:
        pass
    for name in ("s1", "s2"):  # a fresh swarm, spread over the nodes again
        lab.stop_swarm(name)
        lab.start_swarm(name, SWARM)
    lab.whole()


@pytest.fixture
def lab(machines: Lab) -> Lab:
    try:
        heal(machines)
    except LabError as exc:
        pytest.fail(f"the machines lab could not be healed: {exc}", pytrace=False)
    return machines
