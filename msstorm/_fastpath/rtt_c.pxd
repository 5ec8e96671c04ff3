# The compiled pending-poke table; its plain-Python twin is rtt.py.
from libc.stdint cimport int32_t, uint8_t

from msstorm._fastpath.histogram_c cimport Histogram

cdef class PokeTable:
    cdef double* _sent_at
    cdef uint8_t* _state
    cdef int32_t* _answer_index
    cdef double* _answer_rtt
    cdef double* _answer_delay
    cdef Py_ssize_t _answer_room
    cdef readonly Py_ssize_t capacity
    cdef readonly Py_ssize_t sent
    cdef readonly Py_ssize_t received
    cdef readonly Py_ssize_t unsent
    cdef readonly Histogram rtt
    cdef readonly Histogram delay

    cpdef grow(self, Py_ssize_t capacity)
    cdef int _make_answer_room(self, Py_ssize_t room) except -1
    cpdef mark_sent(self, Py_ssize_t index, double now)
    cpdef mark_unsent(self, Py_ssize_t index)
    cpdef double answer(self, Py_ssize_t index, double now, double delay_ms) except? -2.0
    cpdef bint is_pending(self, Py_ssize_t index)
    cpdef Py_ssize_t answered_index(self, Py_ssize_t k) except -1
    cpdef double answered_rtt(self, Py_ssize_t k) except? -1.0
    cpdef double answered_delay(self, Py_ssize_t k) except? -1.0
    cpdef bytes answers_json(self, Py_ssize_t start, Py_ssize_t stop, object targets=*,
                             object parents=*, object depths=*)
