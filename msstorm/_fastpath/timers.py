"""A hashed timer wheel: many deadlines served by one event-loop timer.

Heartbeats need a deadline per connection; an asyncio timer handle per
connection would cost memory and a heap operation each. Instead each deadline
drops its item into the wheel slot of the tick at or after it, and one periodic
callback collects the slots whose ticks have passed. An item comes out at most
one ``resolution`` late and never early for deadlines within ``slots *
resolution`` of now; one further away comes out early, so the caller compares
the item's own deadline with now and schedules it again if it is not due.
Cancelling is free: the caller skips items that no longer matter.

``timers_c.py`` is this same file compiled with ``timers_c.pxd``.
"""

from __future__ import annotations

from typing import Any


class TimerWheel:
    """Deadlines in seconds of a monotonic clock, grouped in ticks of ``resolution``."""

    __slots__ = ("_mask", "_resolution", "_slots", "_tick", "count")

    def __init__(self, resolution: float, now: float, slots: int = 1024) -> None:
        if resolution <= 0:
            raise ValueError("resolution must be positive")
        if slots <= 0 or slots & (slots - 1):
            raise ValueError("slots must be a power of two")
        self._resolution = resolution
        self._slots: list[list[Any]] = [[] for _ in range(slots)]
        self._mask = slots - 1
        self._tick = int(now / resolution)  # the last tick collected
        self.count = 0  # items scheduled and not yet collected

    def schedule(self, item: Any, due: float) -> None:
        """Hand ``item`` back from ``advance`` once ``due`` has passed."""
        tick = int(due / self._resolution) + 1
        if tick <= self._tick:
            tick = self._tick + 1
        self._slots[tick & self._mask].append(item)
        self.count += 1

    def advance(self, now: float) -> list[Any]:
        """Collect the items of every tick up to ``now``."""
        target = int(now / self._resolution)
        first = self._tick + 1
        if target < first:
            return []
        last = target
        if last - first > self._mask:
            last = first + self._mask  # each slot once is all there is
        due: list[Any] = []
        slots = self._slots
        mask = self._mask
        tick = first
        while tick <= last:
            slot = slots[tick & mask]
            if slot:
                due.extend(slot)
                slot.clear()
            tick += 1
        self._tick = target
        self.count -= len(due)
        return due
