"""``msstorm-monitor``: drive MessageStorm operations from the ``/monitor`` namespace
and report their round-trip times (tables, JSON, a PNG)."""

from .cli import amain, main
from .client import MonitorClient, MonitorError

__all__ = ["MonitorClient", "MonitorError", "amain", "main"]
