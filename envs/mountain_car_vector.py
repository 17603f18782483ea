"""MountainCar-v0 as a numpy-vectorised Gymnasium ``VectorEnv``: N cars at once.

The same task as Gymnasium's ``MountainCarEnv`` (Moore 1990, "Efficient Memory-based Learning
for Robot Control"): a car in a valley on ``sin(3x)`` pushes left, not at all, or right (force
0.001) against gravity (0.0025); velocity clipped to [-0.07, 0.07], position to [-1.2, 0.6] with
the velocity zeroed at the left wall; reward -1 per step, terminated at position >= 0.5,
truncated after 200 steps.

Bit for bit the same numbers as Gymnasium's environment: its scalar code runs in float64
throughout, and the same operations run here in the same order.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.envs.classic_control import utils

from pgrad.envs.vector_base import ClassicControlVectorEnv


class MountainCarVectorEnv(ClassicControlVectorEnv):
    """MountainCar-v0 for N copies at once.

    Observation ``[N, 2]`` float32: position, velocity. Action ``[N]`` in {0, 1, 2}: push left,
    none, right. State ``[2, N]`` float64: position, velocity.

    Args:
        num_envs: N.
        max_episode_steps: truncation (MountainCar-v0 registers 200).
        render_mode: only ``None``; rendering is Gymnasium's single environment's job.
        goal_velocity: the least velocity at the goal that ends an episode.
    """

    min_position = -1.2
    max_position = 0.6
    max_speed = 0.07
    goal_position = 0.5
    force = 0.001
    gravity = 0.0025

    def __init__(
        self,
        num_envs: int = 1,
        max_episode_steps: int | None = 200,
        render_mode: str | None = None,
        goal_velocity: float = 0,
    ) -> None:
        self.goal_velocity = goal_velocity
        low = np.array([self.min_position, -self.max_speed], dtype=np.float32)
        high = np.array([self.max_position, self.max_speed], dtype=np.float32)
        super().__init__(
            num_envs,
            max_episode_steps,
            spaces.Box(low, high, dtype=np.float32),
            spaces.Discrete(3),
            state_size=2,
            render_mode=render_mode,
        )

    def _start(self, rng: np.random.Generator, options: dict[str, Any] | None) -> np.ndarray:
        low, high = utils.maybe_parse_reset_bounds(options, -0.6, -0.4)
        return np.array([rng.uniform(low=low, high=high), 0.0])

    def _advance(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        position, velocity = self.state
        push = actions - self.single_action_space.start - 1  # -1, 0, +1
        velocity = velocity + (push * self.force + np.cos(3 * position) * (-self.gravity))
        velocity = np.clip(velocity, -self.max_speed, self.max_speed)
        position = np.clip(position + velocity, self.min_position, self.max_position)
        # an inelastic wall on the left
        velocity = np.where((position == self.min_position) & (velocity < 0), 0.0, velocity)
        terminated = (position >= self.goal_position) & (velocity >= self.goal_velocity)
        self.state[0], self.state[1] = position, velocity
        return np.full(self.num_envs, -1.0), terminated

    def _observe(self) -> np.ndarray:
        return self.state.T.astype(np.float32)
