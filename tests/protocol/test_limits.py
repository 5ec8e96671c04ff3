"""Which peers the per-address limit counts, and how it counts them (no sockets)."""

from __future__ import annotations

import ipaddress

import pytest

from msstorm.server.limits import AddressLimit

ADDRESSES = [
    "127.0.0.1",
    "127.3.200.9",
    "127.255.255.255",
    "128.0.0.1",
    "10.1.2.3",
    "203.0.113.7",
    "1.27.0.1",
    "::1",
    "2001:db8::1",
    "::ffff:127.0.0.1",
    "fe80::1%eth0",
]


@pytest.mark.parametrize("address", ADDRESSES)
def test_loopback_is_exempt_unless_asked_as_ipaddress_says(address: str) -> None:
    try:
        loopback = ipaddress.ip_address(address).is_loopback
    except ValueError:  # a scoped address: counted
        loopback = False
    assert AddressLimit(4).counted(address) is (not loopback)
    assert AddressLimit(4, loopback=True).counted(address) is True


def test_no_address_is_never_counted() -> None:
    assert AddressLimit(4).counted("") is False
    assert AddressLimit(4, loopback=True).counted("") is False


def test_one_more_than_the_limit_is_refused_and_a_release_makes_room() -> None:
    limit = AddressLimit(2)
    assert limit.admit("203.0.113.7") and limit.admit("203.0.113.7")
    assert not limit.admit("203.0.113.7") and limit.refused == 1
    assert limit.admit("203.0.113.8")  # another address has its own count
    limit.release("203.0.113.7")
    assert limit.admit("203.0.113.7")
    for _ in range(3):
        limit.release("203.0.113.7")
    assert "203.0.113.7" not in limit.counts
    with pytest.raises(ValueError):
        AddressLimit(0)
