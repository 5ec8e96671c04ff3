# The compiled fan-out of one frame to many connections; the plain-Python twin is fanout.py.

cpdef Py_ssize_t send_frame(bytes frame, list conns, Py_ssize_t start, Py_ssize_t stop,
                            bint binary=*) except -1
