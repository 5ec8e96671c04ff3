"""RTT bookkeeping: the pokes of one operation, and their answers.

A ``PokeTable`` has a slot per poke the operation may send (its index is
written in the poke's id): when the poke left, on the monotonic clock, and
whether it is still waiting. An answer is looked up by index, timed, and
appended in arrival order with its round-trip time and the client's reported
delay, and both go into histograms. Memory is a few bytes per poke, and
``answers_json`` writes the per-answer arrays straight to JSON text, in slices,
so that a million answers never become a million Python objects.

This is the plain-Python twin of ``rtt_c.pyx``: same API, same results.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence

from .histogram import Histogram

# The state of a poke slot.
UNSENT = 0
PENDING = 1
ANSWERED = 2
LOST = 3  # never sent: its target had gone


class PokeTable:
    """Send times, states and answers of up to ``capacity`` pokes."""

    __slots__ = (
        "_answer_delay",
        "_answer_index",
        "_answer_rtt",
        "_sent_at",
        "_state",
        "capacity",
        "delay",
        "received",
        "rtt",
        "sent",
        "unsent",
    )

    def __init__(self, capacity: int) -> None:
        if capacity < 0:
            raise ValueError("capacity must not be negative")
        self.capacity = capacity
        self._sent_at = array("d", bytes(8 * capacity))
        self._state = bytearray(capacity)
        self._answer_index = array("i")
        self._answer_rtt = array("d")
        self._answer_delay = array("d")
        self.sent = 0
        self.received = 0
        self.unsent = 0
        self.rtt = Histogram()
        self.delay = Histogram()

    def grow(self, capacity: int) -> None:
        """Make room for ``capacity`` pokes (a tree's share of a worker is not known ahead)."""
        if capacity > self.capacity:
            self._sent_at.extend(bytes(8 * (capacity - self.capacity)))
            self._state.extend(bytes(capacity - self.capacity))
            self.capacity = capacity

    def mark_sent(self, index: int, now: float) -> None:
        """Poke ``index`` was written to its socket at ``now`` (monotonic seconds)."""
        self._check(index, self.capacity)
        self._sent_at[index] = now
        self._state[index] = PENDING
        self.sent += 1

    def mark_unsent(self, index: int) -> None:
        """Poke ``index`` could not be sent: it counts as lost at once."""
        self._check(index, self.capacity)
        self._state[index] = LOST
        self.unsent += 1

    def answer(self, index: int, now: float, delay_ms: float) -> float:
        """Record the answer to poke ``index``; its RTT in ms, or -1.0 if that poke
        is not waiting for one (unknown index, never sent, answered already)."""
        if not 0 <= index < self.capacity or self._state[index] != PENDING:
            return -1.0
        self._state[index] = ANSWERED
        rtt_ms = (now - self._sent_at[index]) * 1000.0
        self._answer_index.append(index)
        self._answer_rtt.append(rtt_ms)
        self._answer_delay.append(delay_ms)
        self.received += 1
        self.rtt.record(rtt_ms)
        self.delay.record(delay_ms)
        return rtt_ms

    def is_pending(self, index: int) -> bool:
        return 0 <= index < self.capacity and self._state[index] == PENDING

    def answered_index(self, k: int) -> int:
        """The poke index of the ``k``-th answer."""
        self._check(k, self.received)
        return self._answer_index[k]

    def answered_rtt(self, k: int) -> float:
        self._check(k, self.received)
        return self._answer_rtt[k]

    def answered_delay(self, k: int) -> float:
        self._check(k, self.received)
        return self._answer_delay[k]

    @staticmethod
    def _check(index: int, size: int) -> None:
        if not 0 <= index < size:  # no negative indexing from the end, as in C
            raise IndexError(index)

    def answers_json(
        self,
        start: int,
        stop: int,
        targets: Sequence[str] | None = None,
        parents: Sequence[str | None] | None = None,
        depths: Sequence[int] | None = None,
    ) -> bytes:
        """Answers ``start`` to ``stop`` as comma-separated JSON, without brackets.

        Without ``targets``: ``[pingDelay,rtt]`` pairs (a broadcast). With them:
        ``{"parent","rtt","pingDelay","clientId","depth"}`` objects (a tree), where
        ``targets[i]`` is the sid poke ``i`` went to and ``parents[i]`` the sid of
        the client whose answer caused it (None for the root, written -1). A ``stop``
        past the last answer stops there; a negative ``start`` is an IndexError.
        """
        if start < 0:
            raise IndexError(start)
        stop = min(stop, self.received)
        parts = []
        for k in range(start, stop):
            rtt = _ms(self._answer_rtt[k])
            delay = _ms(self._answer_delay[k])
            if targets is None:
                parts.append(f"[{delay},{rtt}]")
                continue
            assert parents is not None and depths is not None
            index = self._answer_index[k]
            parent = parents[index]
            parent_sid = '"' + parent + '"' if parent is not None else "-1"
            parts.append(
                f'{{"parent":{parent_sid},"rtt":{rtt},"pingDelay":{delay},'
                f'"clientId":"{targets[index]}","depth":{depths[index]}}}'
            )
        return ",".join(parts).encode()


def _ms(value: float) -> str:
    """A time in ms as JSON with microsecond resolution (what C's %.3f writes)."""
    text = f"{value:.3f}"
    return "0.000" if text == "-0.000" else text
