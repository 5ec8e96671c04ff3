# Types for session_c.py, the compiled twin of msstorm/protocol/session.py (a symbolic
# link to it): the heartbeat's deadlines are C doubles, read and set without a lookup.

cdef class EngineSession:
    cdef public str sid
    cdef public object config
    cdef public double next_ping
    cdef public double pong_deadline
    cdef public double deadline

    cpdef object receive_text(self, bytes frame)
    cpdef object receive_binary(self, bytes frame)
    cpdef object _message(self, bytes frame)
    cpdef int on_timer(self, double now) except -1
    cdef int _other_deadlines(self, double now) except -1
    cdef double _earliest(self, double a, double b) noexcept

cdef class SocketSession(EngineSession):
    cdef public dict namespaces
    cdef public double connect_deadline
    cdef public object partial
    cdef public list attachments
    cdef public Py_ssize_t binary_size
    cdef public long long last_ack_id
    cdef public dict ack_callbacks

    cpdef object _complete(self)
    cpdef join(self, str namespace, str sid)
    cpdef object leave(self, str namespace)
    cpdef long long expect_ack(self, object callback) except -1
