# cython: language_level=3
"""One encoded frame to many connections, compiled: see fanout.py.

The frame is copied once into a bytearray with room in front for the WebSocket
header, so picows's ``send_reuse_external_buffer`` writes each recipient's
header in place and the loop makes one ``send()`` per recipient, with nothing
else copied and no Python call.
"""

from cpython.bytearray cimport PyByteArray_AS_STRING

from picows.picows cimport WSMsgType
from msstorm._fastpath.connection_c cimport Connection

cdef Py_ssize_t HEADROOM = 14  # the largest WebSocket header a server writes


cpdef Py_ssize_t send_frame(bytes frame, list conns, Py_ssize_t start, Py_ssize_t stop,
                            bint binary=False) except -1:
    """Send ``frame`` (binary when ``binary``) to ``conns[start:stop]``, skipping the
    closed ones; how many it was handed to (see the plain twin)."""
    cdef Py_ssize_t size = len(frame)
    cdef Py_ssize_t i, sent = 0
    cdef bytearray buffer = bytearray(HEADROOM) + frame
    cdef char* payload = PyByteArray_AS_STRING(buffer) + HEADROOM
    cdef WSMsgType kind = WSMsgType.BINARY if binary else WSMsgType.TEXT
    cdef Connection conn
    if start < 0 or stop > len(conns):
        raise IndexError(f"slice {start}:{stop} out of {len(conns)} connections")
    for i in range(start, stop):
        conn = <Connection?>conns[i]  # checked: anything else would be read as one
        if conn.closed:
            continue
        if conn.held is not None or conn.transport is None or conn.paused:
            # A CONNECT being decided, a long-polling client, or one whose kernel
            # buffer is full (its own send decides whether it is dropped).
            if binary:
                conn.send_binary(frame)
            else:
                conn.send_text(frame)
        else:
            conn.transport.send_reuse_external_buffer(kind, payload, size)
            conn.traffic.frames_out += 1
            conn.traffic.bytes_out += size
        sent += 1
    return sent
