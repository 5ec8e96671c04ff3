"""The server layer: picows connections, endpoints, the listening port."""

from .engineio_server import EngineServer
from .listen import Listener, serve
from .socketio_server import Namespace, Server

__all__ = ["EngineServer", "Listener", "Namespace", "Server", "serve"]
