"""Learning curves from TensorBoard event files, as a PNG (matplotlib, headless)."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import numpy as np

_SEED_AND_TIME = re.compile(r"__\d+__\d+(_\d+)?$")


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


def plot_runs(
    run_dirs: list[Path], output: Path, tag: str = "charts/episodic_return", smooth: int = 5
) -> Path:
    """Draw ``tag`` against environment steps; seeds of one setting as mean and min-max band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups: dict[str, list[tuple[np.ndarray, np.ndarray]]] = defaultdict(list)
    for run_dir in run_dirs:
        steps, values = read_scalars(run_dir, tag)
        groups[setting_name(run_dir)].append((steps, _smooth(values, smooth)))
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for name, curves in groups.items():
        end = min(s[-1] for s, _ in curves)
        grid = np.linspace(max(s[0] for s, _ in curves), end, 200)
        ys = np.stack([np.interp(grid, s, v) for s, v in curves])
        label = f"{name} ({len(curves)} run{'s' if len(curves) > 1 else ''})"
        (line,) = ax.plot(grid, ys.mean(0), label=label)
        if len(curves) > 1:
            ax.fill_between(grid, ys.min(0), ys.max(0), alpha=0.2, color=line.get_color())
    ax.set_xlabel("environment steps")
    ax.set_ylabel(tag)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output)
    plt.close(fig)
    return output


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    if window <= 1 or values.size < window:
        return values
    kernel = np.ones(window) / window
    padded = np.concatenate([np.full(window - 1, values[0]), values])
    return np.convolve(padded, kernel, mode="valid")
