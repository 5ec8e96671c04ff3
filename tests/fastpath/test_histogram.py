"""Log-linear histograms, both twins: percentiles within 1% of the exact ones."""

from __future__ import annotations

import math
import random
from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from msstorm._fastpath import histogram as histogram_py
from msstorm._fastpath import histogram_c


@pytest.fixture(params=[histogram_py, histogram_c], ids=["python", "cython"])
def module(request: pytest.FixtureRequest) -> ModuleType:
    return request.param  # type: ignore[no-any-return]


def exact(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(fraction * len(ordered))))
    return ordered[rank - 1]


def close_enough(estimate: float, truth: float) -> bool:
    # 1% relative, with a floor of a nanosecond for values around zero
    return abs(estimate - truth) <= 0.01 * abs(truth) + 1e-6


@pytest.mark.parametrize("shape", ["lognormal", "uniform", "bimodal", "with-negatives"])
def test_percentiles_within_one_percent(module: ModuleType, shape: str) -> None:
    rng = random.Random(shape)
    if shape == "lognormal":
        values = [rng.lognormvariate(-1.5, 1.2) for _ in range(200_000)]
    elif shape == "uniform":
        values = [rng.uniform(0.01, 50.0) for _ in range(100_000)]
    elif shape == "bimodal":
        values = [rng.gauss(0.2, 0.02) for _ in range(50_000)]
        values += [rng.gauss(80.0, 5.0) for _ in range(5_000)]
    else:
        values = [rng.gauss(0.0, 3.0) for _ in range(100_000)]
    histogram = module.Histogram()
    for value in values:
        histogram.record(value)
    for fraction in (0.0, 0.001, 0.25, 0.5, 0.9, 0.99, 0.999, 1.0):
        assert close_enough(histogram.percentile(fraction), exact(values, fraction)), fraction
    summary = histogram.summary()
    assert summary["min"] == round(min(values), 3) and summary["max"] == round(max(values), 3)
    assert summary["mean"] == pytest.approx(sum(values) / len(values), abs=1e-3)
    assert histogram.count == len(values)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=-5e3, max_value=5e5), min_size=1, max_size=300))
def test_twins_agree_and_stay_within_one_percent(values: list[float]) -> None:
    plain, compiled = histogram_py.Histogram(), histogram_c.Histogram()
    for value in values:
        plain.record(value)
        compiled.record(value)
    assert plain.summary() == compiled.summary()
    for fraction in (0.5, 0.9, 0.99):
        assert plain.percentile(fraction) == compiled.percentile(fraction)
        assert close_enough(compiled.percentile(fraction), exact(values, fraction))


def test_merge_is_the_same_as_recording_all(module: ModuleType) -> None:
    rng = random.Random(7)
    a_values = [rng.expovariate(2.0) for _ in range(5000)]
    b_values = [rng.expovariate(0.5) - 1.0 for _ in range(5000)]
    a, b, both = module.Histogram(), module.Histogram(), module.Histogram()
    for v in a_values:
        a.record(v)
        both.record(v)
    for v in b_values:
        b.record(v)
        both.record(v)
    a.merge(b)
    assert a.summary() == both.summary()


def test_empty_histogram(module: ModuleType) -> None:
    histogram = module.Histogram()
    assert histogram.percentile(0.5) == 0.0
    assert set(histogram.summary().values()) == {None}


def test_values_beyond_the_range_are_kept_at_the_top(module: ModuleType) -> None:
    histogram = module.Histogram()
    histogram.record(1e9)  # eleven days in ms: past the last bucket
    histogram.record(1.0)
    assert histogram.percentile(1.0) == 1e9  # clamped to the exact maximum
    assert histogram.percentile(0.5) == pytest.approx(1.0, rel=0.01)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(min_value=-1e4, max_value=1e7), max_size=200))
def test_histograms_travel_as_bytes(values: list[float]) -> None:
    plain, compiled = histogram_py.Histogram(), histogram_c.Histogram()
    for value in values:
        plain.record(value)
        compiled.record(value)
    assert plain.to_bytes() == compiled.to_bytes()
    for module in (histogram_py, histogram_c):
        back = module.Histogram.from_bytes(plain.to_bytes())
        assert back.summary() == plain.summary() and back.count == plain.count


def test_garbage_is_not_a_histogram(module: ModuleType) -> None:
    with pytest.raises(ValueError):
        module.Histogram.from_bytes(b"\x00" * 7)
    packed = histogram_py.pack(1, 1.0, 1.0, 1.0, [(10**6, 1)])
    with pytest.raises(ValueError):
        module.Histogram.from_bytes(packed)
