"""The fast paths, and the one place that picks compiled code or its plain twin.

Every module here has a plain-Python twin with the same API. The compiled ones
are used unless ``MSSTORM_NO_EXTENSIONS=1``; when they are missing that is an
error that says how to build them, never a silent slowdown.
"""

from __future__ import annotations

import os
from types import ModuleType

from msstorm.protocol import packets as _packets_py
from msstorm.protocol.session import SocketSession

from . import connection as _connection_py
from . import timers as _timers_py

__all__ = ["EXTENSIONS", "Connection", "Session", "TimerWheel", "codec", "compiled", "timers"]

EXTENSIONS = os.environ.get("MSSTORM_NO_EXTENSIONS", "").lower() not in ("1", "true", "yes")


def compiled(module: ModuleType) -> bool:
    """True when ``module`` was loaded from a compiled extension."""
    return (module.__file__ or "").endswith((".so", ".pyd"))


_NOT_BUILT = (
    "msstorm's Cython extensions are not built: run `make build`, "
    "or set MSSTORM_NO_EXTENSIONS=1 to run the plain-Python twins"
)

codec: ModuleType
timers: ModuleType
connection: ModuleType
if EXTENSIONS:
    try:
        from . import codec
        from . import connection_c as connection
        from . import timers_c as timers
    except ImportError as exc:
        raise ImportError(_NOT_BUILT) from exc
    # The *_c.py links are importable uncompiled too: make sure they were built.
    if not (compiled(timers) and compiled(connection)):
        raise ImportError(_NOT_BUILT)
else:
    codec, timers, connection = _packets_py, _timers_py, _connection_py


class Session(SocketSession):
    """The Socket.IO session bound to the chosen codec."""

    __slots__ = ()
    decode = staticmethod(codec.decode)
    reconstruct = staticmethod(codec.reconstruct)


TimerWheel = timers.TimerWheel
Connection = connection.Connection
