"""msstorm: a Socket.IO v5 server and load-experiment kit built to hold a million clients."""

from msstorm.protocol.errors import ConnectionRefused, MsstormError, ProtocolError
from msstorm.server import EngineServer, Listener, Server, serve

__version__ = "0.1.0"

__all__ = [
    "ConnectionRefused",
    "EngineServer",
    "Listener",
    "MsstormError",
    "ProtocolError",
    "Server",
    "__version__",
    "serve",
]
