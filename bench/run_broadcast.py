"""Fan-out and RTT bookkeeping microbenchmarks (the figures of the operations issue).

    python bench/run_broadcast.py [--quick] [--conns 1000 10000]

For N connected clients (a real msstorm-client swarm in other processes), one
broadcast's sending loop is timed in CPU seconds per recipient, side by side in
one run and interleaved:
- ``cython``: msstorm's fan-out (``pokes_c.send_pokes``: patch id and ts in
  place, picows's send_reuse_external_buffer, no Python call per recipient);
- ``python``: its plain-Python twin over the same connections;
- ``floor``: a C loop of send() of the same frame over the same sockets.
Then a whole broadcast, from the first send to the last pokeBack decoded and
counted, in server CPU per recipient; and the cost of recording one answer in
the pending-poke table, compiled vs plain twin. Results: bench/results/broadcast.*
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pyximport
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common

import msstorm
from msstorm._fastpath import pokes as pokes_py
from msstorm._fastpath import pokes_c, rtt, rtt_c
from msstorm.storm import Storm

pyximport.install(language_level=3, build_dir=str(common.BENCH_DIR / "build"))
import floor  # noqa: E402


def thread_cpu() -> float:
    return time.clock_gettime(time.CLOCK_THREAD_CPUTIME_ID)


def ws_frame(payload: bytes) -> bytes:
    """The frame picows writes for a server text message of that payload."""
    n = len(payload)
    assert n < 65536
    header = bytes([0x81, n]) if n < 126 else bytes([0x81, 126, n >> 8, n & 255])
    return header + payload


async def swarm(url: str, conns: int) -> asyncio.subprocess.Process:
    procs = "1" if conns <= 2000 else "2"
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "msstorm.swarm.cli",
        "--url",
        url,
        "--conns",
        str(conns),
        "--procs",
        procs,
        "--no-log",
        "--json",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )


async def settle(storm: Storm, seconds: float = 0.3) -> None:
    """Let answers to the last round arrive before the next timed loop."""
    await asyncio.sleep(seconds)


async def fan_out_round(storm: Storm, conns: list[Any], fds: list[int]) -> dict[str, float]:
    n = len(conns)
    results: dict[str, float] = {}
    frame_c = pokes_c.PokeFrame("bench-c")
    table = rtt_c.PokeTable(n)
    started = thread_cpu()
    pokes_c.send_pokes(frame_c, conns, 0, n, 0, table)
    results["cython"] = (thread_cpu() - started) / n
    await settle(storm)

    frame_py = pokes_py.PokeFrame("bench-py")
    table_py = rtt.PokeTable(n)
    started = thread_cpu()
    pokes_py.send_pokes(frame_py, conns, 0, n, 0, table_py)
    results["python"] = (thread_cpu() - started) / n
    await settle(storm)

    same = ws_frame(frame_py.render(0, time.time() * 1000.0))
    started = thread_cpu()
    whole = floor.send_floor(fds, same)
    results["floor"] = (thread_cpu() - started) / n
    assert whole == n, f"the floor wrote {whole} of {n} frames whole"
    await settle(storm)
    return results


async def whole_broadcast(storm: Storm) -> float:
    """Server CPU per recipient for a complete broadcast: send, receive, decode, count."""
    started = time.process_time()
    op = await storm.begin(None, {"type": "broadcast"})
    while not op.done:
        await asyncio.sleep(0.001)
    spent = time.process_time() - started
    assert op.lost == 0, f"{op.lost} answers lost"
    return spent / op.expected


def bookkeeping(n: int) -> dict[str, float]:
    results = {}
    for name, module in (("cython", rtt_c), ("python", rtt)):
        table = module.PokeTable(n)
        for i in range(n):
            table.mark_sent(i, 1.0)
        answer = table.answer
        started = thread_cpu()
        for i in range(n):
            answer(i, 1.0005, 0.25)
        results[name] = (thread_cpu() - started) / n
    return results


async def measure(n: int, repeats: int) -> dict[str, Any]:
    server = msstorm.Server(ping_interval=60000, ping_timeout=60000)
    storm = Storm(server, token="bench", op_timeout=30)
    await storm.start()
    listener = await msstorm.serve(server, port=0, backlog=65535)
    url = f"http://127.0.0.1:{listener.port}"
    clients = await swarm(url, n)
    try:
        deadline = time.monotonic() + 120
        while len(storm.clients.members) < n:
            if time.monotonic() > deadline or clients.returncode is not None:
                raise RuntimeError(f"only {len(storm.clients.members)} of {n} clients connected")
            await asyncio.sleep(0.1)
        common.progress(f"{n:,} clients connected")
        conns = list(storm.clients.sockets.values())
        fds = [c.transport.underlying_transport.get_extra_info("socket").fileno() for c in conns]
        rounds = []
        broadcasts = []
        for i in range(repeats):
            rounds.append(await fan_out_round(storm, conns, fds))
            broadcasts.append(await whole_broadcast(storm))
            common.progress(
                f"N={n:,} round {i + 1}/{repeats}: "
                + ", ".join(f"{k} {v * 1e6:.2f} us" for k, v in rounds[-1].items())
                + f", whole broadcast {broadcasts[-1] * 1e6:.2f} us/recipient"
            )
        return {"rounds": rounds, "broadcasts": broadcasts}
    finally:
        clients.send_signal(signal.SIGTERM)
        await clients.communicate()
        listener.close()
        await listener.wait_closed()


def report(results: dict[int, dict[str, Any]], books: dict[str, list[float]], ctx: dict[str, Any]):
    records = []
    rows = []
    for n, result in results.items():
        per = {
            k: common.summary([r[k] * 1e6 for r in result["rounds"]])
            for k in ("cython", "python", "floor")
        }
        ratio = common.summary([r["cython"] / r["floor"] for r in result["rounds"]])
        ratio_py = common.summary([r["python"] / r["floor"] for r in result["rounds"]])
        whole = common.summary([b * 1e6 for b in result["broadcasts"]])
        for name, value in per.items():
            records.append(
                {
                    "figure": f"fan-out CPU per recipient ({name})",
                    "conns": n,
                    "unit": "us",
                    **value,
                    **ctx,
                }
            )
        records.append({"figure": "fan-out / send floor", "conns": n, "unit": "x", **ratio, **ctx})
        records.append(
            {
                "figure": "whole broadcast server CPU per recipient",
                "conns": n,
                "unit": "us",
                **whole,
                **ctx,
            }
        )
        rows.append(
            [
                f"{n:,}",
                common.fmt_spread(per["cython"]),
                common.fmt_spread(per["python"]),
                common.fmt_spread(per["floor"]),
                common.fmt_spread(ratio),
                common.fmt_spread(ratio_py),
                common.fmt_spread(whole),
            ]
        )
    book = {k: common.summary([v * 1e9 for v in vs]) for k, vs in books.items()}
    for name, value in book.items():
        records.append(
            {"figure": f"RTT bookkeeping per answer ({name})", "unit": "ns", **value, **ctx}
        )
    common.append_jsonl("broadcast", records)
    text = [
        "# Fan-out and RTT bookkeeping",
        "",
        f"`{ctx['command']}` at `{(ctx['git']['commit'] or '')[:12]}`"
        f"{' (dirty tree)' if ctx['git']['dirty'] else ''}, {ctx['time']}, "
        f"{ctx['machine']['cores']} cores, {ctx['machine']['cpu']}.",
        "",
        "Sending loop CPU per recipient (us), median (min..max, rounds); clients in other"
        " processes:",
        "",
        common.markdown_table(
            [
                "clients",
                "cython",
                "python twin",
                "C send floor",
                "cython / floor",
                "python / floor",
                "whole broadcast (us/recipient)",
            ],
            rows,
        ),
        "",
        '"whole broadcast" is the server\'s CPU from the first send to the last pokeBack',
        "counted, divided by the recipients: it includes receiving and decoding the answers.",
        "",
        "Recording one answer in the pending-poke table (ns, call included): "
        + ", ".join(f"{k} {common.fmt_spread(v, 0)}" for k, v in book.items()),
        "",
    ]
    common.write_text("broadcast.md", "\n".join(text))
    print("\n".join(text))


async def amain(args: argparse.Namespace) -> None:
    ctx = common.context()
    results = {}
    for n in args.conns:
        results[n] = await measure(n, args.repeats)
    books: dict[str, list[float]] = {"cython": [], "python": []}
    for _ in range(args.repeats):
        for name, value in bookkeeping(200_000).items():
            books[name].append(value)
    report(results, books, ctx)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds instead of 7")
    parser.add_argument("--conns", type=int, nargs="+", default=[1000, 10000])
    args = parser.parse_args()
    args.repeats = 3 if args.quick else 7
    uvloop.run(amain(args))


if __name__ == "__main__":
    main()
