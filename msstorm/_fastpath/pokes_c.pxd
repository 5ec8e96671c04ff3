# The compiled poke frames and fan-out loop; the plain-Python twin is pokes.py.
from msstorm._fastpath.rtt_c cimport PokeTable

cdef class PokeFrame:
    cdef bytearray _buffer
    cdef Py_ssize_t _index_at
    cdef Py_ssize_t _ts_at
    cdef Py_ssize_t _size
    cdef str _op_id
    cdef long _leaves
    cdef object _tree
    cdef object _parent  # the parent id written in the frame now
    cdef Py_ssize_t _parent_at  # where it is written (-1: no quoted parent)
    cdef Py_ssize_t _parent_size

    cdef int _build(self, object parent_id) except -1
    cdef int _patch(self, Py_ssize_t index, double wall_ms) except -1
    cpdef reparent(self, object parent_id)
    cpdef bytes render(self, Py_ssize_t index, double wall_ms)

cpdef Py_ssize_t send_pokes(PokeFrame frame, list conns, Py_ssize_t start, Py_ssize_t stop,
                            Py_ssize_t first_index, PokeTable table) except -1

cpdef bint grow_tree(object tree, Py_ssize_t index, long long tree_leaves, list members,
                     dict sockets) except -1
cpdef int poke_tree(object tree, object parent, Py_ssize_t depth, list sids, Py_ssize_t count,
                    dict sockets) except -1
