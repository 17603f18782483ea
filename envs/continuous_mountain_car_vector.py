"""MountainCarContinuous-v0 as a numpy-vectorised Gymnasium ``VectorEnv``: N cars at once.

The same task as Gymnasium's ``Continuous_MountainCarEnv``: the car of MountainCar-v0 with a
force in [-1, 1] (clipped) times 0.0015, the goal at position 0.45, reward 100 on reaching it
minus ``0.1 a²`` every step (``a`` the action before clipping), truncated after 999 steps.

Bit for bit the same numbers as Gymnasium's environment, which takes some care: its scalar
step mixes float32 and float64 numbers, and numpy's promotion rules (NEP 50: a Python float
takes the other operand's precision) decide each operation's precision. The state is stored
in float32, so after the first step of an episode most of the arithmetic is float32; the first
step starts from a float64 state and runs in float64; a force clipped to the bound is a Python
float and an in-range one keeps the action's dtype. Here everything is computed on float64
arrays and rounded to float32 (``as_float32``) wherever Gymnasium's operation is float32, which
gives float32 arithmetic exactly; a per-copy flag marks the first step of an episode.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.envs.classic_control import utils

from pgrad.envs.vector_base import ClassicControlVectorEnv, as_float32


def _limit(x: np.ndarray, is_float32: np.ndarray, limit: float) -> np.ndarray:
    """``limit`` as the comparison ``x > limit`` sees it: rounded to float32 where ``x`` is."""
    return np.where(is_float32, float(np.float32(limit)), limit)


class ContinuousMountainCarVectorEnv(ClassicControlVectorEnv):
    """MountainCarContinuous-v0 for N copies at once.

    Observation ``[N, 2]`` float32: position, velocity. Action ``[N, 1]``: force, clipped to
    [-1, 1]. State ``[2, N]`` float64 (float32 values after an episode's first step).

    Args:
        num_envs: N.
        max_episode_steps: truncation (MountainCarContinuous-v0 registers 999).
        render_mode: only ``None``; rendering is Gymnasium's single environment's job.
        goal_velocity: the least velocity at the goal that ends an episode.
    """

    min_action = -1.0
    max_action = 1.0
    min_position = -1.2
    max_position = 0.6
    max_speed = 0.07
    goal_position = 0.45
    power = 0.0015
    gravity = 0.0025

    def __init__(
        self,
        num_envs: int = 1,
        max_episode_steps: int | None = 999,
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
            spaces.Box(self.min_action, self.max_action, shape=(1,), dtype=np.float32),
            state_size=2,
            render_mode=render_mode,
        )
        self._fresh = np.zeros(self.num_envs, dtype=bool)  # float64 state: first step

    def _start(self, rng: np.random.Generator, options: dict[str, Any] | None) -> np.ndarray:
        low, high = utils.maybe_parse_reset_bounds(options, -0.6, -0.4)
        return np.array([rng.uniform(low=low, high=high), 0.0])

    def _started(self, index: np.ndarray) -> None:
        self._fresh[index] = True

    def _advance(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        action = actions[:, 0]
        action_is_float32 = action.dtype == np.float32
        action = action.astype(np.float64)
        position, velocity = self.state
        later = ~self._fresh  # float32 state
        clipped = (action < self.min_action) | (action > self.max_action)  # a Python float
        force = np.clip(action, self.min_action, self.max_action)

        # 3 x in the state's precision, the cosine in float64 (math.cos)
        slope = self.gravity * np.cos(np.where(later, as_float32(3 * position), 3 * position))
        push = force * self.power - slope
        if action_is_float32:  # float32 force times a Python float: float32
            float32_push = as_float32(force * float(np.float32(self.power)))
            push = np.where(clipped, push, as_float32(float32_push - as_float32(slope)))

        # float32 velocity + float32 or Python float stays float32; anything + float64 is float64
        velocity_is_float32 = later & (clipped | action_is_float32)
        velocity = np.where(
            velocity_is_float32, as_float32(velocity + as_float32(push)), velocity + push
        )
        too_fast = velocity > _limit(velocity, velocity_is_float32, self.max_speed)
        too_slow = velocity < _limit(velocity, velocity_is_float32, -self.max_speed)
        velocity = np.where(too_fast, self.max_speed, np.where(too_slow, -self.max_speed, velocity))
        velocity_is_float32 &= ~(too_fast | too_slow)  # now a Python float
        velocity_is_python = too_fast | too_slow

        position_is_float32 = later & (velocity_is_float32 | velocity_is_python)
        position = np.where(
            position_is_float32, as_float32(position + as_float32(velocity)), position + velocity
        )
        too_far = position > _limit(position, position_is_float32, self.max_position)
        too_near = position < _limit(position, position_is_float32, self.min_position)
        position = np.where(
            too_far, self.max_position, np.where(too_near, self.min_position, position)
        )
        position_is_float32 &= ~(too_far | too_near)

        # an inelastic wall on the left
        at_wall = position == _limit(position, position_is_float32, self.min_position)
        stopped = at_wall & (velocity < 0)
        velocity = np.where(stopped, 0.0, velocity)
        velocity_is_float32 &= ~stopped
        terminated = (position >= _limit(position, position_is_float32, self.goal_position)) & (
            velocity >= _limit(velocity, velocity_is_float32, self.goal_velocity)
        )
        # math.pow(a, 2) of the unclipped action, in float64
        rewards = np.where(terminated, 100.0, 0.0) - np.float_power(action, 2.0) * 0.1

        self.state[0], self.state[1] = as_float32(position), as_float32(velocity)
        self._fresh[:] = False
        return rewards, terminated

    def _observe(self) -> np.ndarray:
        return self.state.T.astype(np.float32)
