"""Passing a connection to the worker of this node that owns its session.

The workers of a node share their port (SO_REUSEPORT) and the kernel gives each
new TCP connection to any of them. A request that names an existing Engine.IO
session (a long-polling GET or POST, or the WebSocket of an upgrade) must reach
the worker that holds it: a sid starts with its worker's tag, so the worker
that received the request sends the socket itself there (``SCM_RIGHTS`` over a
Unix datagram socket, with the bytes already read), and the owner serves it as
if it had accepted it. No proxying, no sticky load balancer, nothing per
request once the connection has moved.

Every worker binds ``<directory>/<tag>.sock``; the supervisor makes the
directory. A handoff that cannot be made (the owner gone, its queue full) is
answered ``503`` by the caller.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable

log = logging.getLogger("msstorm.server")

# The most a handoff carries: the request read so far (its head, part of a body).
MAX_CARRIED = 200_000


class Handoff:
    """This worker's end: it sends connections to peers and adopts theirs."""

    def __init__(self, directory: str, tag: str, adopt: Callable[[socket.socket, bytes], None]):
        self.directory = directory
        self.tag = tag
        self.adopt = adopt
        self.sent = 0
        self.received = 0
        self.failed = 0
        self._socket: socket.socket | None = None

    def path(self, tag: str) -> str:
        return os.path.join(self.directory, f"{tag}.sock")

    def start(self) -> None:
        path = self.path(self.tag)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # a previous life of this worker
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * MAX_CARRIED)
        sock.bind(path)
        sock.setblocking(False)
        self._socket = sock
        asyncio.get_running_loop().add_reader(sock.fileno(), self._receive)

    def close(self) -> None:
        sock, self._socket = self._socket, None
        if sock is not None:
            asyncio.get_running_loop().remove_reader(sock.fileno())
            sock.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path(self.tag))

    def owner_elsewhere(self, sid: str) -> str | None:
        """The tag of the other worker of this node that owns ``sid``, if it is one."""
        owner = sid[: len(self.tag)]
        if owner == self.tag or owner[:2] != self.tag[:2] or len(owner) != len(self.tag):
            return None
        return owner

    def send(self, owner: str, fd: int, carried: bytes) -> bool:
        """Send the connection on ``fd`` (and what was read of it) to ``owner``."""
        sock = self._socket
        if sock is None or len(carried) > MAX_CARRIED:
            self.failed += 1
            return False
        fds = array.array("i", [fd])
        try:
            sock.sendmsg(
                [carried], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)], 0, self.path(owner)
            )
        except OSError as exc:  # gone, or its queue is full
            self.failed += 1
            log.warning("could not hand a connection to worker %s: %s", owner, exc)
            return False
        self.sent += 1
        return True

    def _receive(self) -> None:
        sock = self._socket
        while sock is not None:
            try:
                data, ancillary, _, _ = sock.recvmsg(MAX_CARRIED, socket.CMSG_SPACE(4))
            except (BlockingIOError, InterruptedError):
                return
            fds = array.array("i")
            for level, kind, payload in ancillary:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
            for extra in fds[1:]:  # one is all a handoff carries
                os.close(extra)
            if fds:
                self.received += 1
                self.adopt(socket.socket(fileno=fds[0]), data)
