"""The progress of a running operation on stderr.

On a terminal, a bar redrawn in place: answers received / expected, lost,
rate, elapsed. Elsewhere (a pipe, a log file, ``--json``) no bar: one line per
finished operation only.
"""

from __future__ import annotations

import shutil
import time
from typing import Any, TextIO

from .results import OpResult

CLEAR = "\r\x1b[K"


class Progress:
    def __init__(self, stream: TextIO, bar: bool) -> None:
        self.stream = stream
        self.bar = bar
        self.prefix = ""
        self.expected = 0
        self.started = time.monotonic()
        self.drawn = False
        self.last = (0, 0.0)  # answers received and seconds elapsed at the last redraw

    def start(self, prefix: str, ack: dict[str, Any]) -> None:
        """An operation was accepted: ``prefix`` names it, ``ack`` is initiatePoke's answer."""
        self.prefix = f"{prefix} {ack['op']}"
        self.expected = int(ack.get("expected", 0))
        self.started = time.monotonic()
        self.last = (0, 0.0)
        self.update({"summary": {"expected": self.expected, "received": 0, "lost": 0}})

    def update(self, status: dict[str, Any]) -> None:
        """A summary status arrived: redraw the bar."""
        if not self.bar:
            return
        summary = status.get("summary") or {}
        self.stream.write(CLEAR + self.line(summary))
        self.stream.flush()
        self.drawn = True

    def line(self, summary: dict[str, Any]) -> str:
        expected = int(summary.get("expected", self.expected)) or 1
        received = int(summary.get("received", 0))
        lost = int(summary.get("lost", 0))
        elapsed_ms = summary.get("elapsedMs")
        elapsed = (
            float(elapsed_ms) / 1000.0
            if elapsed_ms is not None
            else time.monotonic() - self.started
        )
        # The rate since the last redraw: it falls to 0/s while stragglers are awaited.
        last_received, last_elapsed = self.last
        if elapsed > last_elapsed:
            rate = (received - last_received) / (elapsed - last_elapsed)
        else:
            rate = received / elapsed if elapsed > 0 else 0.0
        self.last = (received, elapsed)
        fraction = min(1.0, received / expected)
        text = (
            f" {received}/{expected} {fraction:6.1%}"
            + (f"  lost {lost}" if lost else "")
            + f"  {rate:,.0f}/s  {elapsed:.1f}s"
        )
        width = shutil.get_terminal_size((80, 24)).columns - 1
        # A bar of steady width: room for the numbers at their widest is kept.
        room = min(40, width - len(self.prefix) - 3 - max(len(text), 2 * len(str(expected)) + 40))
        if room >= 10:
            filled = round(fraction * room)
            bar = " [" + "#" * filled + "-" * (room - filled) + "]"
        else:
            bar = ""
        return (self.prefix + bar + text)[:width]

    def finish(self, prefix: str, result: OpResult) -> None:
        """The operation ended: replace the bar with a line that says how."""
        if self.drawn:
            self.stream.write(CLEAR)
            self.drawn = False
        self.stream.write(finished_line(prefix, result) + "\n")
        self.stream.flush()

    def clear(self) -> None:
        if self.drawn:
            self.stream.write(CLEAR)
            self.stream.flush()
            self.drawn = False


def finished_line(prefix: str, result: OpResult) -> str:
    rtt = result.summary.get("rtt") or {}
    elapsed = result.summary.get("elapsedMs")
    parts = [
        f"{prefix} {result.op}: {result.received}/{result.expected} answers",
        f"{result.missing} lost" if result.state != "gave up" else f"{result.missing} missing",
    ]
    if elapsed is not None:
        parts.append(f"{float(elapsed):.3f} ms")
    if rtt.get("p50") is not None:
        parts.append(f"rtt p50 {rtt['p50']:.3f} ms, p99 {rtt['p99']:.3f} ms")
    line = ", ".join(parts)
    if result.state == "timed out":
        line += " (TIMED OUT on the server)"
    elif result.state == "gave up":
        line += " (GAVE UP waiting: --timeout passed)"
    return line
