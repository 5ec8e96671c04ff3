"""msstorm: a Socket.IO v5 server and load-experiment kit built to hold a million clients."""

from msstorm import exceptions
from msstorm.app import AsyncNamespace, AsyncServer, run, serve
from msstorm.protocol.errors import ConnectionRefused, MsstormError, ProtocolError
from msstorm.server import EngineServer, Listener, Server

__version__ = "0.1.0"

__all__ = [
    "AsyncNamespace",
    "AsyncServer",
    "ConnectionRefused",
    "EngineServer",
    "Listener",
    "MsstormError",
    "ProtocolError",
    "Server",
    "__version__",
    "exceptions",
    "run",
    "serve",
]
