"""Who is in the cluster, and picks weighted by each worker's clients."""

from __future__ import annotations

import time
from collections import Counter

from msstorm.cluster import membership
from msstorm.cluster.membership import Membership


def test_picks_follow_the_client_counts() -> None:
    view = Membership("AAAA")
    view.update_self(100, 1, {})
    view.beat("BBBB", 300, 2, {})
    view.beat("CCCC", 0, 3, {})
    picks = Counter(view.pick(1)[0] for _ in range(20_000))
    assert set(picks) == {"AAAA", "BBBB"}  # a worker without clients is never drawn
    assert 0.70 < picks["BBBB"] / 20_000 < 0.80  # 300 of 400 clients
    assert view.total() == 400 and len(view.pick(2)) == 2


def test_no_clients_no_picks() -> None:
    view = Membership("AAAA")
    assert view.pick(2) == []


def test_joins_restarts_and_departures(monkeypatch: object) -> None:
    view = Membership("AAAA")
    assert view.beat("BBBB", 5, 10, {}) == "joined"
    assert view.beat("BBBB", 6, 10, {}) == ""
    assert view.beat("BBBB", 0, 11, {}) == "restarted"  # a new process under the same tag
    view.peers["BBBB"].seen = time.monotonic() - membership.GONE_AFTER - 1
    assert view.expire() == ["BBBB"]
    assert view.alive() == ["AAAA"] and view.pick(1) == []


def test_silence_counts_only_while_the_bus_is_on_time() -> None:
    view = Membership("AAAA")
    view.beat("BBBB", 5, 10, {})
    view.peers["BBBB"].seen = time.monotonic() - membership.GONE_AFTER - 1
    view.echoed = time.monotonic() - membership.ECHO_LATE - 1  # this worker's echo is late
    assert view.expire() == [] and "BBBB" in view.peers
    assert view.expire(bus_up=False) == ["BBBB"]  # a bus down: nobody can be reached
    view.beat("BBBB", 5, 10, {})
    view.peers["BBBB"].seen = time.monotonic() - membership.GONE_AFTER - 1
    view.echo(time.monotonic())  # the bus delivers again: now the silence counts
    assert view.on_time() and view.expire() == ["BBBB"]


def test_an_older_echo_overtaken_is_not_taken_for_a_fresh_one() -> None:
    view = Membership("AAAA")
    now = time.monotonic()
    view.echo(now)
    view.echoed = now - 10.0
    view.echo(now - 5.0)  # sent before the last one: says nothing about the bus now
    assert not view.on_time()


def test_any_message_is_a_sign_of_life() -> None:
    view = Membership("AAAA")
    view.beat("BBBB", 5, 10, {})
    view.peers["BBBB"].seen = time.monotonic() - membership.GONE_AFTER - 1
    view.heard("BBBB")
    view.heard("CCCC")  # not a member: nothing to refresh
    assert view.expire() == [] and view.alive() == ["AAAA", "BBBB"]


def test_the_grace_grows_with_the_load() -> None:
    assert membership.grace(0.0) == membership.grace(1.0) == membership.GONE_AFTER
    assert membership.grace(4.0) == 4 * membership.GONE_AFTER
    assert membership.grace(1e6) == membership.MAX_GRACE
    view = Membership("AAAA")
    view.beat("BBBB", 5, 10, {})
    view.peers["BBBB"].seen = time.monotonic() - 10.0
    assert view.expire(load=4.0) == []  # 10 s of silence on a machine with 4x the cores busy
    assert view.expire(load=1.0) == ["BBBB"]
    assert membership.load_per_core() >= 0.0


def test_a_worker_known_to_have_left_is_gone_at_once() -> None:
    view = Membership("AAAA")
    view.update_self(1, 1, {})
    view.beat("BBBB", 5, 10, {})
    assert view.leave("BBBB") and view.alive() == ["AAAA"] and view.total() == 1
    assert not view.leave("BBBB") and not view.leave("AAAA")  # unknown, or itself
