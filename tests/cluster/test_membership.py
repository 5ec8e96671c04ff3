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
