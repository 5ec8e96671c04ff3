# The compiled pokeBack fast path; its plain-Python twin is pokeback.py.
from picows.picows cimport WSFrame
from msstorm._fastpath.connection_c cimport Connection

cdef class PokeBackTap:
    cdef public object running
    cdef public object after
    cdef public Py_ssize_t answers
    cdef public Py_ssize_t unknown
    cdef public Py_ssize_t foreign

    cpdef bint feed(self, Connection conn, bytes frame) except -1
    cpdef bint take(self, Connection conn, WSFrame frame) except -1
    cdef bint _scan(self, Connection conn, const char* p, Py_ssize_t n) except -1
    cpdef int record(self, str sid, str op_id, Py_ssize_t index, double delay,
                     long long tree_leaves, double now) except -1
