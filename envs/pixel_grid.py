"""A grid world seen only through pixels: the smallest task that needs the CNN encoder.

The agent starts in a random cell of an ``size x size`` grid and must reach the goal in the
bottom-right corner; it observes a ``16 x 16 x 3`` ``uint8`` image (``cell`` pixels per cell):
the agent's cell lit in channel 0, the goal's in channel 1. Actions: 0 right, 1 down, 2 left,
3 up (a move into a wall stays put). Reward: +1 on reaching the goal (the episode ends),
-0.01 per step otherwise; 20 steps at most.

From a uniform start the shortest path averages 3.2 steps on the default 4 x 4 grid; a policy
that cannot see where it is (a blind one, e.g. right or down at random) averages about twice
that, so a short mean episode length shows the encoder reads the image.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces

MOVES = np.array([(0, 1), (1, 0), (0, -1), (-1, 0)])


class PixelGridEnv(gym.Env):
    """See the module docstring.

    Args:
        size: cells per side.
        cell: pixels per cell side (``size * cell`` pixels per image side).
    """

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(self, size: int = 4, cell: int = 4, render_mode: str | None = None) -> None:
        if size < 2 or cell < 1:
            raise ValueError(f"PixelGrid needs size >= 2 and cell >= 1, got {size}, {cell}")
        self.size, self.cell = size, cell
        side = size * cell
        self.observation_space = spaces.Box(0, 255, (side, side, 3), np.uint8)
        self.action_space = spaces.Discrete(4)
        self.render_mode = render_mode
        self.goal = np.array([size - 1, size - 1])
        self.pos = np.zeros(2, dtype=np.int64)

    def _image(self) -> np.ndarray:
        image = np.zeros(self.observation_space.shape, dtype=np.uint8)
        c = self.cell
        for channel, (row, col) in ((0, self.pos), (1, self.goal)):
            image[row * c : (row + 1) * c, col * c : (col + 1) * c, channel] = 255
        return image

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        start = self.np_random.integers(self.size * self.size - 1)  # any cell but the goal
        self.pos = np.array(divmod(int(start), self.size))
        return self._image(), {}

    def step(self, action):
        if not self.action_space.contains(action):
            raise ValueError(f"action must be 0, 1, 2 or 3, got {action!r}")
        self.pos = np.clip(self.pos + MOVES[int(action)], 0, self.size - 1)
        arrived = bool((self.pos == self.goal).all())
        return self._image(), 1.0 if arrived else -0.01, arrived, False, {}

    def render(self) -> np.ndarray:
        return self._image()


def shortest_path(size: int = 4) -> float:
    """The mean shortest path from a uniform start (any cell but the goal) to the goal."""
    total = sum(2 * (size - 1) - r - c for r in range(size) for c in range(size))
    return total / (size * size - 1)
