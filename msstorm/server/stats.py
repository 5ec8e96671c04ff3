"""Counters an endpoint keeps about its connections and the input it refused."""

from __future__ import annotations

from collections import Counter
from typing import Any


class Stats:
    """What happened on one endpoint since it started."""

    __slots__ = (
        "connections",
        "disconnects",
        "handler_errors",
        "handshakes",
        "ignored",
        "refused",
        "trims_refused",
    )

    def __init__(self) -> None:
        self.connections = 0  # open now
        self.handshakes = 0  # opened since start
        self.disconnects: Counter[str] = Counter()  # by reason
        self.refused: Counter[str] = Counter()  # protocol errors, by kind
        self.ignored = 0  # well-formed packets that meant nothing (unknown namespace, ack...)
        self.handler_errors = 0  # exceptions raised by application handlers
        # Connections (at the handshake, then at each ping) whose picows buffers could
        # not be trimmed: picows is not the one msstorm knows (/healthz says why).
        self.trims_refused = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "connections": self.connections,
            "handshakes": self.handshakes,
            "disconnects": dict(self.disconnects),
            "refused": dict(self.refused),
            "ignored": self.ignored,
            "handler_errors": self.handler_errors,
            "trims_refused": self.trims_refused,
        }
