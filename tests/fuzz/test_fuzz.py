"""Every decoder of untrusted input, fuzzed by hypothesis within the test run.

Random bytes, and bytes that start like the real thing (so that the fuzz gets
past the first check), go through each target of targets.py, on both twins
where there are two: each is accepted or refused with its documented error.
A leak check runs the compiled decoders over hostile input many times and
looks at what stays allocated. ``make fuzz`` runs the same targets under
atheris, coverage-guided, for longer.
"""

from __future__ import annotations

import gc
import tracemalloc

import pytest
import targets
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Beginnings that reach past each decoder's first test.
PREFIXES = {
    "socketio_packet": [b"", b"2", b"2/ns,", b"21", b'2["e",', b"51-", b"3", b"0{", b"4"],
    "session": [b"", b"4", b"42", b'42["e",', b"451-[", b"40", b"41", b"3", b"\x00"],
    "http_requests": [
        b"",
        b"GET / HTTP/1.1\r\n",
        b"POST /socket.io/?EIO=4&transport=polling&sid=x HTTP/1.1\r\nContent-Length: 5\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET ",
    ],
    "polling_payload": [b"", b"4", b"b", b"4a\x1e", b"b AQ==\x1e"],
    "handshake_query": [b"GET ", b"POST ", b"GET EIO=4&transport=", b"GET EIO=4&sid="],
    "pokeback_frame": [b'42["pokeBack",{"id":"op.0000000', b'{"id":"op.00000001","delay":'],
    "bus_message": [b"", b'{"t":', b'{"t":"x"}\x00', b"[1]\x00"],
    "packed_histogram": [b"", b"\x01" * 32, b"\x00" * 36],
}
TWINS = ["python", "cython"]


def fuzzed(name: str) -> st.SearchStrategy[bytes]:
    prefix = st.sampled_from(PREFIXES[name])
    return st.binary(max_size=300) | st.builds(lambda p, b: p + b, prefix, st.binary(max_size=200))


@pytest.mark.parametrize("twin", TWINS)
@SETTINGS
@given(data=fuzzed("socketio_packet"))
def test_socketio_packet(twin: str, data: bytes) -> None:
    targets.socketio_packet(data, twin)


@pytest.mark.parametrize("twin", TWINS)
@SETTINGS
@given(data=fuzzed("session"))
def test_session(twin: str, data: bytes) -> None:
    targets.session(data, twin)


@pytest.mark.parametrize("twin", TWINS)
@SETTINGS
@given(data=fuzzed("pokeback_frame"))
def test_pokeback_frame(twin: str, data: bytes) -> None:
    targets.pokeback_frame(data, twin)


@pytest.mark.parametrize("twin", TWINS)
@SETTINGS
@given(data=fuzzed("packed_histogram"))
def test_packed_histogram(twin: str, data: bytes) -> None:
    targets.packed_histogram(data, twin)


@pytest.mark.parametrize(
    "name", ["http_requests", "polling_payload", "handshake_query", "bus_message"]
)
@SETTINGS
@given(data=st.data())
def test_single_decoders(name: str, data: st.DataObject) -> None:
    targets.TARGETS[name](data.draw(fuzzed(name)))


HOSTILE = [
    b'42["message","\xff\xfe"]',
    b"42" + b"[" * 600 + b"]" * 600,
    b'451-["m",{"_placeholder":true,"num":7}]',
    b'4299999999999999999["x"]',
    b'42["message",1e999]',
    b'42["pokeBack",{"id":"op.00000001","delay":"x","serverTs":1}]',
    b'42["pokeBack",{"id":"op.00000009","delay":1,"serverTs":1,"treeLeaves":1e30}]',
]


def test_hostile_input_leaves_nothing_behind() -> None:
    """The compiled decoders, over and over on what they refuse: memory stays put."""

    def round_of_abuse() -> None:
        for frame in HOSTILE:
            targets.socketio_packet(frame[1:])
            targets.session(frame)
            targets.pokeback_frame(frame)
            targets.polling_payload(frame)

    for _ in range(200):  # warm up caches, interned strings, free lists
        round_of_abuse()
    gc.collect()
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        for _ in range(3000):
            round_of_abuse()
        gc.collect()
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert after - before < 64 * 1024, f"{after - before} bytes stayed allocated"
