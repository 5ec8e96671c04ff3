# cython: language_level=3
"""Poke frames and the fan-out loop, compiled: see pokes.py for the frame layout.

The frame lives in one bytearray with room in front for the WebSocket header,
so picows's ``send_reuse_external_buffer`` writes the header in place and the
loop makes one ``send()`` per recipient with nothing copied and no Python call.
"""

from cpython.bytearray cimport PyByteArray_AS_STRING
from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.math cimport floor
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC, CLOCK_REALTIME

from picows.picows cimport WSMsgType
from msstorm._fastpath.connection_c cimport Connection
from msstorm._fastpath.rtt_c cimport PokeTable

from msstorm._fastpath.pokes import INDEX_WIDTH, MAX_POKES, TS_WIDTH
from random import random as _random

cdef Py_ssize_t HEADROOM = 14  # the largest WebSocket header a server writes
cdef Py_ssize_t _INDEX_WIDTH = INDEX_WIDTH
cdef Py_ssize_t _TS_WIDTH = TS_WIDTH
cdef long long _MAX_POKES = MAX_POKES
cdef double _MAX_TS_MS = 1e13 - 0.0005  # 13 digits before the point
cdef const char* _HEX = b"0123456789abcdef"


cdef inline double _seconds(int clock) noexcept:
    cdef timespec ts
    clock_gettime(clock, &ts)
    return ts.tv_sec + ts.tv_nsec * 1e-9


cdef class PokeFrame:
    """The text of a poke, with its index and ts left to fill in."""

    def __init__(self, str op_id, long tree_leaves=0, parent_id=None, tree_id=None):
        if "." in op_id or '"' in op_id or "\\" in op_id:
            raise ValueError(f"unusable operation id {op_id!r}")
        head = f'42["poke",{{"id":"{op_id}.'.encode()
        tail = ""
        if tree_leaves:
            parent = "-1" if parent_id is None else f'"{parent_id}"'
            tree = op_id if tree_id is None else tree_id
            tail = f',"treeLeaves":{tree_leaves},"treeId":"{tree}","parentId":{parent}'
        text = head + b"0" * _INDEX_WIDTH + b'","ts":' + b" " * _TS_WIDTH + (tail + "}]").encode()
        self._buffer = bytearray(HEADROOM) + text
        self._index_at = HEADROOM + len(head)
        self._ts_at = self._index_at + _INDEX_WIDTH + 7
        self._size = len(text)

    cdef int _patch(self, Py_ssize_t index, double wall_ms) except -1:
        if index < 0 or index >= _MAX_POKES:
            raise ValueError(f"poke index out of range: {index}")
        cdef char* p = PyByteArray_AS_STRING(self._buffer)
        cdef Py_ssize_t i
        cdef unsigned long long value = <unsigned long long>index
        for i in range(_INDEX_WIDTH - 1, -1, -1):
            p[self._index_at + i] = _HEX[value & 15]
            value >>= 4
        # The ts in microseconds, written right to left (snprintf of a double
        # costs more than the rest of the patch together).
        if not (0.0 <= wall_ms < _MAX_TS_MS):
            raise ValueError(f"wall clock out of range: {wall_ms}")
        cdef long long micros = <long long>floor(wall_ms * 1000.0 + 0.5)
        cdef char* ts = p + self._ts_at
        cdef Py_ssize_t at = _TS_WIDTH - 1
        while at > _TS_WIDTH - 4:  # three decimals
            ts[at] = <char>(48 + micros % 10)
            micros //= 10
            at -= 1
        ts[at] = 46  # '.'
        at -= 1
        ts[at] = <char>(48 + micros % 10)  # at least one digit before the point
        micros //= 10
        at -= 1
        while at >= 0:
            if micros:
                ts[at] = <char>(48 + micros % 10)
                micros //= 10
            else:
                ts[at] = 32  # a blank: JSON allows blanks before a number, not leading zeros
            at -= 1
        return 0

    cpdef bytes render(self, Py_ssize_t index, double wall_ms):
        """The frame for poke ``index`` sent at ``wall_ms`` (UNIX ms)."""
        self._patch(index, wall_ms)
        return PyBytes_FromStringAndSize(PyByteArray_AS_STRING(self._buffer) + HEADROOM, self._size)


cdef inline long long _shifted(long long leaves, Py_ssize_t depth) except? -1:
    """``leaves >> depth`` as Python computes it (C leaves a shift of 64 or more undefined)."""
    if depth < 0:
        raise ValueError("negative shift count")
    return leaves >> (depth if depth < 63 else 63)


cpdef Py_ssize_t send_pokes(PokeFrame frame, list conns, Py_ssize_t start, Py_ssize_t stop,
                            Py_ssize_t first_index, PokeTable table) except -1:
    """Send poke ``first_index + i`` to ``conns[i]`` for ``i`` in ``start..stop``;
    the number sent (see the plain twin)."""
    cdef Py_ssize_t i, index, sent = 0
    cdef Connection conn
    cdef char* payload
    if start < 0 or stop > len(conns):  # the loop reads conns unchecked
        raise IndexError(f"pokes {start}..{stop} of {len(conns)} connections")
    for i in range(start, stop):
        conn = <Connection?>conns[i]  # checked: anything else would be read as one
        index = first_index + i
        if conn.closed or conn.paused:  # gone, or not reading: the poke is lost
            table.mark_unsent(index)
            continue
        frame._patch(index, _seconds(CLOCK_REALTIME) * 1000.0)
        table.mark_sent(index, _seconds(CLOCK_MONOTONIC))
        if conn.held is not None or conn.transport is None:
            # A CONNECT still being decided, or a long-polling client: it queues a copy.
            conn.send_text(frame.render(index, _seconds(CLOCK_REALTIME) * 1000.0))
        else:
            payload = PyByteArray_AS_STRING(frame._buffer) + HEADROOM
            conn.transport.send_reuse_external_buffer(WSMsgType.TEXT, payload, frame._size)
            conn.traffic.frames_out += 1
            conn.traffic.bytes_out += frame._size
        sent += 1
    return sent


cpdef bint grow_tree(object tree, Py_ssize_t index, long long tree_leaves, list members,
                     dict sockets) except -1:
    """The answer to poke ``index`` of ``tree`` makes two pokes one level down, to
    clients drawn from ``members`` (see the plain twin); whether the answer's
    ``tree_leaves`` was right."""
    cdef bytearray depths = tree.depths
    cdef list targets = tree.targets
    if index < 0 or index >= len(depths) or index >= len(targets):
        raise IndexError(f"no poke {index} in the tree")
    cdef Py_ssize_t depth = depths[index]
    cdef long long leaves = _shifted(tree.leaves, depth)
    cdef bint right = tree_leaves == ((leaves >> 1) if leaves >= 2 else -1)
    if leaves < 2:
        return right
    cdef Py_ssize_t n = len(members)
    cdef Py_ssize_t first, second
    cdef list drawn = []
    if n:
        first = <Py_ssize_t>(<double>_random() * n)
        second = first
        if n >= 2:
            second = <Py_ssize_t>(<double>_random() * (n - 1))
            if second >= first:
                second += 1
        drawn = [members[first], members[second]]
    poke_tree(tree, targets[index], depth + 1, drawn, 2, sockets)
    return right


cpdef int poke_tree(object tree, object parent, Py_ssize_t depth, list sids, Py_ssize_t count,
                    dict sockets) except -1:
    """``count`` pokes at ``depth`` of ``tree`` to the clients ``sids``, booked, timed
    and sent; the subtrees of those not sent are lost (see the plain twin)."""
    cdef long long leaves = _shifted(tree.leaves, depth)
    cdef list targets = tree.targets
    cdef list parents = tree.parents
    cdef bytearray depths = tree.depths
    cdef PokeTable table = <PokeTable?>tree.table
    cdef Py_ssize_t slot = len(targets)
    cdef list conns = []
    for sid in sids:
        conn = sockets.get(sid)
        if conn is None:
            continue
        if len(targets) >= table.capacity:
            table.grow(2 * table.capacity)
        targets.append(sid)
        parents.append(parent)
        depths.append(depth)
        conns.append(conn)
    cdef Py_ssize_t sent = 0
    if conns:
        frame = PokeFrame(tree.key, leaves, parent, tree.op_id)
        sent = send_pokes(frame, conns, 0, len(conns), slot, table)
    tree.unreachable += (count - sent) * (2 * leaves - 1)
    return 0
