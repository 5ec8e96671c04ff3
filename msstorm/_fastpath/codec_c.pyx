# cython: language_level=3
"""Socket.IO v5 packets: the compiled codec.

Same functions, results and errors as its plain-Python twin
``msstorm.protocol.packets`` (read that module for the format). What is faster
here: the packet header is parsed on a C pointer, and the JSON payload goes to
orjson as a zero-copy memoryview of the frame (a small one as a copy, which is
cheaper than the view); packets come from a free list.
``decode_buffer`` lets Cython callers decode straight from a picows frame.
"""

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_FromStringAndSize
from cpython.memoryview cimport PyMemoryView_FromMemory
from cpython.buffer cimport PyBUF_READ
from cpython.unicode cimport PyUnicode_DecodeUTF8, PyUnicode_GET_LENGTH
from libc.string cimport memchr

import orjson

from msstorm.protocol.errors import PacketError
from msstorm.protocol.packets import MAX_ACK_ID, MAX_ATTACHMENTS, RESERVED_EVENTS

CONNECT, DISCONNECT, EVENT, ACK, CONNECT_ERROR, BINARY_EVENT, BINARY_ACK = range(7)

cdef enum:
    T_CONNECT = 0
    T_DISCONNECT = 1
    T_EVENT = 2
    T_ACK = 3
    T_CONNECT_ERROR = 4
    T_BINARY_EVENT = 5
    T_BINARY_ACK = 6

cdef object _loads = orjson.loads
cdef object _dumps = orjson.dumps
cdef object _JSONDecodeError = orjson.JSONDecodeError
cdef int _JSON_OPTIONS = orjson.OPT_NON_STR_KEYS
cdef object _RESERVED = RESERVED_EVENTS
cdef long long _MAX_ACK_ID = MAX_ACK_ID
cdef Py_ssize_t _MAX_ATTACHMENTS = MAX_ATTACHMENTS
cdef str _ROOT = "/"
cdef bytes _PREFIXES = b"0123456"
cdef Py_ssize_t _COPY_BELOW = 2048


@cython.freelist(32)
cdef class Packet:
    """One decoded Socket.IO packet (see ``msstorm.protocol.packets.Packet``)."""

    def __init__(self, int type, namespace="/", data=None, id=None, Py_ssize_t attachments=0):
        self.type = type
        self.namespace = namespace
        self.data = data
        self.id = id
        self.attachments = attachments

    def __eq__(self, other):
        if not hasattr(other, "attachments"):
            return NotImplemented
        return (
            self.type == other.type
            and self.namespace == other.namespace
            and self.data == other.data
            and self.id == other.id
            and self.attachments == other.attachments
        )

    def __repr__(self):
        return (
            f"Packet(type={self.type}, namespace={self.namespace!r}, data={self.data!r}, "
            f"id={self.id!r}, attachments={self.attachments})"
        )


cdef inline bint _is_digit(char c) noexcept:
    return b'0' <= c <= b'9'


cpdef Packet decode(bytes message, Py_ssize_t start=0):
    """Parse the Socket.IO packet that begins at ``message[start]``."""
    cdef Py_ssize_t n = PyBytes_GET_SIZE(message)
    if start < 0 or n <= start:
        raise PacketError("empty Socket.IO packet")
    return decode_buffer(PyBytes_AS_STRING(message) + start, n - start)


cdef Packet decode_buffer(const char* buf, Py_ssize_t n):
    if n <= 0:
        raise PacketError("empty Socket.IO packet")
    cdef int kind = buf[0] - 48
    if kind < 0 or kind > T_BINARY_ACK:
        raise PacketError(f"unknown Socket.IO packet type {PyBytes_FromStringAndSize(buf, 1)!r}")
    cdef Py_ssize_t i = 1, j
    cdef Py_ssize_t attachments = 0
    cdef long long ack = 0
    cdef const char* comma

    if kind == T_BINARY_EVENT or kind == T_BINARY_ACK:
        j = i
        while j < n and _is_digit(buf[j]):
            if j - i >= 4:
                raise PacketError(f"more than {_MAX_ATTACHMENTS} attachments announced")
            attachments = attachments * 10 + (buf[j] - 48)
            j += 1
        if j == i or j >= n or buf[j] != b'-':
            raise PacketError("binary packet without its attachment count")
        if attachments > _MAX_ATTACHMENTS:
            raise PacketError(f"more than {_MAX_ATTACHMENTS} attachments announced")
        i = j + 1

    namespace = _ROOT
    if i < n and buf[i] == b'/':
        comma = <const char*>memchr(buf + i, b',', n - i)
        j = n if comma == NULL else comma - buf
        try:
            namespace = PyUnicode_DecodeUTF8(buf + i, j - i, "strict")
        except UnicodeDecodeError:
            raise PacketError("namespace is not valid UTF-8") from None
        i = j + 1

    ack_id = None
    if i < n and _is_digit(buf[i]):
        j = i
        while j < n and _is_digit(buf[j]):
            if j - i >= 16:
                raise PacketError("ack id out of range")
            ack = ack * 10 + (buf[j] - 48)
            j += 1
        if ack > _MAX_ACK_ID:
            raise PacketError("ack id out of range")
        ack_id = ack
        i = j

    data = None
    if i < n:
        try:
            # A small payload is cheaper to copy than to wrap in a memoryview.
            if n - i <= _COPY_BELOW:
                data = _loads(PyBytes_FromStringAndSize(buf + i, n - i))
            else:
                data = _loads(PyMemoryView_FromMemory(<char*>buf + i, n - i, PyBUF_READ))
        except _JSONDecodeError as exc:
            raise PacketError(f"payload is not valid JSON: {exc}") from None

    _check_payload(kind, data, ack_id)
    cdef Packet packet = Packet.__new__(Packet)
    packet.type = kind
    packet.namespace = namespace
    packet.data = data
    packet.id = ack_id
    packet.attachments = attachments
    return packet


cdef int _check_payload(int kind, object data, object ack_id) except -1:
    if kind == T_EVENT or kind == T_BINARY_EVENT:
        if type(data) is not list or not data:
            raise PacketError("event payload must be a non-empty array")
        name = (<list>data)[0]
        if type(name) is not str:
            raise PacketError("event name must be a string")
        # The reserved names are 7 to 14 characters long: most names skip the lookup.
        if 7 <= PyUnicode_GET_LENGTH(name) <= 14 and name in _RESERVED:
            raise PacketError(f"event name {name!r} is reserved")
    elif kind == T_ACK or kind == T_BINARY_ACK:
        if type(data) is not list:
            raise PacketError("ack payload must be an array")
        if ack_id is None:
            raise PacketError("ack without an id")
    elif kind == T_CONNECT:
        if data is not None and type(data) is not dict:
            raise PacketError("CONNECT payload must be an object")
    elif kind == T_DISCONNECT:
        if data is not None:
            raise PacketError("DISCONNECT carries no payload")
    elif type(data) is not dict and type(data) is not str:
        raise PacketError("CONNECT_ERROR payload must be an object or a string")
    return 0


cpdef object encode(int type, str namespace="/", object data=None, object id=None):
    """Encode a packet for a WebSocket (see ``msstorm.protocol.packets.encode``)."""
    if type < 0 or type > T_BINARY_ACK:
        raise ValueError(f"unknown Socket.IO packet type {type}")
    cdef bint binary = type == T_BINARY_EVENT or type == T_BINARY_ACK
    if (type == T_EVENT or type == T_ACK) and has_binary(data):
        type += 3
        binary = True
    cdef list attachments = None
    cdef bytearray frame = bytearray(b"4")
    frame.append(_PREFIXES[type])
    if binary:
        attachments = []
        data = _deconstruct(data, attachments)
        frame += str(len(attachments)).encode()
        frame.append(b'-')
    if namespace != _ROOT:
        frame += namespace.encode()
        frame.append(b',')
    if id is not None:
        frame += str(id).encode()
    if data is not None:
        frame += _dumps(data, option=_JSON_OPTIONS)
    if binary:
        return [bytes(frame), *attachments]
    return bytes(frame)


cpdef bint has_binary(object data) except -1:
    """True when ``data`` holds bytes anywhere (in lists, tuples or dict values)."""
    t = type(data)
    if t is bytes or t is bytearray or t is memoryview:
        return True
    if t is list or t is tuple:
        for item in data:
            if has_binary(item):
                return True
    elif t is dict:
        for item in (<dict>data).values():
            if has_binary(item):
                return True
    return False


cdef object _deconstruct(object data, list attachments):
    t = type(data)
    if t is bytes or t is bytearray or t is memoryview:
        attachments.append(bytes(data))
        return {"_placeholder": True, "num": len(attachments) - 1}
    if t is list or t is tuple:
        return [_deconstruct(item, attachments) for item in data]
    if t is dict:
        return {key: _deconstruct(value, attachments) for key, value in (<dict>data).items()}
    return data


cpdef object reconstruct(object data, list attachments):
    """Put the binary attachments back where their placeholders stand."""
    t = type(data)
    if t is list:
        return [reconstruct(item, attachments) for item in <list>data]
    if t is dict:
        if (<dict>data).get("_placeholder") is True:
            num = (<dict>data).get("num")
            if type(num) is not int or not 0 <= num < len(attachments):
                raise PacketError(f"placeholder for a missing attachment: {num!r}")
            return attachments[num]
        return {key: reconstruct(value, attachments) for key, value in (<dict>data).items()}
    return data
