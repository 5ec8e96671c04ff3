"""The pending-poke table, both twins: same answers, same JSON, same refusals."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from msstorm._fastpath import rtt as rtt_py
from msstorm._fastpath import rtt_c

MODULES = [rtt_py, rtt_c]


@pytest.mark.parametrize("module", MODULES, ids=["python", "cython"])
def test_an_answer_counts_once_and_only_when_pending(module: object) -> None:
    table = module.PokeTable(3)  # type: ignore[attr-defined]
    assert table.answer(0, 1.0, 0.1) == -1.0  # never sent
    table.mark_sent(0, 10.0)
    table.mark_unsent(1)
    assert table.answer(0, 10.002, 0.5) == pytest.approx(2.0)
    assert table.answer(0, 10.003, 0.5) == -1.0  # answered already
    assert table.answer(1, 10.003, 0.5) == -1.0  # never sent
    assert table.answer(7, 10.003, 0.5) == -1.0  # no such slot
    assert table.answer(-1, 10.003, 0.5) == -1.0
    assert (table.sent, table.received, table.unsent) == (1, 1, 1)
    assert table.answered_index(0) == 0
    assert table.rtt.count == 1 and table.delay.count == 1


@pytest.mark.parametrize("module", MODULES, ids=["python", "cython"])
def test_answers_json_shapes(module: object) -> None:
    table = module.PokeTable(3)  # type: ignore[attr-defined]
    for i in range(3):
        table.mark_sent(i, 1.0)
    table.answer(2, 1.0015, -0.25)
    table.answer(0, 1.003, 0.0000001)
    pairs = orjson.loads(b"[" + table.answers_json(0, 10) + b"]")
    assert pairs == [[-0.25, 1.5], [0.0, 3.0]]
    entries = orjson.loads(
        b"[" + table.answers_json(0, 10, ["a", "b", "c"], [None, "a", "a"], [0, 1, 1]) + b"]"
    )
    assert entries == [
        {"parent": "a", "rtt": 1.5, "pingDelay": -0.25, "clientId": "c", "depth": 1},
        {"parent": -1, "rtt": 3.0, "pingDelay": 0.0, "clientId": "a", "depth": 0},
    ]
    assert table.answers_json(1, 1) == b"" and table.answers_json(5, 9) == b""


actions = st.lists(
    st.tuples(
        st.sampled_from(["sent", "unsent", "answer"]),
        st.integers(min_value=-2, max_value=40),
        st.floats(min_value=0.0, max_value=1e4),
        st.floats(min_value=-1e3, max_value=1e3),
    ),
    max_size=80,
)


@settings(max_examples=200, deadline=None)
@given(actions)
def test_twins_agree(steps: list[tuple[str, int, float, float]]) -> None:
    tables = [module.PokeTable(32) for module in MODULES]
    for action, index, now, delay in steps:
        results = []
        for table in tables:
            try:
                if action == "sent":
                    table.mark_sent(index, now)
                    results.append("ok")
                elif action == "unsent":
                    table.mark_unsent(index)
                    results.append("ok")
                else:
                    results.append(table.answer(index, now, delay))
            except IndexError:
                results.append("IndexError")
        assert results[0] == results[1]
    plain, compiled = tables
    assert (plain.sent, plain.received, plain.unsent) == (
        compiled.sent,
        compiled.received,
        compiled.unsent,
    )
    assert plain.answers_json(0, 100) == compiled.answers_json(0, 100)
    targets = [f"sid{i}" for i in range(32)]
    parents = [None] + [f"sid{i // 2}" for i in range(31)]
    depths = [min(i, 9) for i in range(32)]
    assert plain.answers_json(0, 100, targets, parents, depths) == compiled.answers_json(
        0, 100, targets, parents, depths
    )
    assert plain.rtt.summary() == compiled.rtt.summary()


@pytest.mark.parametrize("module", MODULES, ids=["python", "cython"])
def test_a_table_grows_and_keeps_what_it_holds(module: object) -> None:
    table = module.PokeTable(2)  # type: ignore[attr-defined]
    table.mark_sent(1, 1.0)
    table.answer(1, 1.001, 0.5)
    table.grow(1000)
    table.grow(10)  # never shrinks
    assert table.capacity == 1000 and not table.is_pending(999)
    table.mark_sent(999, 2.0)
    assert table.answer(999, 2.002, 0.25) == pytest.approx(2.0)
    assert table.answered_index(0) == 1 and table.answered_index(1) == 999
    assert table.received == 2
