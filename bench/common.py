"""What every benchmark shares: statistics, /proc readings, the run's context, result files.

Results go to ``bench/results/<name>.jsonl`` (appended, one JSON object per figure)
and ``bench/results/<name>.md`` (overwritten: the table a README can quote).
Each object says what was measured, how often, on which commit and machine.
"""

from __future__ import annotations

import contextlib
import datetime
import importlib.metadata
import json
import os
import platform
import resource
import secrets
import shlex
import statistics
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"

PACKAGES = (
    "picows",
    "uvloop",
    "orjson",
    "python-socketio",
    "python-engineio",
    "aiohttp",
    "Cython",
    "aiofastnet",
)


# -- statistics ---------------------------------------------------------------


def summary(samples: Sequence[float]) -> dict[str, Any]:
    """Median, spread (min..max, and half of it relative to the median) and the samples."""
    values = [float(v) for v in samples]
    if not values:
        return {"median": None, "min": None, "max": None, "spread_pct": None, "samples": []}
    med = statistics.median(values)
    lo, hi = min(values), max(values)
    return {
        "median": med,
        "min": lo,
        "max": hi,
        # +- this much around the median covers every sample
        "spread_pct": (max(hi - med, med - lo) / abs(med) * 100.0) if med else None,
        "samples": values,
    }


def fmt_spread(s: dict[str, Any], digits: int = 2) -> str:
    """``1.23 (1.20..1.31, n=3)``."""
    if s.get("median") is None:
        return "n/a"
    n = len(s["samples"])
    if n == 1:
        return f"{s['median']:.{digits}f} (n=1)"
    return f"{s['median']:.{digits}f} ({s['min']:.{digits}f}..{s['max']:.{digits}f}, n={n})"


# -- /proc --------------------------------------------------------------------


def _kb_fields(path: str, names: Iterable[str]) -> dict[str, int]:
    wanted = set(names)
    out: dict[str, int] = {}
    with open(path) as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in wanted:
                out[key] = int(rest.split()[0])  # kB
    return out


def process_memory(pid: int) -> dict[str, int]:
    """VmRSS (and its parts) from /proc/PID/status, Pss and Private_Dirty from smaps_rollup; kB."""
    mem = _kb_fields(f"/proc/{pid}/status", ("VmRSS", "RssAnon", "RssFile", "VmHWM"))
    with contextlib.suppress(OSError):  # no smaps_rollup before Linux 4.14
        mem.update(
            _kb_fields(f"/proc/{pid}/smaps_rollup", ("Pss", "Private_Dirty", "Private_Clean"))
        )
    return mem


def kernel_memory() -> dict[str, int]:
    """System-wide slab figures (kB) and TCP socket buffer pages (/proc/net/sockstat)."""
    mem = _kb_fields("/proc/meminfo", ("Slab", "SUnreclaim", "SReclaimable", "MemAvailable"))
    try:
        with open("/proc/net/sockstat") as f:
            for line in f:
                if line.startswith("TCP:"):
                    parts = line.split()
                    fields = dict(zip(parts[1::2], parts[2::2], strict=False))
                    mem["tcp_inuse"] = int(fields.get("inuse", 0))
                    mem["tcp_tw"] = int(fields.get("tw", 0))
                    mem["tcp_mem_kB"] = (
                        int(fields.get("mem", 0)) * os.sysconf("SC_PAGE_SIZE") // 1024
                    )
    except OSError:
        pass
    return mem


def process_cpu(pid: int) -> dict[str, float | None]:
    """CPU seconds a process has used, user and system: ``ticks`` from /proc/PID/stat
    (utime + stime, every thread, exited ones too, in 1/CLK_TCK steps: 10 ms here) and
    ``threads`` from each live thread's ``se.sum_exec_runtime`` (/proc/PID/task/*/sched,
    nanosecond resolution; None where the kernel does not show it)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    ticks = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    threads: float | None = 0.0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        tids = []
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/sched") as f:
                for line in f:
                    if line.startswith("se.sum_exec_runtime"):
                        threads = (threads or 0.0) + float(line.split(":")[1]) / 1000.0  # ms
                        break
                else:
                    threads = None
        except FileNotFoundError:  # a thread that ended meanwhile
            continue
        except OSError:
            threads = None
        if threads is None:
            break
    return {"ticks": ticks, "threads": threads if tids else None}


def cpu_seconds(pid: int) -> float:
    """The finest CPU reading /proc gives for ``pid`` (see ``process_cpu``)."""
    cpu = process_cpu(pid)
    return cpu["threads"] if cpu["threads"] is not None else cpu["ticks"]  # type: ignore[return-value]


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (children, their children...), from
    /proc/PID/task/*/children."""
    found: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        try:
            tids = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{parent}/task/{tid}/children") as f:
                    kids = [int(k) for k in f.read().split()]
            except OSError:
                continue
            found.extend(kids)
            todo.extend(kids)
    return found


def percentile(samples: Sequence[float], q: float) -> float | None:
    """The ``q``-quantile (0..1) of ``samples``, interpolated between closest ranks."""
    values = sorted(samples)
    if not values:
        return None
    rank = q * (len(values) - 1)
    low = int(rank)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (rank - low)


# -- context of a run -----------------------------------------------------------


def _git(*args: str, root: Path = ROOT) -> str:
    """Git's output as it printed it: leading spaces carry meaning (``git status``)."""
    try:
        return subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return ""


def changed_paths(porcelain_z: str) -> list[str]:
    """The paths ``git status --porcelain -z`` names, results files left out.

    Each entry is ``XY PATH``; a rename or copy (``R``/``C``) is followed by
    its source path as an entry of its own, which is changed too.
    """
    entries = porcelain_z.split("\0")
    paths: list[str] = []
    i = 0
    while i < len(entries):
        entry = entries[i]
        i += 1
        if len(entry) < 4:
            continue  # the empty tail after the last NUL
        paths.append(entry[3:])
        if entry[0] in "RC" and i < len(entries):
            paths.append(entries[i])
            i += 1
    return [p for p in paths if not p.startswith("bench/results/")]


def git_info(root: Path = ROOT) -> dict[str, Any]:
    """HEAD, and whether the tree differs from it (tracked changes or new files)."""
    status = _git("status", "--porcelain", "-z", "--untracked-files=all", root=root)
    changed = changed_paths(status)
    return {
        "commit": _git("rev-parse", "HEAD", root=root).strip() or None,
        "dirty": bool(changed),
        "dirty_paths": changed[:30],
    }


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def node_versions(folder: Path, packages: Iterable[str]) -> dict[str, str | None]:
    """``node --version`` and the versions of ``packages`` installed in ``folder``'s
    node_modules (what a Node peer really ran, not what its package.json asks for)."""
    out: dict[str, str | None] = {}
    try:
        out["node"] = (
            subprocess.run(
                ["node", "--version"], capture_output=True, text=True, check=True, timeout=10
            )
            .stdout.strip()
            .removeprefix("v")
        )
    except (OSError, subprocess.SubprocessError):
        out["node"] = None
    for name in packages:
        try:
            manifest = json.loads((folder / "node_modules" / name / "package.json").read_text())
            out[name] = manifest.get("version")
        except (OSError, ValueError):
            out[name] = None
    return out


def machine() -> dict[str, Any]:
    mem = _kb_fields("/proc/meminfo", ("MemTotal",))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    cpu = None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "memory_kB": mem.get("MemTotal"),
        "rlimit_nofile": [soft, hard],
        "kernel": platform.release(),
        "platform": platform.platform(),
    }


def context(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Everything a result needs to be read later: when, how, on what."""
    argv = list(sys.argv if argv is None else argv)
    return {
        "time": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": shlex.join(
            [Path(sys.executable).name, os.path.relpath(argv[0], ROOT), *argv[1:]]
        ),
        "git": git_info(),
        "versions": versions(),
        "machine": machine(),
    }


# -- result files -----------------------------------------------------------------


def append_jsonl(name: str, records: Iterable[dict[str, Any]]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.jsonl"
    with path.open("a") as f:
        for record in records:
            f.write(json.dumps(record, sort_keys=False) + "\n")
    return path


def write_text(name: str, text: str) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / name
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return path


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(str(cell) for cell in row) + " |")
    return "\n".join(lines)


def token() -> str:
    """A monitor token for a benchmark's server: hex, never a leading "-" that a
    command-line parser would take for an option."""
    return secrets.token_hex(16)


def progress(message: str) -> None:
    """A progress line on stderr."""
    stamp = datetime.datetime.now().strftime("%H:%M:%S")
    print(f"[{stamp}] {message}", file=sys.stderr, flush=True)
