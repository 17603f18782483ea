"""Hyperparameter schedules over training progress (learning rate, entropy coefficient, ...).

A schedule maps ``progress``, the fraction of training done, to a value. Progress is clamped
to ``[0, 1]``, so a run that overshoots its step budget by one update keeps the final value.

    >>> lr = linear_schedule(3e-4, 0.0)
    >>> lr(0.5)
    0.00015
"""

from __future__ import annotations

import math
from collections.abc import Callable

Schedule = Callable[[float], float]
"""A function of ``progress`` in ``[0, 1]`` returning the value at that point of training."""


def constant_schedule(value: float) -> Schedule:
    """A schedule that is ``value`` throughout.

    Raises:
        ValueError: if ``value`` is not finite.
    """
    value = _finite("value", value)

    def schedule(progress: float) -> float:
        _clamp(progress)
        return value

    return schedule


def linear_schedule(start: float, end: float) -> Schedule:
    """A schedule going linearly from ``start`` at progress 0 to ``end`` at progress 1.

    Raises:
        ValueError: if ``start`` or ``end`` is not finite.
    """
    start, end = _finite("start", start), _finite("end", end)

    def schedule(progress: float) -> float:
        return start + (end - start) * _clamp(progress)

    return schedule


def schedule_value(start: float, end: float | None, progress: float) -> float:
    """The value at ``progress`` of a linear schedule, or of a constant one when ``end`` is ``None``.

    Matches a config with ``x`` and optional ``x_end`` fields: ``schedule_value(cfg.lr,
    cfg.lr_end, step / total_steps)``.

    Raises:
        ValueError: if ``start`` or ``end`` is not finite or ``progress`` is nan.
    """
    if end is None:
        return constant_schedule(start)(progress)
    return linear_schedule(start, end)(progress)


def _clamp(progress: float) -> float:
    progress = float(progress)
    if math.isnan(progress):
        raise ValueError("schedule progress must be a number, got nan")
    return min(max(progress, 0.0), 1.0)


def _finite(name: str, value: float) -> float:
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"schedule {name} must be finite, got {value}")
    return value


__all__ = ["Schedule", "constant_schedule", "linear_schedule", "schedule_value"]
