# cython: language_level=3
"""Log-linear histograms, compiled: see histogram.py for how the buckets work.

Buckets are a C array of counts (18 KB); the negative side is allocated only
when a negative value arrives.
"""

from cpython.mem cimport PyMem_Calloc, PyMem_Free
from libc.math cimport llround, ceil
from libc.stdint cimport uint32_t, int64_t

from msstorm._fastpath.histogram import BUCKETS, MAX_BITS, PERCENTILES, SUB_BITS, pack, unpack

cdef int _SUB_BITS = SUB_BITS
cdef int64_t _SUB_BUCKETS = 1 << SUB_BITS
cdef int64_t _MAX_NS = (1LL << MAX_BITS) - 1
cdef Py_ssize_t _BUCKETS = BUCKETS
cdef tuple _PERCENTILES = PERCENTILES


cdef extern from *:
    int __builtin_clzll(unsigned long long) nogil


cdef inline Py_ssize_t _bucket_of(int64_t ns) noexcept:
    if ns < _SUB_BUCKETS:
        return <Py_ssize_t>ns
    if ns > _MAX_NS:
        ns = _MAX_NS
    cdef int shift = (63 - __builtin_clzll(<unsigned long long>ns)) - _SUB_BITS
    return ((shift + 1) << _SUB_BITS) + <Py_ssize_t>((ns >> shift) - _SUB_BUCKETS)


cdef inline double _bucket_middle(Py_ssize_t index) noexcept:
    if index < _SUB_BUCKETS:
        return <double>index
    cdef int shift = <int>(index >> _SUB_BITS) - 1
    cdef int64_t low = (_SUB_BUCKETS + (index & (_SUB_BUCKETS - 1))) << shift
    return <double>low + ((1LL << shift) - 1) / 2.0


cdef class Histogram:
    """Counts of values in log-linear buckets, with exact count, sum, min and max."""

    def __cinit__(self):
        self._positive = <uint32_t*>PyMem_Calloc(_BUCKETS, sizeof(uint32_t))
        if self._positive == NULL:
            raise MemoryError()
        self._negative = NULL
        self.count = 0
        self.total = 0.0
        self.minimum = float("inf")
        self.maximum = float("-inf")

    def __dealloc__(self):
        PyMem_Free(self._positive)
        PyMem_Free(self._negative)

    cpdef record(self, double ms):
        """Add one value, in milliseconds (beyond the range: in the last bucket)."""
        if ms != ms:
            raise ValueError("a histogram records numbers, not NaN")
        cdef double scaled = ms * 1e6
        cdef int64_t ns
        if scaled > _MAX_NS:
            ns = _MAX_NS
        elif scaled < -_MAX_NS:
            ns = -_MAX_NS
        else:
            ns = llround(scaled)
        if ns >= 0:
            self._positive[_bucket_of(ns)] += 1
        else:
            if self._negative == NULL:
                self._negative = <uint32_t*>PyMem_Calloc(_BUCKETS, sizeof(uint32_t))
                if self._negative == NULL:
                    raise MemoryError()
            self._negative[_bucket_of(-ns)] += 1
        self.count += 1
        self.total += ms
        if ms < self.minimum:
            self.minimum = ms
        if ms > self.maximum:
            self.maximum = ms

    cpdef merge(self, Histogram other):
        """Add another histogram's values to this one."""
        if other is None:  # a typed argument accepts None: read, it would crash
            raise TypeError("merge takes a Histogram, not None")
        cdef Py_ssize_t i
        for i in range(_BUCKETS):
            self._positive[i] += other._positive[i]
        if other._negative != NULL:
            if self._negative == NULL:
                self._negative = <uint32_t*>PyMem_Calloc(_BUCKETS, sizeof(uint32_t))
                if self._negative == NULL:
                    raise MemoryError()
            for i in range(_BUCKETS):
                self._negative[i] += other._negative[i]
        self.count += other.count
        self.total += other.total
        self.minimum = min(self.minimum, other.minimum)
        self.maximum = max(self.maximum, other.maximum)

    cpdef bytes to_bytes(self):
        """The histogram as bytes (the same as the plain twin's)."""
        cdef Py_ssize_t i
        cdef list buckets = []
        for i in range(_BUCKETS):
            if self._positive[i]:
                buckets.append((i, self._positive[i]))
        if self._negative != NULL:
            for i in range(_BUCKETS):
                if self._negative[i]:
                    buckets.append((-(i + 1), self._negative[i]))
        return pack(self.count, self.total, self.minimum, self.maximum, buckets)

    @classmethod
    def from_bytes(cls, bytes data):
        cdef Histogram histogram = cls()
        count, total, minimum, maximum, buckets = unpack(data)
        histogram.count = count
        histogram.total = total
        histogram.minimum = minimum
        histogram.maximum = maximum
        for key, n in buckets:
            if key >= 0:
                histogram._positive[key] = n
            else:
                if histogram._negative == NULL:
                    histogram._negative = <uint32_t*>PyMem_Calloc(_BUCKETS, sizeof(uint32_t))
                    if histogram._negative == NULL:
                        raise MemoryError()
                histogram._negative[-key - 1] = n
        return histogram

    cpdef double percentile(self, double fraction):
        """The value at ``fraction`` (0..1; beyond: the ends) by nearest rank, in
        milliseconds."""
        if fraction != fraction:
            raise ValueError("a percentile's fraction is a number, not NaN")
        if self.count == 0:
            return 0.0
        fraction = min(max(fraction, 0.0), 1.0)  # a rank out of range is no C integer
        cdef long long rank = <long long>ceil(fraction * self.count)
        if rank < 1:
            rank = 1
        if rank >= self.count:
            return self.maximum
        cdef long long seen = 0
        cdef Py_ssize_t i
        if self._negative != NULL:
            for i in range(_BUCKETS - 1, -1, -1):
                seen += self._negative[i]
                if seen >= rank:
                    return self._clamp(-_bucket_middle(i) / 1e6)
        for i in range(_BUCKETS):
            seen += self._positive[i]
            if seen >= rank:
                if i == _BUCKETS - 1:  # the overflow bucket: no middle to speak of
                    return self.maximum
                return self._clamp(_bucket_middle(i) / 1e6)
        return self.maximum

    cdef double _clamp(self, double ms) noexcept:
        return min(max(ms, self.minimum), self.maximum)

    cpdef dict summary(self):
        """min, p50, p90, p99, p999, max and mean, in milliseconds rounded to the microsecond."""
        if self.count == 0:
            return {"min": None, "p50": None, "p90": None, "p99": None, "p999": None,
                    "max": None, "mean": None}
        cdef dict result = {"min": round(self.minimum, 3)}
        for name, fraction in _PERCENTILES:
            result[name] = round(self.percentile(fraction), 3)
        result["max"] = round(self.maximum, 3)
        result["mean"] = round(self.total / self.count, 3)
        return result
