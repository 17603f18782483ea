"""Short corridor with switched actions: Sutton & Barto (2nd ed.), Example 13.1.

Three non-terminal states and a goal, reward -1 per step. ``right`` moves right and ``left``
moves left, except in the second state, where they are reversed; ``left`` in the first state
stays put. Every state gives the same observation, so a policy can only choose a probability
of ``right``: every deterministic policy never reaches the goal, and the best stochastic one has
p(right) = 2 - sqrt(2) ~ 0.586, with value ~ -11.66 from the start. The registered version has
a 200-step time limit so a deterministic policy cannot run forever.

The expected return of p = p(right) is ``(2p - 4) / (p (1 - p))`` (solve the Bellman equations
of the three states), which the tests use as ground truth.
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
from gymnasium import spaces

OPTIMAL_P_RIGHT = 2.0 - math.sqrt(2.0)
OPTIMAL_VALUE = (2 * OPTIMAL_P_RIGHT - 4) / (OPTIMAL_P_RIGHT * (1 - OPTIMAL_P_RIGHT))
LEFT, RIGHT = 0, 1


def expected_return(p_right: float) -> float:
    """Value of the start state under p(right) = ``p_right`` (no time limit)."""
    if not 0.0 < p_right < 1.0:
        return -math.inf
    return (2 * p_right - 4) / (p_right * (1 - p_right))


class ShortCorridorEnv(gym.Env):
    """Sutton & Barto Example 13.1. Observation: ``Discrete(1)`` (always 0). Actions: 0 left, 1 right."""

    metadata = {"render_modes": ["ansi"]}

    def __init__(self, render_mode: str | None = None) -> None:
        self.observation_space = spaces.Discrete(1)
        self.action_space = spaces.Discrete(2)
        self.render_mode = render_mode
        self.state = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.state = 0
        return 0, {"state": self.state}

    def step(self, action: int):
        if not self.action_space.contains(action):
            raise ValueError(f"action must be 0 (left) or 1 (right), got {action!r}")
        move = 1 if int(action) == RIGHT else -1
        if self.state == 1:  # the switched state
            move = -move
        self.state = max(0, self.state + move)
        terminated = self.state == 3
        return 0, -1.0, terminated, False, {"state": self.state}

    def render(self) -> str | None:
        if self.render_mode == "ansi":
            cells = ["S", ".", "x", "G"]
            return " ".join(f"[{c}]" if i == self.state else f" {c} " for i, c in enumerate(cells))
        return None
