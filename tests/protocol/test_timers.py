"""The heartbeat timer wheel, both twins: never early, at most one tick late."""

from __future__ import annotations

from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from msstorm._fastpath import timers as timers_py
from msstorm._fastpath import timers_c


def test_items_come_out_after_their_deadline(timers: ModuleType) -> None:
    wheel = timers.TimerWheel(0.1, now=0.0, slots=16)
    wheel.schedule("a", 0.25)
    wheel.schedule("b", 0.05)
    assert wheel.count == 2
    assert wheel.advance(0.04) == []
    assert wheel.advance(0.2) == ["b"]
    assert wheel.advance(0.24) == []
    assert wheel.advance(0.4) == ["a"]
    assert wheel.count == 0


def test_overdue_items_come_out_on_the_next_tick(timers: ModuleType) -> None:
    wheel = timers.TimerWheel(0.1, now=5.0, slots=16)
    wheel.schedule("late", 1.0)
    assert wheel.advance(5.15) == ["late"]


def test_a_long_pause_collects_every_slot_once(timers: ModuleType) -> None:
    wheel = timers.TimerWheel(0.1, now=0.0, slots=8)
    for i in range(8):
        wheel.schedule(i, 0.1 * i)
    assert sorted(wheel.advance(100.0)) == list(range(8))


def test_bad_arguments(timers: ModuleType) -> None:
    with pytest.raises(ValueError):
        timers.TimerWheel(0, now=0.0)
    with pytest.raises(ValueError):
        timers.TimerWheel(0.1, now=0.0, slots=10)


@settings(max_examples=200, deadline=None)
@given(
    deadlines=st.lists(st.floats(min_value=0.0, max_value=50.0), min_size=1, max_size=50),
    step=st.floats(min_value=0.01, max_value=3.0),
)
def test_rescheduling_like_the_server_never_fires_early(
    deadlines: list[float], step: float
) -> None:
    for module in (timers_py, timers_c):
        resolution = 0.1
        wheel = module.TimerWheel(resolution, now=0.0, slots=64)
        for i, due in enumerate(deadlines):
            wheel.schedule(i, due)
        fired: dict[int, float] = {}
        now = 0.0
        while len(fired) < len(deadlines) and now < 200:
            now += step
            for i in wheel.advance(now):
                if now < deadlines[i]:
                    wheel.schedule(i, deadlines[i])  # what Connection.on_timer does
                else:
                    fired[i] = now
        assert len(fired) == len(deadlines)
        for i, at in fired.items():
            assert deadlines[i] <= at < deadlines[i] + resolution + step + 1e-9
