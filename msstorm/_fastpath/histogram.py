"""Log-linear histograms: percentiles of millions of samples in constant memory.

A value (milliseconds, as the wire reports them) is stored as an integer number
of nanoseconds in a bucket: values below 128 ns have a bucket each; above, each
power of two is cut into 128 equal buckets. A bucket's width is thus at most
1/128 of the values in it, and a percentile, reported as its bucket's middle
(clamped to the exact minimum and maximum), is within 0.4% of the exact one.
Values beyond 2**42 ns (73 minutes) share the last bucket; negative values
(a pingDelay from a clock behind the server's) have buckets of their own.

This is the plain-Python twin of ``histogram_c.pyx``: same API, same results.
"""

from __future__ import annotations

import math
import struct
from typing import Any

SUB_BITS = 7
SUB_BUCKETS = 1 << SUB_BITS
MAX_BITS = 42
BUCKETS = SUB_BUCKETS * (MAX_BITS - SUB_BITS + 1)
MAX_NS = (1 << MAX_BITS) - 1

# The percentiles a summary reports, by name.
PERCENTILES = (("p50", 0.50), ("p90", 0.90), ("p99", 0.99), ("p999", 0.999))


def bucket_of(ns: int) -> int:
    """The bucket of a non-negative number of nanoseconds."""
    if ns < SUB_BUCKETS:
        return ns
    if ns > MAX_NS:
        ns = MAX_NS
    shift = ns.bit_length() - SUB_BITS - 1
    return ((shift + 1) << SUB_BITS) + ((ns >> shift) - SUB_BUCKETS)


def bucket_middle(index: int) -> float:
    """The middle of a bucket, in nanoseconds."""
    if index < SUB_BUCKETS:
        return float(index)
    shift = (index >> SUB_BITS) - 1
    low = (SUB_BUCKETS + (index & (SUB_BUCKETS - 1))) << shift
    return low + ((1 << shift) - 1) / 2.0


_HEAD = struct.Struct("<qdddI")
_ENTRY = struct.Struct("<iI")


def pack(
    count: int, total: float, minimum: float, maximum: float, buckets: list[tuple[int, int]]
) -> bytes:
    """A histogram as bytes, to travel between workers: its exact figures, then
    ``(key, count)`` per non-empty bucket, ``key`` = index, or -(index + 1) below zero."""
    out = bytearray(_HEAD.pack(count, total, minimum, maximum, len(buckets)))
    for key, n in buckets:
        out += _ENTRY.pack(key, n)
    return bytes(out)


def unpack(data: bytes) -> tuple[int, float, float, float, list[tuple[int, int]]]:
    if len(data) < _HEAD.size:
        raise ValueError("not a packed histogram")
    count, total, minimum, maximum, entries = _HEAD.unpack_from(data)
    if len(data) != _HEAD.size + entries * _ENTRY.size:
        raise ValueError("not a packed histogram")
    buckets = [_ENTRY.unpack_from(data, _HEAD.size + i * _ENTRY.size) for i in range(entries)]
    for key, _ in buckets:
        if not -BUCKETS <= key < BUCKETS:
            raise ValueError("not a packed histogram")
    return count, total, minimum, maximum, buckets


class Histogram:
    """Counts of values in log-linear buckets, with exact count, sum, min and max."""

    __slots__ = ("_negative", "_positive", "count", "maximum", "minimum", "total")

    def __init__(self) -> None:
        self._positive: dict[int, int] = {}
        self._negative: dict[int, int] = {}
        self.count = 0
        self.total = 0.0
        self.minimum = float("inf")
        self.maximum = float("-inf")

    def record(self, ms: float) -> None:
        """Add one value, in milliseconds (beyond the range: in the last bucket)."""
        if ms != ms:
            raise ValueError("a histogram records numbers, not NaN")
        scaled = ms * 1e6
        if scaled > MAX_NS:
            ns = MAX_NS
        elif scaled < -MAX_NS:
            ns = -MAX_NS
        else:  # halves away from zero, as C's llround
            ns = math.floor(scaled + 0.5) if scaled >= 0 else -math.floor(0.5 - scaled)
        if ns >= 0:
            index = bucket_of(ns)
            self._positive[index] = self._positive.get(index, 0) + 1
        else:
            index = bucket_of(-ns)
            self._negative[index] = self._negative.get(index, 0) + 1
        self.count += 1
        self.total += ms
        if ms < self.minimum:
            self.minimum = ms
        if ms > self.maximum:
            self.maximum = ms

    def merge(self, other: Histogram) -> None:
        """Add another histogram's values to this one."""
        for mine, theirs in ((self._positive, other._positive), (self._negative, other._negative)):
            for index, n in theirs.items():
                mine[index] = mine.get(index, 0) + n
        self.count += other.count
        self.total += other.total
        self.minimum = min(self.minimum, other.minimum)
        self.maximum = max(self.maximum, other.maximum)

    def to_bytes(self) -> bytes:
        buckets = sorted(self._positive.items())
        buckets += [(-(index + 1), n) for index, n in sorted(self._negative.items())]
        return pack(self.count, self.total, self.minimum, self.maximum, buckets)

    @classmethod
    def from_bytes(cls, data: bytes) -> Histogram:
        histogram = cls()
        histogram.count, histogram.total, histogram.minimum, histogram.maximum, buckets = unpack(
            data
        )
        for key, n in buckets:
            if key >= 0:
                histogram._positive[key] = n
            else:
                histogram._negative[-key - 1] = n
        return histogram

    def percentile(self, fraction: float) -> float:
        """The value at ``fraction`` (0..1; beyond: the ends) by nearest rank, in
        milliseconds."""
        if fraction != fraction:
            raise ValueError("a percentile's fraction is a number, not NaN")
        if self.count == 0:
            return 0.0
        fraction = min(max(fraction, 0.0), 1.0)
        rank = max(1, min(self.count, _ceil(fraction * self.count)))
        if rank == self.count:
            return self.maximum
        seen = 0
        for index in sorted(self._negative, reverse=True):
            seen += self._negative[index]
            if seen >= rank:
                return self._clamp(-bucket_middle(index) / 1e6)
        for index in sorted(self._positive):
            seen += self._positive[index]
            if seen >= rank:
                if index == BUCKETS - 1:  # the overflow bucket: no middle to speak of
                    return self.maximum
                return self._clamp(bucket_middle(index) / 1e6)
        return self.maximum

    def _clamp(self, ms: float) -> float:
        return min(max(ms, self.minimum), self.maximum)

    def summary(self) -> dict[str, Any]:
        """min, p50, p90, p99, p999, max and mean, in milliseconds rounded to the microsecond."""
        if self.count == 0:
            return {
                "min": None,
                "p50": None,
                "p90": None,
                "p99": None,
                "p999": None,
                "max": None,
                "mean": None,
            }
        result = {"min": round(self.minimum, 3)}
        for name, fraction in PERCENTILES:
            result[name] = round(self.percentile(fraction), 3)
        result["max"] = round(self.maximum, 3)
        result["mean"] = round(self.total / self.count, 3)
        return result


def _ceil(x: float) -> int:
    n = int(x)
    return n if n == x else n + 1
