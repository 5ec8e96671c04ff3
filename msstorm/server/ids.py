"""Session and socket ids.

Ids are 20 characters of URL-safe base64, like Node's, drawn from the kernel's
random source in batches so that a swarm of handshakes costs one system call
per thousand ids.
"""

from __future__ import annotations

import base64
import os

_ID_BYTES = 15  # 20 base64 characters, no padding
_BATCH = 1024

_pool = b""
_offset = 0


def new_sid() -> str:
    """A fresh random id."""
    global _pool, _offset
    if _offset + _ID_BYTES > len(_pool):
        _pool = os.urandom(_ID_BYTES * _BATCH)
        _offset = 0
    chunk = _pool[_offset : _offset + _ID_BYTES]
    _offset += _ID_BYTES
    return base64.urlsafe_b64encode(chunk).decode("ascii")
