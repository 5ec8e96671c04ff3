"""python-socketio's exception names, for applications that move to msstorm.

``msstorm.exceptions.ConnectionRefusedError`` is python-socketio's: raised by a
connect handler it refuses the connection, its first argument the message and
the next ones the data the client receives. ``TimeoutError`` is what
``AsyncServer.call`` raises when no ack comes in time.
"""

from __future__ import annotations

import builtins
from typing import Any

from msstorm.protocol.errors import ConnectionRefused, MsstormError

__all__ = ["ConnectionRefusedError", "TimeoutError"]


class ConnectionRefusedError(ConnectionRefused):
    """Refuse a connection: ``ConnectionRefusedError("message", data...)``."""

    def __init__(self, *args: Any) -> None:
        message = str(args[0]) if args else "Connection rejected by server"
        data = None if len(args) < 2 else args[1] if len(args) == 2 else list(args[1:])
        super().__init__(message, data)
        self.error_args = self.payload()


class TimeoutError(MsstormError, builtins.TimeoutError):
    """No ack came before the timeout of a ``call``."""
