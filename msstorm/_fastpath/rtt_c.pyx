# cython: language_level=3
"""RTT bookkeeping, compiled: see rtt.py for what a PokeTable keeps.

Every array is C memory sized once for the operation (29 bytes a poke), and
``answers_json`` formats straight into one buffer with snprintf.
"""

cimport cython
from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.mem cimport PyMem_Calloc, PyMem_Free, PyMem_Malloc, PyMem_Realloc
from libc.stdint cimport int32_t, uint8_t
from libc.stdio cimport snprintf
from libc.string cimport memcpy, memset

from msstorm._fastpath.histogram_c cimport Histogram

cdef enum:
    UNSENT = 0
    PENDING = 1
    ANSWERED = 2
    LOST = 3


cdef class PokeTable:
    """Send times, states and answers of up to ``capacity`` pokes."""

    def __cinit__(self, Py_ssize_t capacity):
        if capacity < 0:
            raise ValueError("capacity must not be negative")
        cdef Py_ssize_t n = capacity if capacity > 0 else 1
        self.capacity = capacity
        self._answer_room = n
        self._sent_at = <double*>PyMem_Calloc(n, sizeof(double))
        self._state = <uint8_t*>PyMem_Calloc(n, sizeof(uint8_t))
        self._answer_index = <int32_t*>PyMem_Malloc(n * sizeof(int32_t))
        self._answer_rtt = <double*>PyMem_Malloc(n * sizeof(double))
        self._answer_delay = <double*>PyMem_Malloc(n * sizeof(double))
        if (self._sent_at == NULL or self._state == NULL or self._answer_index == NULL
                or self._answer_rtt == NULL or self._answer_delay == NULL):
            raise MemoryError()
        self.sent = 0
        self.received = 0
        self.unsent = 0
        self.rtt = Histogram()
        self.delay = Histogram()

    def __dealloc__(self):
        PyMem_Free(self._sent_at)
        PyMem_Free(self._state)
        PyMem_Free(self._answer_index)
        PyMem_Free(self._answer_rtt)
        PyMem_Free(self._answer_delay)

    cpdef grow(self, Py_ssize_t capacity):
        """Make room for ``capacity`` pokes (a tree's share of a worker is not known ahead)."""
        if capacity <= self.capacity:
            return
        self._sent_at = <double*>_resized(self._sent_at, capacity * sizeof(double))
        self._state = <uint8_t*>_resized(self._state, capacity * sizeof(uint8_t))
        memset(self._sent_at + self.capacity, 0, (capacity - self.capacity) * sizeof(double))
        memset(self._state + self.capacity, 0, capacity - self.capacity)
        self.capacity = capacity
        self._make_answer_room(capacity)

    cdef int _make_answer_room(self, Py_ssize_t room) except -1:
        """Room for ``room`` answers: one a poke, more where a slot was sent again."""
        if room <= self._answer_room:
            return 0
        self._answer_index = <int32_t*>_resized(self._answer_index, room * sizeof(int32_t))
        self._answer_rtt = <double*>_resized(self._answer_rtt, room * sizeof(double))
        self._answer_delay = <double*>_resized(self._answer_delay, room * sizeof(double))
        self._answer_room = room
        return 0

    cpdef mark_sent(self, Py_ssize_t index, double now):
        """Poke ``index`` was written to its socket at ``now`` (monotonic seconds)."""
        if index < 0 or index >= self.capacity:
            raise IndexError(index)
        self._sent_at[index] = now
        self._state[index] = PENDING
        self.sent += 1

    cpdef mark_unsent(self, Py_ssize_t index):
        """Poke ``index`` could not be sent: it counts as lost at once."""
        if index < 0 or index >= self.capacity:
            raise IndexError(index)
        self._state[index] = LOST
        self.unsent += 1

    cpdef double answer(self, Py_ssize_t index, double now, double delay_ms) except? -2.0:
        """Record the answer to poke ``index``; its RTT in ms, or -1.0 if that poke
        is not waiting for one (unknown index, never sent, answered already)."""
        if index < 0 or index >= self.capacity or self._state[index] != PENDING:
            return -1.0
        self._state[index] = ANSWERED
        cdef double rtt_ms = (now - self._sent_at[index]) * 1000.0
        cdef Py_ssize_t k = self.received
        if k >= self._answer_room:
            self._make_answer_room(2 * k)
        self._answer_index[k] = <int32_t>index
        self._answer_rtt[k] = rtt_ms
        self._answer_delay[k] = delay_ms
        self.received = k + 1
        self.rtt.record(rtt_ms)
        self.delay.record(delay_ms)
        return rtt_ms

    cpdef bint is_pending(self, Py_ssize_t index):
        return 0 <= index < self.capacity and self._state[index] == PENDING

    cpdef Py_ssize_t answered_index(self, Py_ssize_t k) except -1:
        """The poke index of the ``k``-th answer."""
        if k < 0 or k >= self.received:
            raise IndexError(k)
        return self._answer_index[k]

    cpdef double answered_rtt(self, Py_ssize_t k) except? -1.0:
        if k < 0 or k >= self.received:
            raise IndexError(k)
        return self._answer_rtt[k]

    cpdef double answered_delay(self, Py_ssize_t k) except? -1.0:
        if k < 0 or k >= self.received:
            raise IndexError(k)
        return self._answer_delay[k]

    # The tree's arrays are the caller's lists: indexed with Python's checks.
    @cython.boundscheck(True)
    cpdef bytes answers_json(self, Py_ssize_t start, Py_ssize_t stop, object targets=None,
                             object parents=None, object depths=None):
        """Answers ``start`` to ``stop`` as comma-separated JSON, without brackets
        (see the plain twin for the two shapes)."""
        if start < 0:
            raise IndexError(start)
        if stop > self.received:
            stop = self.received
        if stop <= start:
            return b""
        cdef bint tree = targets is not None
        cdef Py_ssize_t per_entry = 160 if tree else 56
        cdef Py_ssize_t capacity = (stop - start) * per_entry + 64
        cdef char* buf = <char*>PyMem_Malloc(capacity)
        if buf == NULL:
            raise MemoryError()
        cdef Py_ssize_t used = 0, k, index, n
        cdef bytes client, parent_sid
        try:
            for k in range(start, stop):
                if used + per_entry + 128 > capacity:
                    capacity *= 2
                    buf = <char*>_grow(buf, capacity)
                if k > start:
                    buf[used] = b','
                    used += 1
                if not tree:
                    n = snprintf(buf + used, capacity - used, "[%.3f,%.3f]",
                                 _unsigned_zero(self._answer_delay[k]),
                                 _unsigned_zero(self._answer_rtt[k]))
                    used += n
                    continue
                index = self._answer_index[k]
                parent = parents[index]
                client = (<str>targets[index]).encode()
                parent_sid = (<str>parent).encode() if parent is not None else b""
                if used + len(client) + len(parent_sid) + 160 > capacity:
                    capacity = capacity * 2 + len(client) + len(parent_sid)
                    buf = <char*>_grow(buf, capacity)
                if parent is not None:
                    used += _append(buf + used, b'{"parent":"', 11)
                    used += _append(buf + used, parent_sid, len(parent_sid))
                    used += _append(buf + used, b'"', 1)
                else:
                    used += _append(buf + used, b'{"parent":-1', 12)
                n = snprintf(buf + used, capacity - used,
                             ',"rtt":%.3f,"pingDelay":%.3f,"clientId":"',
                             _unsigned_zero(self._answer_rtt[k]),
                             _unsigned_zero(self._answer_delay[k]))
                used += n
                used += _append(buf + used, client, len(client))
                n = snprintf(buf + used, capacity - used, '","depth":%d}', <int>depths[index])
                used += n
            return PyBytes_FromStringAndSize(buf, used)
        finally:
            PyMem_Free(buf)


cdef inline double _unsigned_zero(double value) noexcept:
    # "%.3f" of a tiny negative value prints "-0.000"; JSON readers do not care,
    # the plain twin writes "0.000": keep the two identical.
    if -0.0005 < value < 0.0005:
        return 0.0
    return value


cdef inline Py_ssize_t _append(char* dest, const char* src, Py_ssize_t n) noexcept:
    memcpy(dest, src, n)
    return n


cdef void* _resized(void* data, Py_ssize_t size) except NULL:
    cdef void* resized = PyMem_Realloc(data, size if size > 0 else 1)
    if resized == NULL:
        raise MemoryError()
    return resized


cdef void* _grow(char* buf, Py_ssize_t capacity) except NULL:
    cdef void* grown = PyMem_Realloc(buf, capacity)
    if grown == NULL:
        PyMem_Free(buf)
        raise MemoryError()
    return grown
