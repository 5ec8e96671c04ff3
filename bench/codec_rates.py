"""Socket.IO codec rates: msstorm's Cython codec, its plain-Python twin, python-socketio.

    python bench/codec_rates.py [--repeats 7] [--min-time 0.2]

One ``poke``/``pokeBack``-sized event each way, as each library is handed it:

- decode: msstorm gets the WebSocket frame as bytes with the Engine.IO ``4`` in
  front and skips it (``decode(frame, 1)``, what the server does);
  python-socketio gets the ``str`` python-engineio hands it, without the ``4``
  (``Packet(encoded_packet=...)``). The cost of turning the frame into that
  ``str`` is not counted for python-socketio.
- encode: msstorm returns the frame bytes, ``4`` included
  (``encode(EVENT, "/", data)``); python-socketio returns a ``str`` without the
  ``4`` (``Packet(EVENT, data=...).encode()``); python-engineio adds it and
  encodes to bytes later, not counted here.

Loops are ``timeit``'s (garbage collector off while timing). Every repeat runs
all three implementations back to back, so that each ratio compares numbers
taken under the same machine state; ratios are computed per repeat, then
summarised.
"""

from __future__ import annotations

import argparse
import sys
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import fmt_spread, progress, summary

DECODE_FRAME = (
    b'42["pokeBack",{"id":"c0-123456","delay":0.42,"serverTs":1764345600123.456,'
    b'"treeLeaves":8,"treeId":"t-42"}]'
)
ENCODE_DATA: list[Any] = [
    "poke",
    {
        "id": "c0-123456",
        "ts": 1764345600123.456,
        "treeLeaves": 16,
        "treeId": "t-42",
        "parentId": "AbCdEfGhIjKlMnOpQrSt",
    },
]

IMPLEMENTATIONS = ("cython", "twin", "python-socketio")


def operations() -> dict[str, dict[str, Callable[[], Any]]]:
    """The six callables, after checking that the three libraries agree on the results."""
    from socketio import packet as sio_packet

    from msstorm._fastpath import codec as cy
    from msstorm._fastpath import compiled
    from msstorm.protocol import packets as twin

    if not compiled(cy):
        raise RuntimeError("msstorm._fastpath.codec is not the compiled extension: run make build")

    frame = DECODE_FRAME
    text = DECODE_FRAME[1:].decode()
    data = ENCODE_DATA
    EVENT = twin.EVENT
    SioPacket = sio_packet.Packet
    SIO_EVENT = sio_packet.EVENT
    cy_decode, cy_encode = cy.decode, cy.encode
    py_decode, py_encode = twin.decode, twin.encode

    ops: dict[str, dict[str, Callable[[], Any]]] = {
        "decode": {
            "cython": lambda: cy_decode(frame, 1),
            "twin": lambda: py_decode(frame, 1),
            "python-socketio": lambda: SioPacket(encoded_packet=text),
        },
        "encode": {
            "cython": lambda: cy_encode(EVENT, "/", data),
            "twin": lambda: py_encode(EVENT, "/", data),
            "python-socketio": lambda: SioPacket(SIO_EVENT, data=data).encode(),
        },
    }

    # Same work: same packet out of each decoder, same frame out of each encoder.
    decoded = [ops["decode"][impl]() for impl in IMPLEMENTATIONS]
    assert decoded[0].data == decoded[1].data == decoded[2].data, decoded
    assert decoded[0].type == decoded[1].type == decoded[2].packet_type == EVENT
    encoded = [ops["encode"][impl]() for impl in IMPLEMENTATIONS]
    assert encoded[0] == encoded[1] == b"4" + encoded[2].encode(), encoded
    return ops


def measure(repeats: int, min_time: float, report: bool = True) -> dict[str, Any]:
    """ops/s per implementation and operation, and the ratios, each as a summary."""
    ops = operations()
    numbers: dict[tuple[str, str], int] = {}
    for op, impls in ops.items():
        for impl, fn in impls.items():
            timer = timeit.Timer(fn)
            number, _ = timer.autorange()  # the loop count that takes >= 0.2 s
            numbers[op, impl] = max(1, int(number * min_time / 0.2))
    rates: dict[tuple[str, str], list[float]] = {key: [] for key in numbers}
    for r in range(repeats):
        # Rotate the order so that no implementation always runs first.
        order = IMPLEMENTATIONS[r % 3 :] + IMPLEMENTATIONS[: r % 3]
        for op in ops:
            for impl in order:
                number = numbers[op, impl]
                elapsed = timeit.Timer(ops[op][impl]).timeit(number)
                rates[op, impl].append(number / elapsed)
        if report:
            progress(
                f"codec repeat {r + 1}/{repeats}: "
                + ", ".join(
                    f"{op} {impl} {rates[op, impl][-1] / 1e3:,.0f}k/s"
                    for op in ops
                    for impl in IMPLEMENTATIONS
                )
            )
    result: dict[str, Any] = {"ops_per_s": {}, "ratios": {}, "loop_counts": {}}
    for op in ops:
        result["ops_per_s"][op] = {impl: summary(rates[op, impl]) for impl in IMPLEMENTATIONS}
        result["loop_counts"][op] = {impl: numbers[op, impl] for impl in IMPLEMENTATIONS}
        cy_rates = rates[op, "cython"]
        result["ratios"][op] = {
            "cython/python-socketio": summary(
                [a / b for a, b in zip(cy_rates, rates[op, "python-socketio"], strict=True)]
            ),
            "cython/twin": summary(
                [a / b for a, b in zip(cy_rates, rates[op, "twin"], strict=True)]
            ),
            "twin/python-socketio": summary(
                [
                    a / b
                    for a, b in zip(rates[op, "twin"], rates[op, "python-socketio"], strict=True)
                ]
            ),
        }
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--min-time", type=float, default=0.2, help="seconds per timed loop")
    args = p.parse_args()
    result = measure(args.repeats, args.min_time)
    for op in result["ratios"]:
        for impl, s in result["ops_per_s"][op].items():
            print(f"{op} {impl}: {fmt_spread({**s, **_k(s)}, 0)} k ops/s")
        for name, s in result["ratios"][op].items():
            print(f"{op} {name}: {fmt_spread(s)}x")
    return 0


def _k(s: dict[str, Any]) -> dict[str, Any]:
    """The same summary in thousands."""
    return {
        "median": s["median"] / 1e3,
        "min": s["min"] / 1e3,
        "max": s["max"] / 1e3,
        "samples": [v / 1e3 for v in s["samples"]],
    }


if __name__ == "__main__":
    sys.exit(main())
