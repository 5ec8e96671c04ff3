"""The application layer: python-socketio's ``AsyncServer`` API on msstorm's engine,
served in one process (``serve``) or over workers and nodes (``run``)."""

from .namespace import AsyncNamespace
from .run import run, serve
from .server import AsyncServer

__all__ = ["AsyncNamespace", "AsyncServer", "run", "serve"]
