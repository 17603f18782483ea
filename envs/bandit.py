"""A k-armed Gaussian bandit with a known best arm.

Each episode is one pull: action ``a`` gives a reward drawn from ``Normal(means[a], noise)`` and
the episode terminates. The observation is constant (``Discrete(1)``), so the problem is pure
exploration-exploitation over ``k`` actions. ``best_arm`` and ``means`` are attributes, so a test
can check what an agent learned.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class BanditEnv(gym.Env):
    """k-armed bandit. By default 10 arms with means 0.0, 0.1, ..., 0.9 in a fixed shuffled order."""

    metadata = {"render_modes": []}

    def __init__(self, means: Sequence[float] | None = None, noise: float = 1.0) -> None:
        if means is None:
            means = np.random.default_rng(0).permutation(np.arange(10) / 10.0)
        self.means = np.asarray(means, dtype=np.float64)
        if self.means.ndim != 1 or self.means.size < 2:
            raise ValueError(f"means must list at least two arms, got {means!r}")
        if noise < 0:
            raise ValueError(f"noise must be >= 0, got {noise}")
        self.noise = float(noise)
        self.best_arm = int(np.argmax(self.means))
        self.observation_space = spaces.Discrete(1)
        self.action_space = spaces.Discrete(self.means.size)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        return 0, {}

    def step(self, action: int):
        if not self.action_space.contains(action):
            raise ValueError(f"action must be an arm in [0, {self.means.size}), got {action!r}")
        reward = float(self.np_random.normal(self.means[int(action)], self.noise))
        return 0, reward, True, False, {"best_arm": self.best_arm}
