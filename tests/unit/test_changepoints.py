"""Change points on synthetic release histories with planted steps."""

from __future__ import annotations

import numpy as np
import pytest

from servingperf.analysis.changepoints import MAX_HISTORY, Direction, change_points
from servingperf.model.metrics import metric

TPOT = metric("tpot_s")
THROUGHPUT = metric("output_throughput_tps")


def noisy(seed: int, n: int, cv: float = 0.02, level: float = 1.0) -> np.ndarray:
    return level * np.random.default_rng(seed).lognormal(0.0, cv, n)


def test_single_step_found_where_planted() -> None:
    x = noisy(1, 16)
    x[9:] *= 1.20
    (cp,) = change_points(list(x), TPOT, labels=[f"2.{i}.0" for i in range(16)])
    assert cp.index == 9
    assert cp.label == "2.9.0"
    assert cp.p_value <= 0.01
    assert cp.magnitude == pytest.approx(x[9:].mean() / x[:9].mean() - 1)
    assert cp.mean_before == pytest.approx(x[:9].mean())
    assert cp.direction is Direction.BAD  # latency went up


def test_direction_follows_the_metric() -> None:
    x = noisy(2, 14, level=1000.0)
    x[7:] *= 1.25
    (cp,) = change_points(list(x), THROUGHPUT)
    assert cp.index == 7
    assert cp.direction is Direction.GOOD
    (down,) = change_points(list(x[::-1]), THROUGHPUT)
    assert down.direction is Direction.BAD


def test_two_steps() -> None:
    x = noisy(3, 30)
    x[10:20] *= 1.3
    cps = change_points(list(x), TPOT)
    assert [c.index for c in cps] == [10, 20]
    assert [c.direction for c in cps] == [Direction.BAD, Direction.GOOD]
    assert cps[1].mean_before == pytest.approx(x[10:20].mean())


def test_no_step_in_noise_rarely_alarms() -> None:
    """Pure noise (CV 3%, like per-release medians) at several lengths: count series with any
    change point. The permutation test at alpha=0.01 plus the 5% magnitude floor keep it rare."""
    alarms, series = 0, 0
    for n in (6, 8, 10, 15, 20, 30):
        for seed in range(30):
            series += 1
            alarms += bool(change_points(list(noisy(100 + seed, n, cv=0.03)), TPOT, seed=seed))
    print(f"\nchange points on pure noise: {alarms}/{series} series with a false change point")
    assert alarms <= 0.03 * series


@pytest.mark.parametrize(
    "history",
    [
        [1.0, 1.0, 1.3],
        [1.0, 1.02, 0.98, 1.5],
        [1.0, 1.0, 1.0, 10.0, 10.0],
        [0.05, 0.051, 0.049, 0.05, 0.09],
        [1.0, 2.0],
        [1.0],
        [],
    ],
)
def test_short_histories_have_no_change_point(history: list[float]) -> None:
    assert change_points(history, TPOT) == []


def test_short_noisy_histories_never_alarm() -> None:
    for n in (3, 4, 5):
        for seed in range(50):
            assert change_points(list(noisy(seed, n, cv=0.2)), TPOT, seed=seed) == []


def test_constant_history() -> None:
    assert change_points([2.5] * 20, TPOT) == []


def test_small_steps_are_merged_away() -> None:
    x = noisy(4, 20, cv=0.002)
    x[10:] *= 1.02  # significant, but only 2%
    assert change_points(list(x), TPOT) == []
    (cp,) = change_points(list(x), TPOT, min_magnitude=0.0)
    assert cp.index == 10


def test_deterministic_for_a_seed() -> None:
    x = list(noisy(5, 12, cv=0.05) * np.r_[np.ones(6), np.full(6, 1.15)])
    assert change_points(x, TPOT, seed=3) == change_points(x, TPOT, seed=3)


def test_invalid_input() -> None:
    with pytest.raises(ValueError, match="non-finite"):
        change_points([1.0, float("nan"), 1.0, 1.0], TPOT)
    with pytest.raises(ValueError, match="labels"):
        change_points([1.0, 1.0], TPOT, labels=["a"])
    with pytest.raises(ValueError, match="exceeds"):
        change_points([1.0] * (MAX_HISTORY + 1), TPOT)
    with pytest.raises(ValueError, match="alpha"):
        change_points([1.0] * 5, TPOT, alpha=0.0)
