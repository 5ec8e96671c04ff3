# cython: language_level=3
"""Poke frames and the fan-out loop, compiled: see pokes.py for the frame layout.

The frame lives in one bytearray with room in front for the WebSocket header,
so picows's ``send_reuse_external_buffer`` writes the header in place and the
loop makes one ``send()`` per recipient with nothing copied and no Python call.
"""

from cpython.bytearray cimport PyByteArray_AS_STRING
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.math cimport floor
from libc.stdint cimport uint64_t
from libc.string cimport memcpy
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC, CLOCK_REALTIME

from picows.picows cimport WSMsgType
from msstorm._fastpath.connection_c cimport Connection
from msstorm._fastpath.rtt_c cimport PokeTable

from msstorm._fastpath.pokes import INDEX_WIDTH, MAX_POKES, TS_WIDTH
from os import urandom

cdef Py_ssize_t HEADROOM = 14  # the largest WebSocket header a server writes
cdef Py_ssize_t _INDEX_WIDTH = INDEX_WIDTH
cdef Py_ssize_t _TS_WIDTH = TS_WIDTH
cdef long long _MAX_POKES = MAX_POKES
cdef double _MAX_TS_MS = 1e13 - 0.0005  # 13 digits before the point
cdef const char* _HEX = b"0123456789abcdef"
cdef uint64_t _state = int.from_bytes(urandom(8), "little") | 1


def seed(value):
    """Start the draws over from ``value`` (both twins then draw alike)."""
    global _state
    _state = (value & 0xFFFFFFFFFFFFFFFF) or 0x9E3779B97F4A7C15  # xorshift never leaves 0


cdef inline Py_ssize_t _below(Py_ssize_t n) noexcept:
    """xorshift64*, as the plain twin's ``below`` computes it."""
    global _state
    cdef uint64_t x = _state
    x ^= x >> 12
    x ^= x << 25
    x ^= x >> 27
    _state = x
    cdef Py_ssize_t drawn = <Py_ssize_t>(
        <double>((x * <uint64_t>0x2545F4914F6CDD1D) >> 11) * (1.0 / 9007199254740992.0)
        * <double>n)
    return drawn if drawn < n else n - 1


def below(Py_ssize_t n):
    """A number drawn uniformly from ``0..n-1`` (``n >= 1``)."""
    if n < 1:
        raise ValueError("nothing to draw from")
    return _below(n)


cdef inline double _seconds(int clock) noexcept:
    cdef timespec ts
    clock_gettime(clock, &ts)
    return ts.tv_sec + ts.tv_nsec * 1e-9


cdef class PokeFrame:
    """The text of a poke, with its index and ts left to fill in."""

    def __init__(self, str op_id, long tree_leaves=0, parent_id=None, tree_id=None):
        if "." in op_id or '"' in op_id or "\\" in op_id:
            raise ValueError(f"unusable operation id {op_id!r}")
        self._op_id = op_id
        self._leaves = tree_leaves
        self._tree = op_id if tree_id is None else tree_id
        self._build(parent_id)

    cdef int _build(self, object parent_id) except -1:
        head = f'42["poke",{{"id":"{self._op_id}.'.encode()
        text = head + b"0" * _INDEX_WIDTH + b'","ts":' + b" " * _TS_WIDTH
        self._parent_at = -1
        self._parent_size = -1
        if self._leaves:
            text += f',"treeLeaves":{self._leaves},"treeId":"{self._tree}","parentId":'.encode()
            if parent_id is None:
                text += b"-1"
            else:
                parent = f"{parent_id}".encode()
                self._parent_at = HEADROOM + len(text) + 1  # past the quote
                self._parent_size = len(parent)
                text += b'"' + parent + b'"'
        text += b"}]"
        self._buffer = bytearray(HEADROOM) + text
        self._index_at = HEADROOM + len(head)
        self._ts_at = self._index_at + _INDEX_WIDTH + 7
        self._size = len(text)
        self._parent = parent_id
        return 0

    cpdef reparent(self, object parent_id):
        """Make this the frame of the pokes ``parent_id``'s answer causes (a tree's):
        patched in place when the new id is as long as the last (a sid always is)."""
        if parent_id is self._parent:
            return
        cdef bytes parent
        if self._parent_size >= 0 and type(parent_id) is str:
            parent = (<str>parent_id).encode()
            if PyBytes_GET_SIZE(parent) == self._parent_size:
                memcpy(PyByteArray_AS_STRING(self._buffer) + self._parent_at,
                       PyBytes_AS_STRING(parent), self._parent_size)
                self._parent = parent_id
                return
        self._build(parent_id)

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
        first = _below(n)
        second = first
        if n >= 2:
            second = _below(n - 1)
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
    cdef list frames
    cdef PokeFrame frame
    if conns:
        frames = tree.frames
        while len(frames) <= depth:
            frames.append(None)
        if frames[depth] is None:
            frame = frames[depth] = PokeFrame(tree.key, leaves, parent, tree.op_id)
        else:
            frame = <PokeFrame?>frames[depth]
            frame.reparent(parent)
        sent = send_pokes(frame, conns, 0, len(conns), slot, table)
    tree.unreachable += (count - sent) * (2 * leaves - 1)
    return 0
