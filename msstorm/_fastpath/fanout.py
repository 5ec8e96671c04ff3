"""One encoded frame to many connections: the fan-out of an emit to a room.

An emit to a room, to several rooms or to a whole namespace encodes its packet
once; ``send_frame`` then hands the same bytes to each recipient. The compiled
twin (``fanout_c.pyx``) copies the frame once into a buffer with room in front
for the WebSocket header and has picows write every recipient's frame from it,
with no Python call per recipient; a recipient that is not a plain open
WebSocket (long-polling, a CONNECT still being decided, a full send buffer)
takes its connection's own ``send_text``/``send_binary``, as here.

This is the plain-Python twin of ``fanout_c.pyx``: the same frames reach the
same connections, and the same count comes back.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def send_frame(
    frame: bytes, conns: Sequence[Any], start: int, stop: int, binary: bool = False
) -> int:
    """Send ``frame`` (binary when ``binary``) to ``conns[start:stop]``, skipping the
    closed ones; returns how many it was handed to."""
    sent = 0
    for i in range(start, stop):
        conn = conns[i]
        if conn.closed:
            continue
        if binary:
            conn.send_binary(frame)
        else:
            conn.send_text(frame)
        sent += 1
    return sent
