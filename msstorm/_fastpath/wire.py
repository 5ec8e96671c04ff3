"""Writing frames without growing picows's per-connection buffers.

picows copies a frame sent with ``send()`` into the connection's own write
buffer, which then keeps the size of the largest frame the connection ever
sent. ``send`` here copies the frame into one buffer shared by every connection
of the process, with room in front for the WebSocket header, and has picows
write it from there. ``trim`` gives back, once the handshake is done, what
picows keeps and we do not use, and ``lean`` gives back later what a burst made
its read buffer grow to (compiled only: see ``trim_c.pyx``). Both return False
when they could not (``refusal()`` says why); their callers count that.
``disconnection`` is what a listener's ``__await__`` returns, so that it can stand
in for its transport's disconnection future.
"""

from __future__ import annotations

from typing import Any

try:
    from msstorm._fastpath.trim_c import disconnection, lean, refusal, trim
except ImportError:  # not built: picows keeps its buffers
    _NOT_BUILT = "msstorm's Cython extensions are not built (`make build`)"

    def trim(transport: Any) -> bool:
        """Nothing can be trimmed from Python."""
        return False

    def lean(transport: Any) -> bool:
        """Nothing can be trimmed from Python."""
        return False

    def refusal() -> str | None:
        return _NOT_BUILT

    async def disconnection(transport: Any, stand_in: Any) -> None:
        """Untrimmed, the transport keeps its own future."""
        if transport is not None:
            await transport.wait_disconnected()


__all__ = [
    "HEADROOM",
    "SHARED_UP_TO",
    "disconnection",
    "lean",
    "outgoing",
    "refusal",
    "send",
    "trim",
]

HEADROOM = 14  # the largest WebSocket header (a client's, with its mask)
SHARED_UP_TO = 65536  # larger frames go through picows without a copy anyway
outgoing = bytearray(HEADROOM)  # the shared buffer (compiled callers write it themselves)


def send(transport: Any, kind: Any, frame: bytes) -> None:
    """Send one frame of ``kind`` (a picows WSMsgType)."""
    if len(frame) > SHARED_UP_TO:
        transport.send(kind, frame)
    else:
        outgoing[HEADROOM:] = frame
        transport.send_reuse_external_bytearray(kind, outgoing, HEADROOM)
