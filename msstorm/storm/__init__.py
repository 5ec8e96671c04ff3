"""The MessageStorm application: pokes, operations, the monitor namespace."""

from .app import Storm
from .operations import Operation

__all__ = ["Operation", "Storm"]
