cimport cython
# Types for connection_c.py, the compiled twin of connection.py (a symbolic link to it).
cimport picows.picows
from picows.picows cimport WSTransport, WSFrame
from msstorm._fastpath.session_c cimport EngineSession
from msstorm._fastpath.timers_c cimport TimerWheel

cdef class Traffic:
    cdef public unsigned long long frames_in
    cdef public unsigned long long bytes_in
    cdef public unsigned long long frames_out
    cdef public unsigned long long bytes_out

cdef class Connection(picows.picows.WSListener):
    cdef public object app
    cdef public Traffic traffic
    cdef public WSTransport transport
    cdef public EngineSession session
    cdef public bint closed
    cdef public object close_reason
    cdef object fragments
    cdef bint fragment_binary
    cdef public list held
    cdef public bint paused
    cdef public object peer

    cpdef on_ws_connected(self, WSTransport transport)
    cpdef on_ws_frame(self, WSTransport transport, WSFrame frame)
    cpdef on_ws_disconnected(self, WSTransport transport)
    cpdef pause_writing(self)
    cpdef resume_writing(self)
    cpdef receive(self, bytes data, bint binary)
    cdef _decode(self, bytes data, bint binary)
    cdef _fragment(self, WSFrame frame)
    cdef _refuse(self, object exc)
    cpdef send_text(self, bytes frame)
    cpdef send_binary(self, bytes frame)
    cdef _write(self, object kind, bytes frame)
    cdef bint _room(self) except -1
    cpdef abort(self, str reason)
    cdef bint _closing(self, str reason) except -1
    cpdef send_frames(self, object frames)
    cpdef hold(self)
    cpdef release(self)
    cpdef close(self, object code=*, str reason=*)
    cpdef on_timer(self, TimerWheel wheel, double now)

cdef bytearray _outgoing
cdef Py_ssize_t HEADROOM
cdef Py_ssize_t SHARED_UP_TO


@cython.locals(connection=Connection, due=list)
cpdef Py_ssize_t serve_due(TimerWheel wheel, double now, object failed) except -1
