"""The swarm's message log: every Socket.IO message a process receives, one line each.

    <receive time, UNIX ms> <slot> <message as received>
    1764345600123.457 17 42["poke",{"id":"3f2a-1.0000001f","ts":1764345600123.456}]

A person can ``grep`` it; a script splits each line on its first two spaces.
Binary messages are written as ``b64:`` and their base64. Lines go to a memory
buffer written out when it holds 256 KB or once a second, so logging costs a
copy and a system call per few thousand messages (``seconds`` measures it).
"""

from __future__ import annotations

import base64
import time
from typing import IO

FLUSH_BYTES = 256 * 1024


class MessageLog:
    """A buffered, append-only log file (or nothing, for ``path=None``)."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self._file: IO[bytes] | None = open(path, "ab") if path else None  # noqa: SIM115
        self._buffer = bytearray()
        self.lines = 0
        self.bytes = 0
        self.seconds = 0.0  # CPU spent logging, as measured around each append and write

    @property
    def enabled(self) -> bool:
        return self._file is not None

    def message(self, slot: int, data: bytes) -> None:
        if self._file is None:
            return
        started = time.perf_counter()
        buffer = self._buffer
        buffer += b"%.3f %d " % (time.time() * 1000.0, slot)
        buffer += data
        buffer += b"\n"
        self.lines += 1
        if len(buffer) >= FLUSH_BYTES:
            self._write()
        self.seconds += time.perf_counter() - started

    def binary(self, slot: int, data: bytes) -> None:
        if self._file is not None:
            self.message(slot, b"b64:" + base64.b64encode(data))

    def flush(self) -> None:
        if self._file is not None and self._buffer:
            started = time.perf_counter()
            self._write()
            self.seconds += time.perf_counter() - started

    def _write(self) -> None:
        assert self._file is not None
        self._file.write(self._buffer)
        self._file.flush()
        self.bytes += len(self._buffer)
        self._buffer.clear()

    def close(self) -> None:
        self.flush()
        if self._file is not None:
            self._file.close()
            self._file = None
