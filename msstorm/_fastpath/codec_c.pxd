# The compiled Socket.IO codec; its plain-Python twin is msstorm/protocol/packets.py.

cdef class Packet:
    cdef public int type
    cdef public object namespace
    cdef public object data
    cdef public object id
    cdef public Py_ssize_t attachments

cpdef Packet decode(bytes message, Py_ssize_t start=*)
cdef Packet decode_buffer(const char* buf, Py_ssize_t n)
cpdef object encode(int type, str namespace=*, object data=*, object id=*)
cpdef bint has_binary(object data) except -1
cpdef object reconstruct(object data, list attachments)
