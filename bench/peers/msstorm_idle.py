"""msstorm's Socket.IO server holding idle clients, through the public API only.

    python bench/peers/msstorm_idle.py --port 3000 [--ping-interval 25000]
    python bench/peers/msstorm_idle.py --port 3000 --trace-dir /tmp/x   # diagnosis

What the engine benchmark measures: ``msstorm.Server`` (namespace ``/``, no
handlers) served by ``msstorm.serve`` on one port, with ``/healthz``; what
``python -m msstorm.server.cli`` served before the CLI grew the MessageStorm
application. It uses nothing but ``msstorm.Server`` and ``msstorm.serve``, so
that moves inside the package do not break the benchmark.

``--trace-dir DIR`` runs it under tracemalloc. Each SIGUSR1 then takes a
snapshot: the first is the baseline (``DIR/traced-0.json`` says it is taken);
the second writes ``DIR/traced-1.json``: what the Python allocators
(``PyMem_*``/``PyObject_*``, picows's buffers included) hold more than at the
baseline, by allocation site, and which objects grew, by type. Diagnosis only:
tracemalloc's bookkeeping makes the process bigger and slower.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import gc
import json
import logging
import signal
import sys
import tracemalloc
from pathlib import Path
from typing import Any

import uvloop

import msstorm

FRAMES = 6


def object_census() -> collections.Counter[tuple[str, str]]:
    """(type, 'count'|'bytes') for GC-tracked objects and the untracked ones they point to."""
    # Nothing of this function's own may be in ``objects``: the set of ids, were it
    # made first, would be counted with every int in it.
    objects = gc.get_objects()
    seen = {id(obj) for obj in objects}
    census: collections.Counter[tuple[str, str]] = collections.Counter()
    extra = []
    for obj in objects:
        for ref in gc.get_referents(obj):
            if id(ref) not in seen and not gc.is_tracked(ref):
                seen.add(id(ref))
                extra.append(ref)
    for obj in (*objects, *extra):
        t = type(obj)
        name = f"{t.__module__}.{t.__qualname__}"
        census[name, "count"] += 1
        with contextlib.suppress(TypeError):
            census[name, "bytes"] += sys.getsizeof(obj)
    return census


def site(traceback: Any) -> str:
    """The innermost frame and two callers (tracemalloc lists frames oldest first)."""
    frames = list(traceback)[::-1]
    if not frames or frames[0].filename == "<unknown>":
        return "<no Python frame: allocated from C>"
    return " <- ".join(f"{Path(f.filename).name}:{f.lineno}" for f in frames[:3])


class Dumper:
    def __init__(self, out: Path) -> None:
        self.out = out
        self.count = 0

    def dump(self) -> None:
        # Census first, then the snapshot: neither holds the other's objects. The
        # baseline goes to files, so that nothing it needs stays in this process.
        gc.collect()
        census = object_census()
        snap = tracemalloc.take_snapshot()
        index = self.count
        self.count += 1
        if index == 0:
            snap.dump(str(self.out / "base.snapshot"))
            (self.out / "base.census.json").write_text(
                json.dumps([[name, kind, value] for (name, kind), value in census.items()])
            )
            del snap, census
            gc.collect()
            self._write(index, {})
            return
        base = tracemalloc.Snapshot.load(str(self.out / "base.snapshot"))
        base_census: collections.Counter[tuple[str, str]] = collections.Counter(
            {
                (name, kind): value
                for name, kind, value in json.loads((self.out / "base.census.json").read_text())
            }
        )
        ignore = [tracemalloc.Filter(False, tracemalloc.__file__)]
        stats = snap.filter_traces(ignore).compare_to(base.filter_traces(ignore), "traceback")
        growth = sum(s.size_diff for s in stats)
        by_site: collections.Counter[str] = collections.Counter()
        blocks: collections.Counter[str] = collections.Counter()
        package = str(Path(msstorm.__file__).parent)
        own = 0
        for s in stats:
            key = site(s.traceback)
            by_site[key] += s.size_diff
            blocks[key] += s.count_diff
            if any(f.filename.startswith(package) for f in s.traceback):
                own += s.size_diff
        types = []
        for (name, kind), value in census.items():
            if kind != "count":
                continue
            grew = value - base_census[name, "count"]
            if grew > 0:
                types.append(
                    {
                        "type": name,
                        "count": grew,
                        "bytes": census[name, "bytes"] - base_census[name, "bytes"],
                    }
                )
        types.sort(key=lambda t: -t["bytes"])
        report = {
            "traced_growth_bytes": growth,
            # allocations with an msstorm frame on their stack; the rest come from the
            # event loop and picows (called from C, or through picows's own Python code)
            "msstorm_frames_bytes": own,
            "sites": [
                {"site": key, "bytes": size, "count": blocks[key]}
                for key, size in by_site.most_common(15)
            ],
            "types": types[:15],
        }
        self._write(index, report)

    def _write(self, index: int, report: dict[str, Any]) -> None:
        tmp = self.out / f"traced-{index}.tmp"
        tmp.write_text(json.dumps(report))
        tmp.rename(self.out / f"traced-{index}.json")


async def run(args: argparse.Namespace) -> None:
    server = msstorm.Server(
        ping_interval=args.ping_interval,
        ping_timeout=args.ping_timeout,
        connect_timeout=args.connect_timeout,
    )
    listener = await msstorm.serve(server, host=args.host, port=args.port)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if args.trace_dir is not None:
        loop.add_signal_handler(signal.SIGUSR1, Dumper(args.trace_dir).dump)
    print(f"msstorm idle server on {args.host}:{listener.port}", flush=True)
    await stop.wait()
    listener.close()
    await listener.wait_closed()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=3000)
    p.add_argument("--ping-interval", type=int, default=25000, metavar="MS")
    p.add_argument("--ping-timeout", type=int, default=20000, metavar="MS")
    p.add_argument("--connect-timeout", type=int, default=45000, metavar="MS")
    p.add_argument("--trace-dir", type=Path, help="run under tracemalloc, snapshots on SIGUSR1")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.trace_dir is not None:
        tracemalloc.start(FRAMES)
    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(run(args))


if __name__ == "__main__":
    main()
