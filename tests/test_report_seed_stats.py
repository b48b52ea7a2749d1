"""`suite.seeds.exact_mean` / `exact_stdev` (the report's across-seed aggregates) against the
standard library's exact `statistics.mean` / `statistics.stdev`: equal bit for bit, including the
values that defeat a naive float sum (cancellation, subnormals, huge magnitudes)."""

from __future__ import annotations

import math
import random
import statistics

import pytest

from suite.seeds import exact_mean, exact_stdev, spread


def _samples() -> list[list[float]]:
    rng = random.Random(23)
    out: list[list[float]] = [[0.03, 0.98, 0.26], [1e16, 1.0, -1e16], [5e-324, 1e-320, 0.1], [0.1] * 5,
                              [1.7e308, 1.7e308, 1.6e308], [-0.0, 0.0], [0.2, 0.2, 0.1, 0.2, 0.3]]
    for index in range(4000):
        n = rng.randint(2, 8)
        if index % 3 == 0:
            out.append([rng.random() for _ in range(n)])
        elif index % 3 == 1:
            out.append([rng.uniform(-1, 1) * 10.0 ** rng.randint(-300, 300) for _ in range(n)])
        else:
            out.append([round(rng.random(), 2) for _ in range(n)])  # ties and repeats
    return out


@pytest.mark.parametrize("chunk", range(4))
def test_exact_aggregates_equal_statistics_bit_for_bit(chunk: int) -> None:
    samples = _samples()[chunk::4]
    for values in samples:
        assert exact_mean(values) == statistics.mean(values), values
        assert exact_stdev(values) == statistics.stdev(values), values
        assert exact_mean(values[:1]) == values[0]


def test_non_finite_and_non_float_values_fall_back_to_statistics() -> None:
    assert exact_mean([1, 2, 4]) == statistics.mean([1, 2, 4])
    assert math.isinf(exact_mean([1.0, math.inf]))
    with pytest.raises(statistics.StatisticsError):
        exact_mean([])
    with pytest.raises(statistics.StatisticsError):
        exact_stdev([1.0])


def test_spread_reports_the_exact_aggregates() -> None:
    stat = spread([0.03, None, 0.98, math.nan, 0.26])
    assert stat is not None and stat.n == 3
    assert stat.mean == statistics.mean([0.03, 0.98, 0.26])
    assert stat.std == statistics.stdev([0.03, 0.98, 0.26]) == 0.4956140971898734
    assert (stat.low, stat.high) == (0.03, 0.98)
