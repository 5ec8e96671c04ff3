"""How a swarm is laid out: arithmetic, and the reasons when it cannot fit or fell short."""

from __future__ import annotations

import pytest

from msstorm.swarm.cli import reason_for_shortfall
from msstorm.swarm.plan import PlanError, make_plan, parse_source_ips

URL = "http://127.0.0.1:3000"


def plan(conns: int, **kwargs: object) -> object:
    options = {"limit": 20_000, "ports": 28_232, "cores": 2, **kwargs}
    return make_plan(URL, conns, **options)  # type: ignore[arg-type]


def test_a_small_swarm_uses_the_cores() -> None:
    small = plan(1000)
    assert small.procs == 1 and small.per_process == [1000]  # type: ignore[attr-defined]
    medium = plan(10_000)
    assert medium.procs == 2 and medium.per_process == [5000, 5000]  # type: ignore[attr-defined]


def test_more_than_a_process_holds_is_spread() -> None:
    big = plan(100_000)
    assert big.procs == 7  # type: ignore[attr-defined]
    assert sum(big.per_process) == 100_000  # type: ignore[attr-defined]
    assert max(big.per_process) <= 15_000  # type: ignore[attr-defined]
    assert big.first_slot(3) == sum(big.per_process[:3])  # type: ignore[attr-defined]


def test_loopback_sources_are_chosen_when_ports_would_fill_up() -> None:
    assert plan(7_000).source_ips == []  # type: ignore[attr-defined]
    spread = plan(1_000_000)
    sources = spread.source_ips  # type: ignore[attr-defined]
    assert sources[:2] == ["127.0.0.2", "127.0.0.3"]
    more = plan(2_000_000).source_ips  # type: ignore[attr-defined]
    assert more[253:256] == ["127.0.0.255", "127.0.1.0", "127.0.1.1"]  # on to the next octet
    # a quarter of each address's ports at most, so that a free one is found at once
    assert len(sources) * 28_232 * 0.25 >= 1_000_000 > (len(sources) - 1) * 28_232 * 0.25


def test_the_impossible_is_refused_with_the_arithmetic() -> None:
    with pytest.raises(PlanError, match=r"25,000 connections need at least 2 processes.*19,936"):
        plan(25_000, procs=1)
    with pytest.raises(PlanError, match="ephemeral ports"):
        make_plan("http://10.1.2.3:3000", 50_000, source_ips=[], limit=20_000, ports=28_232)
    with pytest.raises(PlanError, match="at least 1"):
        plan(0)


def test_source_ip_ranges() -> None:
    assert parse_source_ips("127.0.0.2-127.0.0.4, 10.0.0.1") == [
        "127.0.0.2",
        "127.0.0.3",
        "127.0.0.4",
        "10.0.0.1",
    ]
    with pytest.raises(ValueError):
        parse_source_ips("127.0.0.9-127.0.0.2")
    with pytest.raises(ValueError):
        parse_source_ips("not-an-address")


def test_a_shortfall_is_explained_by_its_commonest_failure() -> None:
    reason = reason_for_shortfall({"errors": {"refused": 3, "timeout": 40}})
    assert reason == "most failures were 'timeout' (40 times)"
    # no failure at all: dials cut short, which the message must not blame on the swarm alone
    quiet = reason_for_shortfall({"errors": {}})
    assert "none having failed" in quiet and "server" in quiet
