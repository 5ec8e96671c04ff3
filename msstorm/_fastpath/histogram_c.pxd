# The compiled log-linear histogram; its plain-Python twin is histogram.py.
from libc.stdint cimport uint32_t, int64_t

cdef class Histogram:
    cdef uint32_t* _positive
    cdef uint32_t* _negative
    cdef readonly long long count
    cdef readonly double total
    cdef readonly double minimum
    cdef readonly double maximum

    cpdef record(self, double ms)
    cpdef merge(self, Histogram other)
    cpdef bytes to_bytes(self)
    cpdef double percentile(self, double fraction)
    cpdef dict summary(self)
    cdef double _clamp(self, double ms) noexcept
