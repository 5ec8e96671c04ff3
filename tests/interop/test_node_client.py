"""Interop tests: the real Node `socket.io-client` against the echo server.

Each test starts a fresh server (see conftest.py), runs one scenario of
node/client.mjs and compares its JSON report exactly.  Binary values appear in
those reports as {"$buffer": base64} (a Node Buffer); see ``buf``.

Validate the tests themselves against Node's socket.io server with:
    MSSTORM_INTEROP_SERVER=node python -m pytest tests/interop -q
"""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

from echokit import TRANSPORTS

ROOT = Path(__file__).resolve().parents[2]
CLIENT = ROOT / "tests" / "interop" / "node" / "client.mjs"
FAST_HEARTBEAT = {"ping_interval": 200, "ping_timeout": 200}


def buf(data: bytes) -> dict:
    """A Node Buffer, as client.mjs encodes/decodes it."""
    return {"$buffer": base64.b64encode(data).decode()}


def uint8array(data: bytes) -> dict:
    """Input only: client.mjs sends a Uint8Array (it comes back as a Buffer)."""
    return {"$uint8array": base64.b64encode(data).decode()}


def run_client(scenario: str, server, params: dict | None = None, transports: str = "") -> dict:
    params = dict(params or {})
    if transports:
        params["transports"] = TRANSPORTS[transports]
    proc = subprocess.run(
        ["node", str(CLIENT), scenario, server.url, json.dumps(params)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=15,
    )
    assert proc.returncode == 0, (
        f"client.mjs {scenario} exited {proc.returncode}\n"
        f"--- client stderr ---\n{proc.stderr}\n--- server log ---\n{server.log()}"
    )
    return json.loads(proc.stdout)


def assert_sid(value) -> None:
    assert isinstance(value, str) and len(value) >= 1, value


# --- payloads -----------------------------------------------------------------

MESSAGES = [
    ["hello"],
    [],  # no arguments at all
    [0, -1, 42, 3.14, 9007199254740991, True, False, None],
    ["", [], {}],
    [{"a": {"b": [1, "two", {"c": None, "d": [True, 2.5]}]}, "list": [[1, [2, [3]]]]}],
    ["héllo wörld", "日本語", "emoji 🚀🎉", {"ключ": "значение", "🔑": "∞"}],
    ['quotes " \\ / \n\t\r and a fake packet 42["x"]', "451-[]"],
    ["x" * 100_000],
]

PATTERN = bytes(i % 251 for i in range(70_000))  # > 64 KiB: 64-bit WebSocket length

BINARY_MESSAGES = [
    [buf(b"\x00\x01\x02\xff")],
    [
        "text",
        {
            "file": buf(bytes(range(256))),
            "meta": {"name": "a.bin", "parts": [buf(b"x"), buf(b"y")]},
        },
        7,
    ],
    [buf(b""), {"empty": buf(b"")}],
    [buf(PATTERN), [buf(b"a"), "mixed", {"deep": {"deeper": [buf(b"\xfe\xff")]}}]],
]

# Buffers come back as Buffers; a Uint8Array sent also comes back as a Buffer.
BINARY_SENT = [*BINARY_MESSAGES, [uint8array(b"\x10\x20"), {"u8": uint8array(b"\x30")}]]
BINARY_BACK = [*BINARY_MESSAGES, [buf(b"\x10\x20"), {"u8": buf(b"\x30")}]]


# --- connection ---------------------------------------------------------------


def test_connect_with_auth(echo_server, transports):
    server = echo_server(ping_interval=1500, ping_timeout=1200, max_payload=123456)
    auth_main = {"token": "abc", "n": 1, "nested": {"list": [1, "ü"]}}
    auth_custom = {"who": "custom"}
    out = run_client(
        "connect-auth",
        server,
        {"auth_main": auth_main, "auth_custom": auth_custom},
        transports=transports,
    )

    # Engine.IO OPEN packet, as the client parsed it: an upgrade is offered to polling.
    hs = out["handshake"]
    engine_sid = hs.pop("sid")
    assert_sid(engine_sid)
    upgrades = [] if transports == "websocket" else ["websocket"]
    assert hs == {
        "upgrades": upgrades,
        "pingInterval": 1500,
        "pingTimeout": 1200,
        "maxPayload": 123456,
    }
    # Each Engine.IO connection ends on the last of its transports.
    final = TRANSPORTS[transports][-1]
    assert out["main"]["transport"] == out["bare"]["transport"] == final

    # Exactly one `auth` event per socket, carrying the CONNECT payload ({} when none).
    assert out["main"]["auth"] == [[auth_main]]
    assert out["custom"]["auth"] == [[auth_custom]]
    assert out["bare"]["auth"] == [[{}]]

    ids = [out[k]["id"] for k in ("main", "custom", "bare")]
    for sid in ids:
        assert_sid(sid)
    assert len(set(ids)) == 3
    # "/custom" was multiplexed onto main's Engine.IO connection; "bare" has its own.
    assert out["main"]["engine_id"] == out["custom"]["engine_id"] == engine_sid
    assert out["bare"]["engine_id"] != engine_sid


def test_unknown_namespace_is_refused(echo_server, transports):
    out = run_client("bad-namespace", echo_server(), {"namespace": "/nope"}, transports=transports)
    assert out == {
        "error": {"message": "Invalid namespace", "data": None},
        "bad_connected": False,
        "bad_active": False,
        # the refusal must not break the connection it was multiplexed on
        "main_connected": True,
        "main_echo": ["after refusal"],
    }


# --- events and acks ----------------------------------------------------------


def test_events_round_trip(echo_server, transports):
    out = run_client("events", echo_server(), {"messages": MESSAGES}, transports=transports)
    assert out == {"received": MESSAGES}


def test_ack_client_to_server(echo_server, transports):
    out = run_client("ack", echo_server(), {"messages": MESSAGES}, transports=transports)
    assert out == {"acks": MESSAGES}


def test_ack_server_to_client(echo_server, transports):
    args = ["what is", {"n": 42}, "日本"]
    reply = ["answer", [1, 2, 3], {"ok": True}]
    out = run_client(
        "server-ack", echo_server(), {"args": args, "reply": reply}, transports=transports
    )
    assert out == {"question": [{"args": args, "ack_is_function": True}], "answer": [reply]}


# --- binary -------------------------------------------------------------------


def test_binary_events_round_trip(echo_server, transports):
    out = run_client("events", echo_server(), {"messages": BINARY_SENT}, transports=transports)
    assert out == {"received": BINARY_BACK}


def test_binary_ack_client_to_server(echo_server, transports):
    out = run_client("ack", echo_server(), {"messages": BINARY_SENT}, transports=transports)
    assert out == {"acks": BINARY_BACK}


def test_binary_ack_server_to_client(echo_server, transports):
    args = ["bin", buf(b"\x00question\xff"), {"two": [buf(b"1"), buf(b"2")]}]
    reply = [buf(PATTERN), {"more": buf(b"\x00")}, "done"]
    out = run_client(
        "server-ack", echo_server(), {"args": args, "reply": reply}, transports=transports
    )
    assert out == {"question": [{"args": args, "ack_is_function": True}], "answer": [reply]}


# --- disconnection ------------------------------------------------------------


def test_server_side_disconnect(echo_server, transports):
    out = run_client("server-disconnect", echo_server(), transports=transports)
    assert_sid(out["a_id"])
    assert out == {
        "a_id": out["a_id"],
        "a_disconnect": ["io server disconnect"],
        "gone": [[out["a_id"], "server namespace disconnect"]],
        "b_echo": ["still here"],
    }


def test_client_side_disconnect(echo_server, transports):
    out = run_client("client-disconnect", echo_server(), transports=transports)
    assert_sid(out["a_id"])
    assert out == {
        "a_id": out["a_id"],
        "a_disconnect": ["io client disconnect"],
        "gone": [[out["a_id"], "client namespace disconnect"]],
        "b_echo": ["still here"],
    }


# --- heartbeat ----------------------------------------------------------------


def test_heartbeat_keeps_idle_client_alive(echo_server, transports):
    out = run_client(
        "heartbeat", echo_server(**FAST_HEARTBEAT), {"pings": 6}, transports=transports
    )
    assert out == {"disconnects": [], "pings": 6, "echo": ["awake"]}


def test_client_not_answering_pings_is_closed(echo_server, transports):
    out = run_client("ping-timeout", echo_server(**FAST_HEARTBEAT), transports=transports)
    assert_sid(out["a_id"])
    assert out == {
        "a_id": out["a_id"],
        # the server closes the connection; the client sees it as a transport close
        "a_disconnect": ["transport close"],
        "gone": [[out["a_id"], "ping timeout"]],
        "b_echo": ["still here"],
    }
