"""The heartbeat's own cost per connection, without the sockets: what grows with the clients.

    python bench/run_heartbeat.py                       # 10,000, 100,000 and 400,000
    python bench/run_heartbeat.py --conns 1000000

N joined Socket.IO connections of the chosen twins (compiled unless
``MSSTORM_NO_EXTENSIONS=1``) sit in one process's heartbeat wheel with the
default intervals (25 s, 20 s). Their frames wait in the connection (as while a
CONNECT is decided) instead of going to a socket, so the system calls, the same
for every version, are left out. Time is handed to the heartbeat by hand, one
tick of its resolution at a time over three intervals: every connection is
pinged two or three times and its pong deadline checked as often. Reported, as
CPU of this process per ping: the tick (two turns of a connection per ping:
``Heartbeat._tick``, the wheel, ``Connection.on_timer``, the session, the
ping's send), and the pong's way in (``Connection.receive`` of ``"3"``,
through the session).

It runs as well on an older tree (``PYTHONPATH=that/tree``) whose heartbeat
reads the loop's clock itself: the clock is the stand-in loop's.
Results: appended to bench/results/heartbeat.jsonl; the table is printed.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common

INTERVAL_MS, TIMEOUT_MS = 25_000, 20_000
PONG_EVERY = 16  # ticks (4 s) between two rounds of pongs: well within the timeout


class Clock:
    """The heartbeat's loop, as far as it uses one: its time, set by hand."""

    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Any, *args: Any) -> Any:
        return None  # the bench calls the tick itself


def run(conns: int, repeats: int) -> dict[str, Any]:
    import msstorm._fastpath as fastpath
    from msstorm.protocol.engineio import Config
    from msstorm.server.heartbeat import Heartbeat, resolution_for

    stats = type("Stats", (), {"ignored": 0, "trims_refused": 0})()
    app = type("App", (), {})()
    app.traffic, app.tap, app.stats = fastpath.Traffic(), None, stats
    config = Config(INTERVAL_MS, TIMEOUT_MS)
    resolution = resolution_for(INTERVAL_MS, TIMEOUT_MS)
    ticks, pongs = [], []
    for _ in range(repeats):
        clock = Clock(1000.0)
        heartbeat = Heartbeat(clock, resolution)  # type: ignore[arg-type]
        made = []
        for i in range(conns):
            conn = fastpath.Connection(app)
            conn.held = []
            # Opened over one interval, as a ramp spreads them.
            opened = clock.now + i * (INTERVAL_MS / 1000.0) / conns
            conn.session = fastpath.Session(f"s{i}", config, opened)
            conn.session.join("/", f"sid{i}")
            heartbeat.schedule(conn, conn.session.deadline)
            made.append(conn)
        outboxes = [conn.held for conn in made]
        answered = [0] * conns  # pings each has answered
        gc.collect()
        gc.freeze()  # what the heap holds is not the tick's cost
        tick_cpu = pong_cpu = 0.0
        end = clock.now + 3 * INTERVAL_MS / 1000.0
        tick = 0
        while clock.now < end:
            clock.now += resolution
            tick += 1
            started = time.process_time()
            heartbeat._tick()
            tick_cpu += time.process_time() - started
            if tick % PONG_EVERY:
                continue
            due = [i for i in range(conns) if len(outboxes[i]) > answered[i]]
            started = time.process_time()
            for i in due:
                made[i].receive(b"3", False)
            pong_cpu += time.process_time() - started
            for i in due:
                answered[i] = len(outboxes[i])
        pings = sum(answered)
        assert not any(c.closed for c in made), "a connection timed out: the bench is wrong"
        # Each ping is two turns of its connection: the ping, then its pong's deadline.
        ticks.append(tick_cpu / max(pings, 1) * 1e6)
        pongs.append(pong_cpu / max(pings, 1) * 1e6)
        common.progress(
            f"{conns:,} connections: {pings:,} pings, tick {ticks[-1]:.3f} us per ping, "
            f"{pongs[-1]:.3f} us per pong"
        )
        gc.unfreeze()
        del made, outboxes
        gc.collect()
    return {
        "conns": conns,
        "compiled": fastpath.EXTENSIONS,
        "tick_us_per_ping": common.summary(ticks),
        "pong_us": common.summary(pongs),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conns", type=int, nargs="+", default=[10_000, 100_000, 400_000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--label", default="", help="a name for this tree in the results")
    args = parser.parse_args(argv)
    context = common.context()
    rows = [run(n, args.repeats) for n in args.conns]
    common.append_jsonl("heartbeat", [{"label": args.label, **row, **context} for row in rows])
    table = common.markdown_table(
        ["connections", "tick, CPU per ping (us)", "pong, CPU each (us)"],
        [
            [
                f"{row['conns']:,}",
                common.fmt_spread(row["tick_us_per_ping"], 3),
                common.fmt_spread(row["pong_us"], 3),
            ]
            for row in rows
        ],
    )
    print(f"{args.label or os.getcwd()} at {context['git']['commit']}:\n\n{table}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
