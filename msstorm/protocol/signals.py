"""What a session answers with besides an event for the application.

Kept apart from ``session.py`` because that file is compiled a second time as
``msstorm._fastpath.session_c``: both twins must hand back these very objects.
"""

from __future__ import annotations

from typing import Final

__all__ = ["IGNORED", "PEER_CLOSED"]


class _Signal:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


PEER_CLOSED: Final = _Signal("PEER_CLOSED")
IGNORED: Final = _Signal("IGNORED")
