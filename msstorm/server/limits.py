"""Limits a server facing the Internet puts on what one peer may hold.

``AddressLimit`` counts the open connections of each source address and
refuses one more than ``per_address``. Loopback addresses are not counted
unless asked (a local swarm opens hundreds of thousands from 127.x on purpose).
"""

from __future__ import annotations

import ipaddress
import logging
import time

log = logging.getLogger("msstorm.server")


class AddressLimit:
    """Open connections per source address, ``per_address`` at most."""

    def __init__(self, per_address: int, loopback: bool = False) -> None:
        if per_address < 1:
            raise ValueError("a limit per address is at least 1")
        self.per_address = per_address
        self.loopback = loopback
        self.counts: dict[str, int] = {}
        self.refused = 0

    def counted(self, address: str) -> bool:
        """Whether connections from ``address`` count against the limit."""
        if self.loopback or not address:
            return bool(address)
        # The forms getpeername() gives, read without ipaddress (a handshake's cost):
        # a dotted quad is loopback in 127/8 only.
        if ":" not in address and address.count(".") == 3:
            return not address.startswith("127.")
        try:
            return not ipaddress.ip_address(address).is_loopback
        except ValueError:
            return True

    def admit(self, address: str) -> bool:
        """Count one more connection from ``address``; False (and nothing counted) when
        it already holds ``per_address``."""
        held = self.counts.get(address, 0)
        if held >= self.per_address:
            self.refused += 1
            return False
        self.counts[address] = held + 1
        return True

    def release(self, address: str) -> None:
        held = self.counts.get(address, 0) - 1
        if held > 0:
            self.counts[address] = held
        else:
            self.counts.pop(address, None)


class RateLimitedLog:
    """A warning at most every ``every`` seconds, with how many were left unsaid."""

    def __init__(self, every: float = 1.0) -> None:
        self.every = every
        self._last = 0.0
        self._unsaid = 0

    def warning(self, message: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._last < self.every:
            self._unsaid += 1
            return
        if self._unsaid:
            message += f" (and {self._unsaid} more like it)"
            self._unsaid = 0
        self._last = now
        log.warning(message, *args)
