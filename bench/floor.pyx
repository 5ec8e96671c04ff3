# cython: language_level=3
"""The send floor: one send() of the same frame per socket, from C, nothing else.

What a broadcast loop cannot beat on this machine; bench/run_broadcast.py
judges msstorm's fan-out as a multiple of it.
"""


cdef extern from "<sys/socket.h>" nogil:
    ctypedef long ssize_t
    ssize_t send(int fd, const void* buf, size_t n, int flags)


def send_floor(list fds, bytes frame):
    """Send ``frame`` once to every fd; the number of sends that wrote it whole."""
    cdef const char* data = frame
    cdef size_t n = len(frame)
    cdef Py_ssize_t i, whole = 0
    cdef int fd
    for i in range(len(fds)):
        fd = fds[i]
        if send(fd, data, n, 0) == <ssize_t>n:
            whole += 1
    return whole
