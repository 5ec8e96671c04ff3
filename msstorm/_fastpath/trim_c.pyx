# cython: language_level=3
"""Give back what picows keeps per connection and msstorm does not use.

After the handshake a picows transport still holds the parsed upgrade request
and response (headers: about 2 KB) and a 1 KB write buffer. msstorm writes
frames from its own shared buffer (``connection._send``), so picows's buffer only
ever holds a ping or a close frame: 64 bytes are plenty, and it grows by itself
if ever needed.
"""

from cpython.mem cimport PyMem_Realloc
from picows.picows cimport MemoryBuffer, WSTransport

cdef Py_ssize_t SMALL = 64


cpdef trim(WSTransport transport):
    """Drop the handshake's request and response; shrink the write buffer."""
    transport.request = None
    transport.response = None
    cdef MemoryBuffer buffer = transport._write_buffer
    cdef void* data
    if buffer.capacity > SMALL and buffer.size <= SMALL:
        data = PyMem_Realloc(buffer.data, SMALL)
        if data != NULL:
            buffer.data = <char*>data
            buffer.capacity = SMALL
