"""The MessageStorm application: pokes, operations, the monitor namespace."""

from .app import Storm
from .operations import Broadcast, Operation, Tree, Unicast

__all__ = ["Broadcast", "Operation", "Storm", "Tree", "Unicast"]
