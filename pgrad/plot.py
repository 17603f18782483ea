"""Learning curves from TensorBoard event files, as a PNG (matplotlib, headless).

Runs are grouped by setting: two runs belong together when their ``config.json`` agree on every
key but ``seed`` and they were trained by the same agent class. Each group is one curve, labelled
by the keys whose values differ between the groups drawn (``baseline=loo``), with a band over its
seeds: the min-max range around the mean, or with ``ci=True`` the interquartile mean and its 95 %
stratified-bootstrap interval (``pgrad.stats``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pgrad.errors import first_line

_SEED_AND_TIME = re.compile(r"__\d+__\d+(_\d+)?$")
GRID_POINTS = 200
"""Points on the common step grid when the runs of a group logged at different steps."""


@dataclass
class Curve:
    """One run's scalar: ``steps [P]`` and smoothed ``values [P]``."""

    run_dir: Path
    settings: dict[str, Any]
    steps: np.ndarray
    values: np.ndarray


@dataclass
class CurveGroup:
    """The runs of one setting, summarised on a common grid of environment steps.

    ``steps``, ``centre``, ``low`` and ``high`` are all ``[G]``: the mean and min/max over runs,
    or (``ci``) the IQM and its 95 % bootstrap interval.
    """

    label: str
    settings: dict[str, Any]
    run_dirs: list[Path]
    steps: np.ndarray
    centre: np.ndarray
    low: np.ndarray
    high: np.ndarray


def read_scalars(run_dir: Path, tag: str) -> tuple[np.ndarray, np.ndarray]:
    """``(steps, values)`` of ``tag`` in the TensorBoard events under ``run_dir``.

    Raises:
        ValueError: no run directory, no event files, or no such tag (naming the tags there).
    """
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    if not run_dir.is_dir():
        raise ValueError(f"run directory {run_dir} does not exist")
    if not any(run_dir.glob("events.out.tfevents.*")):
        raise ValueError(f"{run_dir} holds no TensorBoard event files")
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    tags = events.Tags().get("scalars", [])
    if tag not in tags:
        raise ValueError(f"{run_dir} has no scalar {tag!r}; it has: {', '.join(sorted(tags))}")
    scalars = events.Scalars(tag)
    return (
        np.array([s.step for s in scalars], dtype=np.float64),
        np.array([s.value for s in scalars], dtype=np.float64),
    )


def setting_name(run_dir: Path) -> str:
    """Run directories ``<env>__<agent>__<seed>__<time>`` of one setting share this name."""
    return _SEED_AND_TIME.sub("", run_dir.name)


def run_settings(run_dir: Path) -> dict[str, Any]:
    """What makes a run's setting: its config without ``seed``, and its agent class.

    A run without ``config.json`` (written by something else than pgrad) is known by its
    directory name without the seed and time.

    Raises:
        ValueError: ``config.json`` is not a JSON object.
    """
    config_path = run_dir / "config.json"
    if not config_path.is_file():
        return {"run": setting_name(run_dir)}
    try:
        config = json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{config_path} is not valid JSON: {first_line(err)}") from None
    if not isinstance(config, dict):
        raise ValueError(f"{config_path} does not hold a config object")
    settings = {k: tuple(v) if isinstance(v, list) else v for k, v in config.items() if k != "seed"}
    agent_path = run_dir / "agent.txt"
    if agent_path.is_file():
        settings["agent"] = agent_path.read_text().strip()
    return settings


def load_curves(
    run_dirs: list[Path], tag: str, smooth: int = 5
) -> tuple[list[Curve], list[tuple[Path, str]]]:
    """Each readable run's ``tag`` smoothed over ``smooth`` points, and ``(run, why)`` of the rest."""
    curves: list[Curve] = []
    skipped: list[tuple[Path, str]] = []
    for run_dir in run_dirs:
        try:
            settings = run_settings(run_dir)
            steps, values = read_scalars(run_dir, tag)
        except Exception as err:  # any damage to one run's files skips that run, whatever it is
            why = first_line(err)
            skipped.append((run_dir, why if str(run_dir) in why else f"{run_dir}: {why}"))
            continue
        if values.size == 0:
            skipped.append((run_dir, f"{run_dir} logged no value of {tag!r}"))
            continue
        curves.append(Curve(run_dir, settings, steps, moving_average(values, smooth)))
    return curves, skipped


def group_curves(curves: list[Curve], ci: bool = False, seed: int = 0) -> list[CurveGroup]:
    """Group ``curves`` by setting and summarise each group on a common step grid.

    Args:
        curves: runs as read by ``load_curves``.
        ci: the IQM with a 95 % stratified-bootstrap band, instead of the mean with min-max.
        seed: seed of the bootstrap.

    Returns:
        One ``CurveGroup`` per setting, in the order their first run came.
    """
    from pgrad.stats import curve_interval

    by_setting: dict[str, list[Curve]] = {}
    for curve in curves:
        key = json.dumps(curve.settings, sort_keys=True, default=str)
        by_setting.setdefault(key, []).append(curve)
    members = list(by_setting.values())
    labels = setting_labels([group[0].settings for group in members])
    groups = []
    for label, group in zip(labels, members):
        grid = _common_grid([c.steps for c in group])
        ys = np.stack([np.interp(grid, c.steps, c.values) for c in group])  # [R, G]
        if ci:
            centre, low, high = curve_interval(ys, "iqm", seed=seed)
        else:
            centre, low, high = ys.mean(0), ys.min(0), ys.max(0)
        groups.append(
            CurveGroup(
                label, group[0].settings, [c.run_dir for c in group], grid, centre, low, high
            )
        )
    return groups


def setting_labels(settings: list[dict[str, Any]]) -> list[str]:
    """Name each setting by the keys whose values differ among them, ``key=value, ...``.

    A single setting is named by its environment (or run name).
    """
    if len(settings) == 1:
        only = settings[0]
        return [str(only.get("env_id", only.get("run", "run")))]
    missing = object()
    keys = sorted({key for s in settings for key in s})
    differing = [
        key
        for key in keys
        if len({json.dumps(s.get(key, missing), default=str) for s in settings}) > 1
    ]
    return [
        ", ".join(f"{key}={_show(key, s.get(key, '-'))}" for key in differing) for s in settings
    ]


def plot_runs(
    run_dirs: list[Path],
    output: Path,
    tag: str = "charts/episodic_return",
    smooth: int = 5,
    ci: bool = False,
) -> tuple[Path, list[tuple[Path, str]]]:
    """Draw ``tag`` against environment steps, one curve and band per setting.

    Returns:
        The PNG written, and ``(run, why)`` for each run that could not be read and was left out.

    Raises:
        ValueError: ``smooth < 1``, or not one of the runs could be read.
    """
    if smooth < 1:
        raise ValueError(f"--smooth must be >= 1, got {smooth}")
    curves, skipped = load_curves(run_dirs, tag, smooth)
    if not curves:
        if len(skipped) == 1:
            raise ValueError(skipped[0][1])
        raise ValueError(f"none of the {len(skipped)} runs could be read; first: {skipped[0][1]}")
    groups = group_curves(curves, ci)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for group in groups:
        runs = len(group.run_dirs)
        label = f"{group.label} ({runs} run{'s' if runs > 1 else ''})"
        (line,) = ax.plot(group.steps, group.centre, label=label)
        if runs > 1:
            ax.fill_between(group.steps, group.low, group.high, alpha=0.2, color=line.get_color())
    ax.set_title(plot_title(tag, smooth, ci), fontsize=9)
    ax.set_xlabel("environment steps")
    ax.set_ylabel(tag)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output)
    plt.close(fig)
    return output, skipped


def plot_title(tag: str, smooth: int, ci: bool) -> str:
    """The title states what the line, the band and the smoothing are."""
    smoothing = f"moving average over {smooth} points" if smooth > 1 else "not smoothed"
    band = "IQM, 95% bootstrap CI over seeds" if ci else "mean, min-max over seeds"
    return f"{tag}: {band}; {smoothing}"


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over ``window`` points; the first points average over a padded start.

    ``out[i] = mean(values[i - window + 1 .. i])`` with ``values[j] = values[0]`` for ``j < 0``.
    """
    if window <= 1 or values.size == 0:
        return values
    kernel = np.ones(window) / window
    padded = np.concatenate([np.full(window - 1, values[0]), values])
    return np.convolve(padded, kernel, mode="valid")


def _common_grid(steps: list[np.ndarray]) -> np.ndarray:
    """The runs' own steps where they all logged at the same ones, else an even grid on the
    range they share."""
    if all(s.shape == steps[0].shape and np.array_equal(s, steps[0]) for s in steps):
        return steps[0]
    start, end = max(s[0] for s in steps), min(s[-1] for s in steps)
    return np.linspace(start, max(start, end), GRID_POINTS)


def _show(key: str, value: Any) -> str:
    if key == "agent" and isinstance(value, str):
        return value.rpartition(":")[2]  # the class name of module:Class
    if isinstance(value, tuple):
        return ",".join(map(str, value)) or "()"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)
