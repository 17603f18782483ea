"""Compare two sets of runs by their final scores (``pgrad compare``).

Each run's final score is the mean of the last ``K`` logged values of a TensorBoard tag; the
runs of one set are seeds of one setting. The report gives the mean, median and interquartile
mean of each set with 95 % stratified-bootstrap intervals, and the probability that a run of A
scores above a run of B (``pgrad.stats``, after Agarwal et al. 2021).
"""

from __future__ import annotations

import glob
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pgrad.errors import first_line
from pgrad.plot import read_scalars
from pgrad.stats import Interval, interval_estimates, probability_of_improvement_interval

STATISTICS = ("mean", "median", "iqm")


@dataclass
class Comparison:
    """Final scores ``[R]`` of the runs of A and B, their statistics and ``P(A > B)``."""

    tag: str
    last: int
    reps: int
    runs_a: list[Path]
    runs_b: list[Path]
    scores_a: np.ndarray
    scores_b: np.ndarray
    a: dict[str, Interval]
    b: dict[str, Interval]
    improvement: Interval


def expand(pattern: str) -> list[Path]:
    """The run directories a glob pattern (or one directory's path) names, sorted."""
    if Path(pattern).is_dir():
        return [Path(pattern)]
    return sorted(Path(p) for p in glob.glob(pattern) if Path(p).is_dir())


def final_score(run_dir: Path, tag: str, last: int) -> float:
    """Mean of the last ``last`` logged values of ``tag`` (all of them, if fewer were logged).

    Raises:
        ValueError: the run cannot be read or logged no value of ``tag``.
    """
    try:
        _, values = read_scalars(run_dir, tag)
    except ValueError:
        raise
    except Exception as err:  # damaged event files: say which run, in one line
        raise ValueError(f"cannot read {run_dir}: {first_line(err)}") from None
    if values.size == 0:
        raise ValueError(f"{run_dir} logged no value of {tag!r}")
    return float(values[-last:].mean())


def compare(
    pattern_a: str,
    pattern_b: str,
    tag: str = "charts/episodic_return",
    last: int = 10,
    reps: int = 2000,
    seed: int = 0,
) -> Comparison:
    """Read the runs that ``pattern_a`` and ``pattern_b`` match and compare their final scores.

    Raises:
        ValueError: ``last < 1``; a pattern matches no run directory; a run is in both sets;
            one set mixes environments; a run cannot be read.
    """
    if last < 1:
        raise ValueError(f"--last must be >= 1, got {last}")
    runs = {}
    for name, pattern in (("A", pattern_a), ("B", pattern_b)):
        runs[name] = expand(pattern)
        if not runs[name]:
            raise ValueError(f"{name}: no run directory matches {pattern!r}")
        _check_one_environment(name, runs[name])
    both = sorted(set(runs["A"]) & set(runs["B"]))
    if both:
        raise ValueError(f"{both[0]} is in both A and B")
    scores_a = np.array([final_score(d, tag, last) for d in runs["A"]])
    scores_b = np.array([final_score(d, tag, last) for d in runs["B"]])
    return Comparison(
        tag=tag,
        last=last,
        reps=reps,
        runs_a=runs["A"],
        runs_b=runs["B"],
        scores_a=scores_a,
        scores_b=scores_b,
        a=interval_estimates(scores_a, STATISTICS, reps=reps, seed=seed),
        b=interval_estimates(scores_b, STATISTICS, reps=reps, seed=seed + 1),
        improvement=probability_of_improvement_interval(scores_a, scores_b, reps, seed=seed + 2),
    )


def report(result: Comparison, pattern_a: str, pattern_b: str) -> str:
    """The comparison as a plain-text table."""

    def cell(interval: Interval) -> str:
        return f"{interval.estimate:.2f} [{interval.low:.2f}, {interval.high:.2f}]"

    headers = ["", "runs", "mean [95% CI]", "median [95% CI]", "IQM [95% CI]"]
    rows = [
        [name, str(len(dirs)), *(cell(stats[s]) for s in STATISTICS)]
        for name, dirs, stats in (
            ("A", result.runs_a, result.a),
            ("B", result.runs_b, result.b),
        )
    ]
    widths = [max(len(row[i]) for row in (headers, *rows)) for i in range(len(headers))]
    lines = [
        f"final score: mean of the last {result.last} values of {result.tag} in each run",
        f"A: {pattern_a}",
        f"B: {pattern_b}",
        "",
        *("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in (headers, *rows)),
        "",
        f"P(A > B) = {cell(result.improvement)}  (probability that a run of A scores above a "
        "run of B; 0.5: no difference)",
        f"intervals: 95% percentile bootstrap over runs, {result.reps} samples",
    ]
    return "\n".join(lines)


def _check_one_environment(name: str, run_dirs: list[Path]) -> None:
    """Scores of different environments are on different scales: refuse to pool them."""
    env_ids = set()
    for run_dir in run_dirs:
        try:
            env_ids.add(json.loads((run_dir / "config.json").read_text()).get("env_id"))
        except (OSError, ValueError, AttributeError):
            continue  # no readable config: nothing to check against
    env_ids.discard(None)
    if len(env_ids) > 1:
        raise ValueError(
            f"{name} mixes environments ({', '.join(sorted(env_ids))}); "
            "compare one environment at a time"
        )
