# cython: language_level=3
"""The pokeBack fast path, compiled: see pokeback.py for what it does.

The frame is parsed with a small strict JSON scanner over its bytes (flat
object, the contract's five fields, no escapes): no Python object is built but
the operation id. Anything the scanner does not take goes the generic way.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.math cimport isfinite
from libc.stdlib cimport strtod
from libc.string cimport memcmp
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC

from picows.picows cimport WSFrame
from msstorm._fastpath.connection_c cimport Connection
from msstorm._fastpath.rtt_c cimport PokeTable

from msstorm._fastpath.pokeback import FOREIGN, PREFIX, RECORDED, UNKNOWN

cdef bytes _PREFIX = PREFIX
cdef Py_ssize_t _PREFIX_SIZE = len(PREFIX)
cdef int _RECORDED = RECORDED
cdef int _UNKNOWN = UNKNOWN
cdef int _FOREIGN = FOREIGN
cdef str _ROOT = "/"


cdef inline double _monotonic() noexcept:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec + ts.tv_nsec * 1e-9


cdef inline Py_ssize_t _blanks(const char* p, Py_ssize_t i, Py_ssize_t n) noexcept:
    while i < n and (p[i] == 32 or p[i] == 9 or p[i] == 10 or p[i] == 13):
        i += 1
    return i


cdef inline Py_ssize_t _string_end(const char* p, Py_ssize_t i, Py_ssize_t n) noexcept:
    """p[i] is past the opening quote: the index of the closing one, or -1 when the
    string has an escape or a control character (the generic path decodes those)."""
    cdef unsigned char c
    while i < n:
        c = <unsigned char>p[i]
        if c == 34:  # '"'
            return i
        if c == 92 or c < 32:  # backslash, control
            return -1
        i += 1
    return -1


cdef inline Py_ssize_t _digits(const char* p, Py_ssize_t i, Py_ssize_t n) noexcept:
    while i < n and 48 <= p[i] <= 57:
        i += 1
    return i


cdef inline Py_ssize_t _number_end(const char* p, Py_ssize_t i, Py_ssize_t n,
                                   bint* integral) noexcept:
    """A strict JSON number from p[i]: the index past it, or -1."""
    cdef Py_ssize_t start
    integral[0] = True
    if i < n and p[i] == 45:  # '-'
        i += 1
    if i >= n:
        return -1
    if p[i] == 48:  # a leading 0 stands alone
        i += 1
    elif 49 <= p[i] <= 57:
        i = _digits(p, i, n)
    else:
        return -1
    if i < n and p[i] == 46:  # '.'
        integral[0] = False
        start = i + 1
        i = _digits(p, start, n)
        if i == start:
            return -1
    if i < n and (p[i] == 101 or p[i] == 69):  # 'e', 'E'
        integral[0] = False
        i += 1
        if i < n and (p[i] == 43 or p[i] == 45):
            i += 1
        start = i
        i = _digits(p, start, n)
        if i == start:
            return -1
    return i


cdef inline int _hex(const char* p, Py_ssize_t n, Py_ssize_t* value) noexcept:
    cdef Py_ssize_t i, v = 0
    cdef char c
    for i in range(n):
        c = p[i]
        if 48 <= c <= 57:
            v = v * 16 + (c - 48)
        elif 97 <= c <= 102:
            v = v * 16 + (c - 87)
        else:
            return -1
    value[0] = v
    return 0


cdef class PokeBackTap:
    """Answers to the pokes of ``running`` operations (see the plain twin)."""

    def __init__(self, dict running, object after):
        self.running = running
        self.after = after
        self.answers = 0
        self.unknown = 0
        self.foreign = 0

    cpdef bint feed(self, Connection conn, bytes frame) except -1:
        """Take the frame if it is a well-formed pokeBack of a joined client."""
        return self._scan(conn, PyBytes_AS_STRING(frame), PyBytes_GET_SIZE(frame))

    cpdef bint take(self, Connection conn, WSFrame frame) except -1:
        """``feed`` for a whole text frame, read where picows received it: no copy."""
        return self._scan(conn, frame.payload_ptr, frame.payload_size)

    cdef bint _scan(self, Connection conn, const char* p, Py_ssize_t n) except -1:
        if n < _PREFIX_SIZE or memcmp(p, PyBytes_AS_STRING(_PREFIX), _PREFIX_SIZE) != 0:
            return False
        cdef double now = _monotonic()
        cdef Py_ssize_t i = _blanks(p, _PREFIX_SIZE, n), key, key_end, end
        cdef Py_ssize_t id_at = -1, id_end = -1
        cdef double delay = 0.0, value
        cdef long long leaves = -1
        cdef bint has_delay = False, has_ts = False, integral
        if i >= n or p[i] != 123:  # '{'
            return False
        i += 1
        while True:
            i = _blanks(p, i, n)
            if i >= n or p[i] != 34:
                return False
            key = i + 1
            key_end = _string_end(p, key, n)
            if key_end < 0:
                return False
            i = _blanks(p, key_end + 1, n)
            if i >= n or p[i] != 58:  # ':'
                return False
            i = _blanks(p, i + 1, n)
            if i >= n:
                return False
            if _is(p, key, key_end, b"id") or _is(p, key, key_end, b"treeId"):
                if p[i] != 34:
                    return False
                end = _string_end(p, i + 1, n)
                if end < 0:
                    return False
                if _is(p, key, key_end, b"id"):
                    id_at, id_end = i + 1, end
                i = end + 1
            elif (_is(p, key, key_end, b"delay") or _is(p, key, key_end, b"serverTs")
                  or _is(p, key, key_end, b"treeLeaves")):
                end = _number_end(p, i, n, &integral)
                if end < 0:
                    return False
                if _is(p, key, key_end, b"treeLeaves"):
                    if not integral or end - i > (17 if p[i] == 45 else 16):
                        return False
                    leaves = <long long>strtod(p + i, NULL)
                else:
                    value = strtod(p + i, NULL)
                    if not isfinite(value):
                        return False
                    if _is(p, key, key_end, b"delay"):
                        delay, has_delay = value, True
                    else:
                        has_ts = True
                i = end
            else:
                return False  # a field the contract does not name
            i = _blanks(p, i, n)
            if i < n and p[i] == 44:  # ','
                i += 1
                continue
            if i < n and p[i] == 125:  # '}'
                i += 1
                break
            return False
        i = _blanks(p, i, n)
        if i >= n or p[i] != 93:  # ']'
            return False
        if _blanks(p, i + 1, n) != n or id_at < 0 or not has_delay or not has_ts:
            return False
        sid = (<dict>conn.session.namespaces).get(_ROOT)
        if sid is None:
            return False
        cdef Py_ssize_t dot = id_end - 1, index
        while dot >= id_at and p[dot] != 46:  # the last '.'
            dot -= 1
        if dot < id_at or id_end - dot - 1 != 8 or _hex(p + dot + 1, 8, &index) < 0:
            self.unknown += 1
            return True
        try:
            op_id = PyUnicode_DecodeUTF8(p + id_at, dot - id_at, "strict")
        except UnicodeDecodeError:
            return False
        self.record(<str>sid, op_id, index, delay, leaves, now)
        return True

    cpdef int record(self, str sid, str op_id, Py_ssize_t index, double delay,
                     long long tree_leaves, double now) except -1:
        """Count one answer; RECORDED, UNKNOWN or FOREIGN."""
        op = (<dict>self.running).get(op_id)
        if op is None:
            self.unknown += 1
            return _UNKNOWN
        cdef list targets = op.targets
        if index < 0 or index >= len(targets) or targets[index] != sid:
            self.foreign += 1
            return _FOREIGN
        cdef PokeTable table = <PokeTable?>op.table
        if table.answer(index, now, delay) < 0:
            self.unknown += 1
            return _UNKNOWN
        self.answers += 1
        if op.grows or table.received + table.unsent >= <Py_ssize_t>op.expected:
            self.after(op, index, tree_leaves)
        return _RECORDED


cdef inline bint _is(const char* p, Py_ssize_t start, Py_ssize_t end, bytes name) noexcept:
    cdef Py_ssize_t size = PyBytes_GET_SIZE(name)
    return end - start == size and memcmp(p + start, PyBytes_AS_STRING(name), size) == 0
