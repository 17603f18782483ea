"""Aggregate scores over seeds and tasks, with stratified-bootstrap confidence intervals.

The statistics of Agarwal et al. (2021), "Deep Reinforcement Learning at the Edge of the
Statistical Precipice" (NeurIPS): with a handful of seeds a mean ± std hides how uncertain the
comparison is, so every aggregate comes with a percentile-bootstrap interval, resampling the runs
of each task separately (stratified), and two settings are compared by the probability that one
improves on the other.

A score table is ``[R, T]``: ``R`` runs (seeds) of each of ``T`` tasks; a 1-D ``[R]`` is one
task. Scores of different tasks should be on a common scale (normalised) before they are pooled.

=====================  =========================================================================
statistic              over all ``R * T`` scores ``x`` pooled
=====================  =========================================================================
``mean``               ``(1 / RT) sum x``
``median``             the middle of the sorted scores (the mean of the two middle ones)
``iqm``                interquartile mean: ``2 * integral_{0.25}^{0.75} F^-1(u) du`` of the
                       empirical distribution, the mean of its middle 50 %
``optimality_gap``     ``(1 / RT) sum max(threshold - x, 0)``: how far below ``threshold``
=====================  =========================================================================

The median here is over all scores pooled, so with one task it is the median over seeds (the
paper's aggregate median is the median of the per-task means, which says nothing for one task).
When ``R * T`` is not a multiple of 4 the IQM weighs the two scores that straddle a quartile by
the share of their probability mass inside ``[0.25, 0.75]`` (``scipy.stats.trim_mean`` would
drop them whole), so it is the same functional of the empirical distribution for any size.

Written with numpy rather than on ``rliable``, the paper authors' package: its latest release
(1.2.0, August 2024) is a source archive only, and installing it here adds eight packages
(arch, pinned below 8 so that it holds arch 8 back, statsmodels, pandas, seaborn, patsy,
formulaic and theirs) for what is about a hundred lines here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np

Statistic = Callable[[np.ndarray], np.ndarray]
"""Reduces the last axis of a float array: ``[..., n] -> [...]``."""

_CHUNK_ELEMENTS = 4_000_000  # bootstrap samples are drawn in chunks of at most this many scores


class Interval(NamedTuple):
    """A point estimate and its confidence interval ``[low, high]``."""

    estimate: float
    low: float
    high: float


# -- statistics over the last axis (vectorised: the bootstrap calls them on [B, n]) ---------------
def _mean(x: np.ndarray) -> np.ndarray:
    return x.mean(axis=-1)


def _median(x: np.ndarray) -> np.ndarray:
    return np.median(x, axis=-1)


def _iqm(x: np.ndarray) -> np.ndarray:
    """Interquartile mean over the last axis: sorted scores weighted by their mass in the middle.

    The ``i``-th smallest of ``n`` scores holds the probability mass ``[i / n, (i + 1) / n]``;
    its weight is the length of that interval's overlap with ``[0.25, 0.75]``, times 2.
    """
    n = x.shape[-1]
    edges = np.arange(n + 1) / n
    weights = np.clip(np.minimum(edges[1:], 0.75) - np.maximum(edges[:-1], 0.25), 0.0, None) * 2
    return np.sort(x, axis=-1) @ weights


STATISTICS: dict[str, Statistic] = {"mean": _mean, "median": _median, "iqm": _iqm}


def optimality_gap_statistic(threshold: float) -> Statistic:
    """The optimality gap below ``threshold`` as a statistic over the last axis."""

    def gap(x: np.ndarray) -> np.ndarray:
        return np.maximum(threshold - x, 0.0).mean(axis=-1)

    return gap


# -- the public statistics of a score table ------------------------------------------------------
def as_table(scores: np.ndarray | Sequence) -> np.ndarray:
    """``scores`` as a float ``[R, T]`` table (a 1-D ``[R]`` becomes one task).

    Raises:
        ValueError: not 1-D or 2-D, empty, or holding a non-finite score.
    """
    table = np.asarray(scores, dtype=np.float64)
    if table.ndim == 1:
        table = table[:, None]
    if table.ndim != 2 or table.size == 0:
        raise ValueError(f"scores must be a non-empty [runs, tasks] table, got shape {table.shape}")
    if not np.isfinite(table).all():
        raise ValueError("scores must be finite")
    return table


def mean(scores: np.ndarray | Sequence) -> float:
    """Mean of all scores of the ``[R, T]`` table."""
    return float(_mean(as_table(scores).reshape(-1)))


def median(scores: np.ndarray | Sequence) -> float:
    """Median of all scores of the ``[R, T]`` table pooled."""
    return float(_median(as_table(scores).reshape(-1)))


def iqm(scores: np.ndarray | Sequence) -> float:
    """Interquartile mean of all scores of the ``[R, T]`` table pooled (the middle 50 %).

    Example: ``iqm([1, 2, 3, 4, 5, 6, 7, 100]) == 4.5``, the mean of 3, 4, 5 and 6.
    """
    return float(_iqm(as_table(scores).reshape(-1)))


def optimality_gap(scores: np.ndarray | Sequence, threshold: float = 1.0) -> float:
    """Mean shortfall below ``threshold``, ``mean(max(threshold - x, 0))``; lower is better."""
    return float(optimality_gap_statistic(threshold)(as_table(scores).reshape(-1)))


def probability_of_improvement(x: np.ndarray | Sequence, y: np.ndarray | Sequence) -> float:
    """``P(X > Y)``: how likely a run of X beats a run of Y on a task, averaged over tasks.

    ``P(X > Y) = (1 / T) sum_t P(X_t > Y_t)`` with, for each task, the Mann-Whitney statistic
    ``P(X_t > Y_t) = (1 / (N K)) sum_i sum_j S(x_it, y_jt)``, ``S = 1`` if ``x > y``, ``1/2`` if
    equal, else 0 (Agarwal et al. 2021). Above 0.5 favours X.

    Args:
        x: ``[N, T]`` scores of setting X (``N`` runs).
        y: ``[K, T]`` scores of setting Y on the same ``T`` tasks (``K`` runs).

    Raises:
        ValueError: a table is malformed, or the two have different numbers of tasks.
    """
    x_table, y_table = _paired_tables(x, y)
    return float(_improvement(x_table[None], y_table[None])[0])


# -- interval estimates --------------------------------------------------------------------------
def interval_estimates(
    scores: np.ndarray | Sequence,
    statistics: Sequence[str] = ("mean", "median", "iqm"),
    reps: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
    threshold: float | None = None,
) -> dict[str, Interval]:
    """Each statistic of the ``[R, T]`` table with its stratified-bootstrap interval.

    One bootstrap sample redraws, for each task separately, ``R`` of its runs with replacement;
    the interval is the ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` percentiles of the
    statistic over ``reps`` such samples (all statistics see the same samples).

    Args:
        scores: ``[R, T]`` (or ``[R]``) scores.
        statistics: names from ``STATISTICS``, and ``"optimality_gap"`` when ``threshold`` is given.
        reps: bootstrap samples.
        confidence: coverage of the interval, in ``(0, 1)``.
        seed: seed of the bootstrap's random generator.
        threshold: the score counted as optimal, for ``"optimality_gap"``.

    Returns:
        ``{name: Interval(estimate, low, high)}`` in the order asked.

    Raises:
        ValueError: a malformed table, an unknown statistic, ``reps < 1`` or ``confidence``
            outside ``(0, 1)``.
    """
    table = as_table(scores)
    functions = _statistics(statistics, threshold)
    _check_bootstrap(reps, confidence)
    rng = np.random.default_rng(seed)
    runs, tasks = table.shape
    samples: dict[str, list[np.ndarray]] = {name: [] for name in functions}
    for size in _chunks(reps, runs * tasks):
        # stratified: task t's column is redrawn from task t's own runs
        drawn = table[rng.integers(0, runs, size=(size, runs, tasks)), np.arange(tasks)]
        pooled = drawn.reshape(size, runs * tasks)
        for name, function in functions.items():
            samples[name].append(function(pooled))
    flat = table.reshape(-1)
    return {
        name: _interval(float(function(flat)), np.concatenate(samples[name]), confidence)
        for name, function in functions.items()
    }


def probability_of_improvement_interval(
    x: np.ndarray | Sequence,
    y: np.ndarray | Sequence,
    reps: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Interval:
    """``P(X > Y)`` (see ``probability_of_improvement``) with its stratified-bootstrap interval.

    Each bootstrap sample redraws the runs of X and, independently, those of Y, task by task.

    Args:
        x: ``[N, T]`` scores of X.
        y: ``[K, T]`` scores of Y.
        reps: bootstrap samples.
        confidence: coverage of the interval, in ``(0, 1)``.
        seed: seed of the bootstrap's random generator.
    """
    x_table, y_table = _paired_tables(x, y)
    _check_bootstrap(reps, confidence)
    rng = np.random.default_rng(seed)
    (n, tasks), k = x_table.shape, y_table.shape[0]
    samples = []
    for size in _chunks(reps, n * k * tasks):
        xs = x_table[rng.integers(0, n, size=(size, n, tasks)), np.arange(tasks)]
        ys = y_table[rng.integers(0, k, size=(size, k, tasks)), np.arange(tasks)]
        samples.append(_improvement(xs, ys))
    estimate = float(_improvement(x_table[None], y_table[None])[0])
    return _interval(estimate, np.concatenate(samples), confidence)


def curve_interval(
    curves: np.ndarray,
    statistic: str = "iqm",
    reps: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A statistic over runs at each point of a learning curve, with its bootstrap band.

    A bootstrap sample redraws whole runs (curves), so the band at every point comes from the
    same resampled sets of runs.

    Args:
        curves: ``[R, G]``: ``R`` runs' values at ``G`` common points (one task).
        statistic: a name from ``STATISTICS``.
        reps: bootstrap samples.
        confidence: coverage of the band, in ``(0, 1)``.
        seed: seed of the bootstrap's random generator.

    Returns:
        ``(estimate, low, high)``, each ``[G]``.
    """
    values = np.asarray(curves, dtype=np.float64)
    if values.ndim != 2 or values.size == 0:
        raise ValueError(f"curves must be a non-empty [runs, points] array, got {values.shape}")
    function = _statistics([statistic], None)[statistic]
    _check_bootstrap(reps, confidence)
    rng = np.random.default_rng(seed)
    runs, points = values.shape
    samples = []
    for size in _chunks(reps, runs * points):
        drawn = values[rng.integers(0, runs, size=(size, runs))]  # [B, R, G]
        samples.append(function(np.swapaxes(drawn, 1, 2)))  # [B, G]
    stacked = np.concatenate(samples)
    tail = (1.0 - confidence) / 2
    low, high = np.quantile(stacked, [tail, 1.0 - tail], axis=0)
    return function(values.T), low, high


# -- helpers --------------------------------------------------------------------------------------
def _improvement(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """``P(X > Y)`` for each of ``B`` samples: ``xs [B, N, T]``, ``ys [B, K, T]`` -> ``[B]``."""
    diff = xs[:, :, None, :] - ys[:, None, :, :]  # [B, N, K, T]
    wins = (diff > 0) + 0.5 * (diff == 0)
    return wins.mean(axis=(1, 2)).mean(axis=-1)  # per task over pairs, then over tasks


def _paired_tables(x: np.ndarray | Sequence, y: np.ndarray | Sequence) -> tuple[np.ndarray, ...]:
    x_table, y_table = as_table(x), as_table(y)
    if x_table.shape[1] != y_table.shape[1]:
        raise ValueError(
            f"X and Y must cover the same tasks, got {x_table.shape[1]} and {y_table.shape[1]}"
        )
    return x_table, y_table


def _statistics(names: Sequence[str], threshold: float | None) -> dict[str, Statistic]:
    known = dict(STATISTICS)
    if threshold is not None:
        known["optimality_gap"] = optimality_gap_statistic(threshold)
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValueError(
            f"unknown statistic {unknown[0]!r}; choose from {', '.join(known)}"
            + ("" if threshold is not None else " (optimality_gap needs a threshold)")
        )
    return {name: known[name] for name in names}


def _check_bootstrap(reps: int, confidence: float) -> None:
    if reps < 1:
        raise ValueError(f"reps must be >= 1, got {reps}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def _chunks(reps: int, per_sample: int) -> list[int]:
    """Split ``reps`` samples into chunks that hold at most ``_CHUNK_ELEMENTS`` numbers each."""
    size = max(1, _CHUNK_ELEMENTS // max(per_sample, 1))
    return [min(size, reps - start) for start in range(0, reps, size)]


def _interval(estimate: float, samples: np.ndarray, confidence: float) -> Interval:
    tail = (1.0 - confidence) / 2
    low, high = np.quantile(samples, [tail, 1.0 - tail])
    return Interval(estimate, float(low), float(high))
