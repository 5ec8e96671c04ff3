"""The rooms of a namespace: who is in which, and who an emit reaches.

Every socket is in the room named by its sid, with no entry here: the
namespace's own table of sockets is that room, so a socket costs nothing more
until it enters another. ``members`` maps a room to its sockets (sid to
connection, so that an emit needs no second lookup per recipient); ``joined``
maps a sid to the rooms it entered, as a list: a socket is in a few rooms, and
a list of a few costs a quarter of a set. Rooms are per worker; the application
layer (``msstorm.app``) carries emits to the other workers of a cluster.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


class Rooms:
    """The rooms of one namespace, but for each socket's own."""

    __slots__ = ("joined", "members")

    def __init__(self) -> None:
        self.members: dict[str, dict[str, Any]] = {}  # room -> {sid: connection}
        self.joined: dict[str, list[str]] = {}  # sid -> the rooms it entered

    def enter(self, sid: str, conn: Any, room: str) -> None:
        members = self.members.get(room)
        if members is None:
            members = self.members[room] = {}
        elif sid in members:
            return
        members[sid] = conn
        joined = self.joined.get(sid)
        if joined is None:
            self.joined[sid] = [room]
        else:
            joined.append(room)

    def leave(self, sid: str, room: str) -> bool:
        """Take ``sid`` out of ``room``; False if it was not in it."""
        members = self.members.get(room)
        if members is None or members.pop(sid, None) is None:
            return False
        if not members:
            del self.members[room]
        joined = self.joined[sid]
        joined.remove(room)
        if not joined:
            del self.joined[sid]
        return True

    def leave_all(self, sid: str) -> list[str]:
        """Take ``sid`` out of every room it entered; those rooms."""
        joined = self.joined.pop(sid, None)
        if joined is None:
            return []
        for room in joined:
            members = self.members[room]
            del members[sid]
            if not members:
                del self.members[room]
        return joined

    def close(self, room: str) -> list[str]:
        """Empty ``room``; the sids that were in it."""
        members = self.members.pop(room, None)
        if members is None:
            return []
        for sid in members:
            joined = self.joined[sid]
            joined.remove(room)
            if not joined:
                del self.joined[sid]
        return list(members)

    def of(self, sid: str) -> list[str]:
        """The rooms ``sid`` entered (its own not included)."""
        return list(self.joined.get(sid, ()))

    def reach(
        self, sockets: dict[str, Any], rooms: Iterable[str] | None, skip: Iterable[str] = ()
    ) -> list[Any]:
        """The connections an emit to ``rooms`` reaches, each once (None: every socket
        of ``sockets``, the namespace), less the sids in ``skip``."""
        if rooms is None:
            picked = sockets
        else:
            picked = {}
            for room in rooms:
                members = self.members.get(room)
                if members is not None:
                    picked.update(members)
                own = sockets.get(room)
                if own is not None:
                    picked[room] = own
        if skip:
            if picked is sockets:
                picked = dict(sockets)
            for sid in skip:
                picked.pop(sid, None)
        return list(picked.values())
