"""Fixtures shared by every test layer."""

from __future__ import annotations

from types import ModuleType

import pytest

from msstorm import _fastpath
from msstorm._fastpath import timers as timers_py
from msstorm.protocol import packets as packets_py
from msstorm.protocol.session import SocketSession


def _compiled_codec() -> ModuleType:
    from msstorm._fastpath import codec_c

    return codec_c


def _compiled_timers() -> ModuleType:
    from msstorm._fastpath import timers_c

    return timers_c


# Every fast path is tested twice: the compiled module and its plain twin.
@pytest.fixture(params=["python", "cython"])
def codec(request: pytest.FixtureRequest) -> ModuleType:
    return packets_py if request.param == "python" else _compiled_codec()


@pytest.fixture(params=["python", "cython"])
def timers(request: pytest.FixtureRequest) -> ModuleType:
    return timers_py if request.param == "python" else _compiled_timers()


@pytest.fixture(params=["python", "cython"])
def session_class(request: pytest.FixtureRequest) -> type[SocketSession]:
    return SocketSession if request.param == "python" else _fastpath.Session
