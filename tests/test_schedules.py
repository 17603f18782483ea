"""Tests for pgrad.schedules: constant and linear decay over training progress, validation."""

from __future__ import annotations

import pytest

from pgrad.schedules import constant_schedule, linear_schedule, schedule_value


def test_constant_schedule():
    schedule = constant_schedule(0.01)
    assert [schedule(p) for p in (0.0, 0.5, 1.0, 7.0)] == [0.01] * 4


def test_linear_schedule_interpolates_and_clamps():
    schedule = linear_schedule(1.0, 0.0)
    assert schedule(0.0) == 1.0
    assert schedule(0.25) == pytest.approx(0.75)
    assert schedule(1.0) == 0.0
    assert schedule(-1.0) == 1.0
    assert schedule(1.5) == 0.0
    assert linear_schedule(2.0, 4.0)(0.5) == pytest.approx(3.0)


def test_schedule_value():
    assert schedule_value(3e-4, None, 0.9) == 3e-4
    assert schedule_value(3e-4, 1e-4, 0.5) == pytest.approx(2e-4)
    assert schedule_value(3e-4, 1e-4, 2.0) == pytest.approx(1e-4)


def test_schedule_validation():
    with pytest.raises(ValueError, match="progress must be a number, got nan"):
        linear_schedule(1.0, 0.0)(float("nan"))
    with pytest.raises(ValueError, match="progress must be a number"):
        constant_schedule(1.0)(float("nan"))
    with pytest.raises(ValueError, match="schedule end must be finite, got inf"):
        linear_schedule(1.0, float("inf"))
