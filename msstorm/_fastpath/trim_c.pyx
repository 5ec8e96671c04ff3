# cython: language_level=3
"""Give back what picows keeps per connection and msstorm does not use.

After the handshake a picows transport still holds the parsed upgrade request
and response (headers: about 2 KB) and a 1 KB write buffer. msstorm writes
frames from its own shared buffer (``connection._send``), so picows's buffer only
ever holds a ping or a close frame: 64 bytes are plenty, and it grows by itself
if ever needed.

picows also gives every connection a read buffer of 2 KiB at least (it will not
make a smaller one) for frames that are a hundred bytes here, and keeps two
futures (the handshake's, the disconnection's) and the handshake's key for as
long as the connection lives. ``trim`` puts one shared, done future in place of
the handshake's, drops the key, and lets the listener stand in for the
disconnection's (below); ``lean`` cuts the read buffer to
``LEAN_CAPACITY``. picows grows it again by itself when a read needs more, and a
later ``lean`` (the heartbeat calls it at each ping) gives that back.

The disconnection future is made only when someone awaits the transport's
``wait_disconnected()``: until then the connection's listener stands in for it
(one with ``done()`` and ``__await__``, as msstorm's are: see ``connection.py``),
and the first await puts a future of the connection's own in its place, which
picows resolves at the disconnection as it would have its own. A listener that
cannot stand in leaves the transport its future.

picows does not export its protocol object's fields, so ``trim`` and ``lean``
reach them through the layout that picows 2.3.1 (the pinned version) gives its
WSProtocol. Before any cast they check the installed picows's version and the
protocol object's exact type, then the layout against what must be there: the
transport, the event loop, the handshake done, picows's HTTP limit. Where
anything differs they leave the connection alone and return False; the first
time, a warning says why, and ``refusal()`` keeps it for /healthz and /metrics.
The tests fail the day they stop finding the layout.
"""

import asyncio
import logging

import picows
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from cpython.object cimport PyObject
from cpython.ref cimport Py_INCREF, Py_XDECREF
from picows.picows cimport MemoryBuffer, WSTransport

from picows.picows import WSProtocol

# The picows whose WSProtocol layout is declared below; the installed one's version.
EXPECTED_PICOWS = "2.3.1"
PICOWS_VERSION = picows.__version__

cdef Py_ssize_t SMALL = 64
# picows keeps 256 bytes beyond what it reads into, for its SIMD frame parser.
cdef Py_ssize_t PARSER_MARGIN = 256
LEAN_CAPACITY = 768
cdef Py_ssize_t _LEAN_CAPACITY = LEAN_CAPACITY
# picows's parser states once the handshake is done, from between frames (READ_HEADER)
# to inside one's payload.
cdef int READ_HEADER = 1
cdef int READ_PAYLOAD = 4
cdef Py_ssize_t HTTP_MAX_SIZE = 16 * 1024  # picows's limit on a handshake's head

log = logging.getLogger("msstorm.fastpath")

cdef extern from *:
    """
    /* The fields of picows 2.3.1's WSProtocol object up to its read buffer, in
       the order picows declares them (Cython lays an object out that way). */
    typedef struct {
        PyObject_HEAD
        void *vtab;
        PyObject *transport;
        PyObject *listener;
        PyObject *listener_factory;
        PyObject *host_port;
        PyObject *ws_path;
        PyObject *logger;
        int log_debug_enabled;
        int is_client_side;
        int disconnect_on_exception;
        PyObject *disconnect_exception;
        PyObject *loop;
        PyObject *handshake_timeout;
        PyObject *handshake_timeout_handle;
        PyObject *handshake_complete_future;
        Py_ssize_t http_max_size;
        PyObject *websocket_key_b64;
        Py_ssize_t max_frame_size;
        int enable_auto_pong;
        int enable_auto_ping;
        PyObject *auto_ping_idle_timeout;
        PyObject *auto_ping_reply_timeout;
        int auto_ping_strategy;
        PyObject *auto_ping_loop_task;
        double last_data_time;
        PyObject *extra_headers;
        int state;
        PyObject *read_buffer;
        Py_ssize_t new_data_start_pos;
    } msstorm_picows_protocol;
    """
    ctypedef struct msstorm_picows_protocol:
        PyObject* transport
        PyObject* listener
        PyObject* listener_factory
        PyObject* loop
        PyObject* handshake_complete_future
        Py_ssize_t http_max_size
        PyObject* websocket_key_b64
        int state
        PyObject* read_buffer
        Py_ssize_t new_data_start_pos


# One future, done, stands for every connection's finished handshake: picows only
# asks it whether it is done (a future a connection, 160 bytes, otherwise).
_DONE = None

# Why this process's connections run untrimmed (None while they are trimmed).
_refused = None


def refusal():
    """Why connections are not trimmed here, or None when they are."""
    if _refused is None and PICOWS_VERSION != EXPECTED_PICOWS:
        return _version_refusal()
    return _refused


cdef str _version_refusal():
    return (f"picows {PICOWS_VERSION} is installed; msstorm knows the connection layout "
            f"of picows {EXPECTED_PICOWS} only")


cdef int _refuse(str reason) except -1:
    """Record (and log, the first time) why a connection is left untrimmed."""
    global _refused
    if _refused is None:
        _refused = reason
        log.warning("connections are not trimmed, so each keeps about 4 KiB more memory: %s",
                    reason)
    return 0


cdef inline object _done_future(object loop):
    global _DONE
    if _DONE is None:
        _DONE = loop.create_future()
        _DONE.set_result(None)
    return _DONE


cdef inline void _replace(PyObject** field, object value) noexcept:
    cdef PyObject* old = field[0]
    Py_INCREF(value)
    field[0] = <PyObject*>value
    Py_XDECREF(old)


cdef inline bint _stands_in(object listener):
    """Whether the listener can stand in for its transport's disconnection future."""
    kind = type(listener)
    return hasattr(kind, "done") and hasattr(kind, "__await__")


cpdef bint trim(WSTransport transport) except -1:
    """Drop the handshake's request and response, its future and key; shrink the
    write and read buffers; let the listener stand in for the disconnection future.
    False when picows is not the one expected (nothing done)."""
    cdef msstorm_picows_protocol* fields = _fields(transport)
    if fields == NULL:
        return False
    transport.request = None
    transport.response = None
    listener = <object>fields.listener
    if _stands_in(listener):
        transport.disconnected_future = listener
    cdef MemoryBuffer buffer = transport._write_buffer
    cdef void* data
    if buffer.capacity > SMALL and buffer.size <= SMALL:
        data = PyMem_Realloc(buffer.data, SMALL)
        if data != NULL:
            buffer.data = <char*>data
            buffer.capacity = SMALL
    if (<object>fields.handshake_complete_future).done():
        _replace(&fields.handshake_complete_future, _done_future(transport._loop))
    _replace(&fields.websocket_key_b64, None)  # only the handshake needs it
    return lean(transport)


async def disconnection(WSTransport transport, object stand_in):
    """What awaiting ``stand_in`` (the listener that stands in for the transport's
    disconnection future) does: wait until the transport is disconnected, on a
    future of the transport's own, made now and resolved by picows."""
    if transport is None:  # the listener let it go: it is disconnected
        return
    future = transport.disconnected_future
    if future is stand_in:
        if transport.is_disconnected:
            return
        future = transport._loop.create_future()
        transport.disconnected_future = future
    await asyncio.shield(future)


cdef msstorm_picows_protocol* _fields(WSTransport transport) except? NULL:
    """The fields of the connection's picows protocol, or NULL (the refusal recorded)
    when picows is not the version expected or its protocol not laid out as expected."""
    if transport is None:  # a typed argument accepts None: read, it would crash
        raise TypeError("a picows WSTransport is needed, not None")
    # The transport's own fields are picows's layout too: not one is read before this.
    if PICOWS_VERSION != EXPECTED_PICOWS:
        _refuse(_version_refusal())
        return NULL
    protocol = transport.underlying_transport.get_protocol()
    # Exactly picows's class: a subclass may add fields and lay the object out otherwise.
    if type(protocol) is not WSProtocol:
        _refuse(f"the connection's protocol is {type(protocol).__module__}."
                f"{type(protocol).__qualname__}, not picows's WSProtocol")
        return NULL
    cdef msstorm_picows_protocol* fields = <msstorm_picows_protocol*><PyObject*>protocol
    # Each check compares a field with what it must hold, without following it,
    # before any field is followed.
    if (
        fields.transport != <PyObject*>transport
        or fields.loop != <PyObject*>transport._loop
        or fields.listener == NULL
        or fields.listener_factory != <PyObject*>None
        or fields.http_max_size != HTTP_MAX_SIZE
        or not READ_HEADER <= fields.state <= READ_PAYLOAD
        or fields.read_buffer == NULL
        or fields.handshake_complete_future == NULL
        or fields.websocket_key_b64 == NULL
        or type(<object>fields.read_buffer) is not MemoryBuffer
    ):
        _refuse(f"picows's WSProtocol is not laid out as picows {EXPECTED_PICOWS}'s")
        return NULL
    return fields


cdef MemoryBuffer _read_buffer(WSTransport transport, Py_ssize_t* unread, int* state):
    """The connection's read buffer, how much of it is unread and the parser's state;
    None when not found."""
    cdef msstorm_picows_protocol* fields = _fields(transport)
    if fields == NULL:
        return None
    unread[0] = fields.new_data_start_pos
    state[0] = fields.state
    return <MemoryBuffer>fields.read_buffer


cpdef bint lean(WSTransport transport) except -1:
    """Cut the connection's read buffer back to LEAN_CAPACITY bytes when it holds no
    unread data; False when picows is not the one expected (nothing done).

    Not from inside a frame callback: picows may hold the next frame, parsed already,
    in the buffer (lean finds the buffer busy then, and leaves it).
    """
    cdef Py_ssize_t unread = 0
    cdef int state = 0
    cdef MemoryBuffer buffer = _read_buffer(transport, &unread, &state)
    if buffer is None:
        return False
    cdef void* data
    if buffer.capacity > _LEAN_CAPACITY and unread == 0 and state == READ_HEADER:
        # A new block rather than a realloc in place: the old one is freed whole,
        # for the next connection's picows to take (it asks for 2 KiB each time),
        # where a shrunk block would leave its tail as a fragment nobody fits.
        data = PyMem_Malloc(_LEAN_CAPACITY)
        if data == NULL:
            return True  # the old buffer stays; it is still valid
        PyMem_Free(buffer.data)
        buffer.data = <char*>data
        buffer.capacity = _LEAN_CAPACITY
        buffer.size = _LEAN_CAPACITY - PARSER_MARGIN
    return True


def read_buffer_capacity(WSTransport transport):
    """The capacity of the connection's read buffer (for tests), or None if not found."""
    cdef Py_ssize_t unread = 0
    cdef int state = 0
    cdef MemoryBuffer buffer = _read_buffer(transport, &unread, &state)
    return None if buffer is None else buffer.capacity
