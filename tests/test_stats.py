"""Tests for pgrad.stats: hand-worked aggregates, interval coverage, probability of improvement."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as scipy_stats

from pgrad import stats


# -- hand-worked statistics ----------------------------------------------------------------------
def test_iqm_is_the_mean_of_the_middle_half():
    # sorted: 1 2 3 4 5 6 7 100 -> the middle four 3 4 5 6
    assert stats.iqm([7, 1, 100, 3, 2, 6, 4, 5]) == pytest.approx(4.5)
    # outliers on both sides do not move it
    assert stats.iqm([-100, 1, 2, 3, 4, 5, 6, 1000]) == pytest.approx(3.5)


def test_iqm_pools_runs_and_tasks():
    table = [[1, 10], [2, 20], [3, 30], [4, 40]]  # 4 runs x 2 tasks
    # pooled and sorted: 1 2 3 4 10 20 30 40 -> 3 4 10 20
    assert stats.iqm(table) == pytest.approx(9.25)


def test_iqm_weighs_the_scores_that_straddle_a_quartile():
    # five scores, mass 0.2 each; [0.25, 0.75] holds 0.15 of the 2nd, all 0.2 of the 3rd,
    # 0.15 of the 4th: weights 0.3, 0.4, 0.3
    assert stats.iqm([100, 0, 4, 1, 2]) == pytest.approx(0.3 * 1 + 0.4 * 2 + 0.3 * 4)
    assert stats.iqm([5.0]) == 5.0
    assert stats.iqm([1.0, 3.0]) == pytest.approx(2.0)


def test_iqm_equals_the_25_percent_trimmed_mean_when_quartiles_fall_between_scores():
    x = np.random.default_rng(0).standard_normal((10, 4))
    assert stats.iqm(x) == pytest.approx(scipy_stats.trim_mean(x.reshape(-1), 0.25))


def test_mean_median_and_optimality_gap_by_hand():
    table = [[0.2, 1.5], [0.6, 0.9], [1.0, 0.1]]
    assert stats.mean(table) == pytest.approx(4.3 / 6)
    assert stats.median(table) == pytest.approx((0.6 + 0.9) / 2)
    # shortfalls below 1: 0.8 0 0.4 0.1 0 0.9
    assert stats.optimality_gap(table, threshold=1.0) == pytest.approx(2.2 / 6)


def test_bad_tables_are_refused():
    with pytest.raises(ValueError, match="non-empty"):
        stats.iqm([])
    with pytest.raises(ValueError, match="finite"):
        stats.mean([1.0, float("nan")])
    with pytest.raises(ValueError, match="same tasks"):
        stats.probability_of_improvement([[1, 2]], [[1]])
    with pytest.raises(ValueError, match="unknown statistic"):
        stats.interval_estimates([1, 2], statistics=("optimality_gap",))


# -- intervals -----------------------------------------------------------------------------------
# The percentile bootstrap covers a little less than its nominal rate at 30 runs (0.938 and 0.941
# over 2,000 draws of the two cases below); 400 draws put the observed rate within about 2 points.
def _coverage(draw, truth: float, statistic: str, trials: int = 400) -> float:
    rng = np.random.default_rng(12345)
    hits = 0
    for i in range(trials):
        interval = stats.interval_estimates(draw(rng), (statistic,), reps=1000, seed=i)[statistic]
        hits += interval.low <= truth <= interval.high
    return hits / trials


def test_mean_interval_covers_the_true_mean_at_its_stated_rate():
    # three tasks with far-apart means: a bootstrap that mixed tasks would add their spread
    task_means = np.array([0.0, 10.0, 20.0])
    coverage = _coverage(lambda rng: rng.normal(task_means, 1.0, size=(30, 3)), 10.0, "mean")
    assert 0.92 <= coverage <= 0.98, coverage


def test_iqm_interval_covers_the_true_iqm_at_its_stated_rate():
    # a symmetric distribution: its interquartile mean is its centre
    coverage = _coverage(lambda rng: rng.logistic(3.0, 1.0, size=(30, 1)), 3.0, "iqm")
    assert 0.92 <= coverage <= 0.98, coverage


def test_interval_holds_its_estimate_and_shrinks_with_more_runs():
    rng = np.random.default_rng(0)
    few = stats.interval_estimates(rng.normal(size=(5, 2)))
    many = stats.interval_estimates(rng.normal(size=(100, 2)))
    for name, interval in few.items():
        assert interval.low <= interval.estimate <= interval.high, name
        assert many[name].high - many[name].low < interval.high - interval.low, name


def test_intervals_are_reproducible_from_the_seed():
    x = np.arange(12.0).reshape(6, 2)
    assert stats.interval_estimates(x, seed=3) == stats.interval_estimates(x, seed=3)


# -- probability of improvement ------------------------------------------------------------------
def test_probability_of_improvement_by_hand():
    assert stats.probability_of_improvement([3, 4], [1, 2]) == 1.0
    assert stats.probability_of_improvement([1, 2], [3, 4]) == 0.0
    # pairs (1,1) tie 1/2, (1,2) 0, (2,1) 1, (2,2) tie 1/2 -> 2/4
    assert stats.probability_of_improvement([1, 2], [1, 2]) == 0.5
    # unequal numbers of runs: (1 > 2) no, (3 > 2) yes
    assert stats.probability_of_improvement([1, 3], [2]) == 0.5
    # x beats y in 5 of the 6 pairs
    assert stats.probability_of_improvement([2, 5, 6], [1, 4]) == pytest.approx(5 / 6)


def test_probability_of_improvement_averages_over_tasks_not_pooled_scores():
    # X wins every pair on both tasks; pooling the tasks would find 0 < 5 and say 3/4
    x = [[10.0, 0.0]]
    y = [[5.0, -5.0]]
    assert stats.probability_of_improvement(x, y) == 1.0
    # one task won, one lost -> 1/2
    assert stats.probability_of_improvement([[1.0, 0.0]], [[0.0, 1.0]]) == 0.5


def test_probability_of_improvement_interval():
    rng = np.random.default_rng(1)
    same = stats.probability_of_improvement_interval(rng.normal(size=20), rng.normal(size=20))
    assert same.low < 0.5 < same.high
    apart = stats.probability_of_improvement_interval([10, 11, 12], [1, 2, 3])
    assert apart == (1.0, 1.0, 1.0)
    shifted = stats.probability_of_improvement_interval(
        rng.normal(1.5, 1.0, size=30), rng.normal(size=30)
    )
    assert 0.5 < shifted.low <= shifted.estimate <= shifted.high


def test_probability_of_improvement_interval_covers_the_true_probability():
    # X ~ N(0.5, 1), Y ~ N(0, 1): P(X > Y) = Phi(0.5 / sqrt(2)); both sides' runs are uncertain
    truth = scipy_stats.norm.cdf(0.5 / np.sqrt(2))
    rng = np.random.default_rng(12345)
    hits = 0
    for i in range(400):
        x, y = rng.normal(0.5, 1.0, size=30), rng.normal(0.0, 1.0, size=30)
        interval = stats.probability_of_improvement_interval(x, y, reps=1000, seed=i)
        hits += interval.low <= truth <= interval.high
    assert 0.92 <= hits / 400 <= 0.98, hits / 400  # 0.936 over 2,000 draws


def test_curve_interval_is_the_iqm_at_each_point_with_a_band_around_it():
    curves = np.array([[0.0, 10.0], [1.0, 20.0], [2.0, 30.0], [3.0, 40.0], [100.0, 50.0]])
    centre, low, high = stats.curve_interval(curves)
    assert centre == pytest.approx([stats.iqm(curves[:, 0]), stats.iqm(curves[:, 1])])
    assert (low <= centre).all() and (centre <= high).all()
    # every resampled IQM lies within the range of the runs
    assert (low >= curves.min(0)).all() and (high <= curves.max(0)).all()
    # identical runs leave no uncertainty
    flat = np.tile([[1.0, 2.0, 3.0]], (4, 1))
    centre, low, high = stats.curve_interval(flat)
    assert centre == pytest.approx([1, 2, 3]) and low == pytest.approx(centre)
    assert high == pytest.approx(centre)
