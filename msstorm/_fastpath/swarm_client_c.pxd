# Types for swarm_client_c.py, the compiled twin of swarm_client.py (a symbolic link to it).
cimport picows.picows
from picows.picows cimport WSTransport, WSFrame

cdef class SwarmClient(picows.picows.WSListener):
    cdef public object swarm
    cdef public Py_ssize_t slot
    cdef public int state
    cdef public WSTransport transport

    cpdef on_ws_connected(self, WSTransport transport)
    cpdef on_ws_frame(self, WSTransport transport, WSFrame frame)
    cpdef answer(self, bytes data)
    cpdef on_ws_disconnected(self, WSTransport transport)
    cpdef close(self)
