"""The swarm's message log: one parseable line per message, written in batches."""

from __future__ import annotations

from pathlib import Path

from msstorm.swarm import messagelog
from msstorm.swarm.messagelog import MessageLog


def test_lines_are_greppable_and_parseable(tmp_path: Path) -> None:
    path = tmp_path / "swarm.0.log"
    log = MessageLog(str(path))
    log.message(17, b'42["poke",{"id":"a.0000001f","ts":1.5}]')
    log.binary(3, b"\x00\x01")
    assert path.read_bytes() == b""  # still in the buffer
    log.close()
    lines = path.read_bytes().splitlines()
    when, slot, message = lines[0].split(b" ", 2)
    assert float(when) > 1.7e12 and slot == b"17"
    assert message == b'42["poke",{"id":"a.0000001f","ts":1.5}]'
    assert lines[1].split(b" ", 2)[2] == b"b64:AAE="
    assert (log.lines, log.bytes) == (2, len(path.read_bytes()))


def test_big_buffers_are_written_out(tmp_path: Path, monkeypatch: object) -> None:
    path = tmp_path / "swarm.1.log"
    log = MessageLog(str(path))
    for i in range(20_000):
        log.message(i, b'42["poke",{"id":"x","ts":1}]')
    assert path.stat().st_size >= messagelog.FLUSH_BYTES
    log.close()
    assert len(path.read_bytes().splitlines()) == 20_000


def test_no_log() -> None:
    log = MessageLog(None)
    log.message(1, b"42[]")
    log.close()
    assert not log.enabled and log.lines == 0
