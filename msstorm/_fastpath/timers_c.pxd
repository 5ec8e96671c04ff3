# Types for timers_c.py, the compiled twin of timers.py (a symbolic link to it).

cdef class TimerWheel:
    cdef double _resolution
    cdef list _slots
    cdef Py_ssize_t _mask
    cdef long long _tick
    cdef public Py_ssize_t count

    cpdef schedule(self, object item, double due)
    cpdef list advance(self, double now)
