"""Reading other processes the way any local user can: /proc, without psutil."""

from __future__ import annotations

import os
from pathlib import Path


def parent_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # pid (comm) state ppid ...: comm may hold spaces and parentheses
    return int(stat.rpartition(")")[2].split()[1])


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid``, children before grandchildren."""
    parents = {int(e): parent_of(int(e)) for e in os.listdir("/proc") if e.isdigit()}
    found: list[int] = []
    below = [pid]
    while below:
        above = below.pop(0)
        children = sorted(p for p, parent in parents.items() if parent == above)
        found += children
        below += children
    return found


def cmdline(pid: int) -> bytes:
    """What ``ps`` shows every user: the arguments, NUL-separated (empty once gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def environ(pid: int) -> dict[str, str]:
    """The environment ``pid`` started with (readable by its own user only)."""
    try:
        data = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    pairs = (item.decode(errors="replace").partition("=") for item in data.split(b"\0") if item)
    return {name: value for name, _, value in pairs}
