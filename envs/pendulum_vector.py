"""Pendulum-v1 as a numpy-vectorised Gymnasium ``VectorEnv``: N pendulums swung up at once.

The same task as Gymnasium's ``PendulumEnv``: a pendulum of mass 1 and length 1 under gravity
``g`` (default 10), torque in [-2, 2] (clipped), semi-implicit Euler steps of 0.05 s with the
angular velocity clipped to [-8, 8], reward ``-(θ² + 0.1 θ'² + 0.001 u²)`` with θ normalised to
[-π, π), no termination, truncated after 200 steps.

The same numbers as Gymnasium's environment: the state and observations bit for bit (the
operations run in Gymnasium's order and precision: the torque term in the action's float32);
the reward too, except that Gymnasium squares the float32 torque with the C library's ``powf``,
which numpy cannot call on an array, and here it is ``u * u`` in float32: the two differ in the
last bit about once in a thousand, which moves the reward by less than 1e-9.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.envs.classic_control import utils

from pgrad.envs.vector_base import ClassicControlVectorEnv


def angle_normalize(theta: np.ndarray) -> np.ndarray:
    """``theta`` shifted by whole turns into [-π, π)."""
    return ((theta + np.pi) % (2 * np.pi)) - np.pi


class PendulumVectorEnv(ClassicControlVectorEnv):
    """Pendulum-v1 for N copies at once.

    Observation ``[N, 3]`` float32: ``cos θ, sin θ, θ'``. Action ``[N, 1]``: torque, clipped to
    [-2, 2]. State ``[2, N]`` float64: ``θ, θ'``.

    Args:
        num_envs: N.
        max_episode_steps: truncation (Pendulum-v1 registers 200).
        render_mode: only ``None``; rendering is Gymnasium's single environment's job.
        g: gravitational acceleration.
    """

    max_speed = 8
    max_torque = 2.0
    dt = 0.05
    m = 1.0
    length = 1.0

    def __init__(
        self,
        num_envs: int = 1,
        max_episode_steps: int | None = 200,
        render_mode: str | None = None,
        g: float = 10.0,
    ) -> None:
        self.g = g
        high = np.array([1.0, 1.0, self.max_speed], dtype=np.float32)
        super().__init__(
            num_envs,
            max_episode_steps,
            spaces.Box(low=-high, high=high, dtype=np.float32),
            spaces.Box(low=-self.max_torque, high=self.max_torque, shape=(1,), dtype=np.float32),
            state_size=2,
            render_mode=render_mode,
        )

    def _start(self, rng: np.random.Generator, options: dict[str, Any] | None) -> np.ndarray:
        options = options or {}
        x = utils.verify_number_and_cast(options.get("x_init", np.pi))
        y = utils.verify_number_and_cast(options.get("y_init", 1.0))
        high = np.array([x, y])
        return rng.uniform(low=-high, high=high)

    def _advance(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        theta, theta_dot = self.state
        g, m, length, dt = self.g, self.m, self.length, self.dt
        u = np.clip(actions[:, 0], -self.max_torque, self.max_torque)
        # float_power squares as Gymnasium's scalar ** does (C pow); u * u stays in u's precision
        costs = (
            np.float_power(angle_normalize(theta), 2.0)
            + 0.1 * np.float_power(theta_dot, 2.0)
            + 0.001 * (u * u)
        )
        new_theta_dot = (
            theta_dot + (3 * g / (2 * length) * np.sin(theta) + 3.0 / (m * length**2) * u) * dt
        )
        new_theta_dot = np.clip(new_theta_dot, -self.max_speed, self.max_speed)
        self.state[0] = theta + new_theta_dot * dt
        self.state[1] = new_theta_dot
        return -costs, np.zeros(self.num_envs, dtype=bool)

    def _observe(self) -> np.ndarray:
        theta, theta_dot = self.state
        return np.stack((np.cos(theta), np.sin(theta), theta_dot), axis=1).astype(np.float32)
