"""The fast paths, and the one place that picks compiled code or its plain twin.

Every module here has a plain-Python twin with the same API:

    compiled        plain twin                     what
    codec_c         msstorm.protocol.packets       Socket.IO packet encode/decode
    session_c       msstorm.protocol.session       the per-connection protocol state
    connection_c    connection                     the picows listener of a connection
    timers_c        timers                         the heartbeat timer wheel
    histogram_c     histogram                      log-linear histograms
    rtt_c           rtt                            the pending-poke table
    pokes_c         pokes                          poke frames, the fan-out loop, a tree's growth
    fanout_c        fanout                         one frame to many connections (emits to rooms)
    pokeback_c      pokeback                       the pokeBack fast path
    swarm_client_c  swarm_client                   one connection of the client swarm

The compiled ones are used unless ``MSSTORM_NO_EXTENSIONS=1``; when they are
missing that is an error that says how to build them, never a silent slowdown.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import TYPE_CHECKING

from msstorm.protocol import packets as _packets_py
from msstorm.protocol import session as _session_py

__all__ = [
    "EXTENSIONS",
    "Connection",
    "EngineSession",
    "Histogram",
    "PokeBackTap",
    "PokeFrame",
    "PokeTable",
    "Session",
    "SwarmClient",
    "TimerWheel",
    "Traffic",
    "codec",
    "compiled",
    "grow_tree",
    "poke_tree",
    "send_frame",
    "send_pokes",
    "serve_due",
]

EXTENSIONS = os.environ.get("MSSTORM_NO_EXTENSIONS", "").lower() not in ("1", "true", "yes")

_NOT_BUILT = (
    "msstorm's Cython extensions are not built: run `make build`, "
    "or set MSSTORM_NO_EXTENSIONS=1 to run the plain-Python twins"
)


def compiled(module: ModuleType) -> bool:
    """True when ``module`` was loaded from a compiled extension."""
    return (module.__file__ or "").endswith((".so", ".pyd"))


def _pick(compiled_name: str, plain: str) -> ModuleType:
    if not EXTENSIONS:
        return importlib.import_module(plain)
    try:
        module = importlib.import_module(f"{__name__}.{compiled_name}")
    except ImportError as exc:
        raise ImportError(_NOT_BUILT) from exc
    if not compiled(module):  # the *_c.py links are importable uncompiled too
        raise ImportError(_NOT_BUILT)
    return module


# The chosen modules; private names, so that importing a twin by its own name
# (``from msstorm._fastpath import timers``) always gets that twin.
codec = _pick("codec_c", _packets_py.__name__)
_session = _pick("session_c", _session_py.__name__)
_timers = _pick("timers_c", f"{__name__}.timers")
_connection = _pick("connection_c", f"{__name__}.connection")
_histogram = _pick("histogram_c", f"{__name__}.histogram")
_rtt = _pick("rtt_c", f"{__name__}.rtt")
_pokes = _pick("pokes_c", f"{__name__}.pokes")
_fanout = _pick("fanout_c", f"{__name__}.fanout")
_pokeback = _pick("pokeback_c", f"{__name__}.pokeback")
_swarm_client = _pick("swarm_client_c", f"{__name__}.swarm_client")


if TYPE_CHECKING:  # both twins have the plain one's API
    from msstorm.protocol.session import EngineSession
    from msstorm.protocol.session import SocketSession as _SocketSession
else:
    EngineSession = _session.EngineSession
    _SocketSession = _session.SocketSession


class Session(_SocketSession):
    """The Socket.IO session bound to the chosen codec."""

    __slots__ = ()
    decode = staticmethod(codec.decode)
    reconstruct = staticmethod(codec.reconstruct)


TimerWheel = _timers.TimerWheel
Connection = _connection.Connection
serve_due = _connection.serve_due
Traffic = _connection.Traffic
Histogram = _histogram.Histogram
PokeTable = _rtt.PokeTable
PokeFrame = _pokes.PokeFrame
send_pokes = _pokes.send_pokes
grow_tree = _pokes.grow_tree
poke_tree = _pokes.poke_tree
send_frame = _fanout.send_frame
SwarmClient = _swarm_client.SwarmClient
PokeBackTap = _pokeback.PokeBackTap
