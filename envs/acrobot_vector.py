"""Acrobot-v1 as a numpy-vectorised Gymnasium ``VectorEnv``: N copies, one RK4 step for all.

The same task as Gymnasium's ``AcrobotEnv`` (Sutton & Barto's book version of the dynamics,
Sutton 1996, "Generalization in Reinforcement Learning: Successful Examples Using Sparse Coarse
Coding"): two links, torque -1, 0 or +1 on the joint between them, reward -1 per step until the
free end rises one link length above the base (reward 0 on that step, terminated), truncated
after 500 steps.

Bit for bit the same numbers as Gymnasium's environment: every expression below evaluates its
floating-point operations in the order Gymnasium's scalar code does, and squares go through
``np.float_power`` (the C library's ``pow``, which numpy's scalar ``**`` calls too) rather than
``x * x``, which differs from ``pow`` in the last bit about once in a thousand and, Acrobot being
chaotic, would change trajectories after a few hundred steps.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.envs.classic_control import utils

from pgrad.envs.vector_base import ClassicControlVectorEnv

PI = np.pi


def _sq(x: np.ndarray) -> np.ndarray:
    """``x ** 2`` as numpy's scalar code computes it (C ``pow``)."""
    return np.float_power(x, 2.0)


def _wrap(x: np.ndarray, low: float, high: float) -> np.ndarray:
    """Shift ``x`` by whole periods ``high - low`` into ``[low, high]``, one period at a time."""
    period = high - low
    while (above := x > high).any():
        x = np.where(above, x - period, x)
    while (below := x < low).any():
        x = np.where(below, x + period, x)
    return x


class AcrobotVectorEnv(ClassicControlVectorEnv):
    """Acrobot-v1 for N copies at once.

    Observation ``[N, 6]`` float32: ``cos θ1, sin θ1, cos θ2, sin θ2, θ1', θ2'``. Action ``[N]``
    in {0, 1, 2}: torque -1, 0, +1. State ``[4, N]`` float64: ``θ1, θ2, θ1', θ2'``.

    Args:
        num_envs: N.
        max_episode_steps: truncation (Acrobot-v1 registers 500).
        render_mode: only ``None``; rendering is Gymnasium's single environment's job.
    """

    dt = 0.2
    LINK_LENGTH_1 = 1.0
    LINK_MASS_1 = 1.0
    LINK_MASS_2 = 1.0
    LINK_COM_POS_1 = 0.5
    LINK_COM_POS_2 = 0.5
    LINK_MOI = 1.0
    MAX_VEL_1 = 4 * PI
    MAX_VEL_2 = 9 * PI
    TORQUES = np.array([-1.0, 0.0, 1.0])

    def __init__(
        self, num_envs: int = 1, max_episode_steps: int | None = 500, render_mode: str | None = None
    ) -> None:
        high = np.array([1.0, 1.0, 1.0, 1.0, self.MAX_VEL_1, self.MAX_VEL_2], dtype=np.float32)
        super().__init__(
            num_envs,
            max_episode_steps,
            spaces.Box(low=-high, high=high, dtype=np.float32),
            spaces.Discrete(3),
            state_size=4,
            render_mode=render_mode,
        )
        self._fresh = np.zeros(self.num_envs, dtype=bool)  # reset since the last step
        self._max_velocity = np.array([[self.MAX_VEL_1], [self.MAX_VEL_2]])

    def _started(self, index: np.ndarray) -> None:
        self._fresh[index] = True

    def _start(self, rng: np.random.Generator, options: dict[str, Any] | None) -> np.ndarray:
        low, high = utils.maybe_parse_reset_bounds(options, -0.1, 0.1)
        # Gymnasium keeps the start in float32 and integrates in float64 from there
        return rng.uniform(low=low, high=high, size=(4,)).astype(np.float32)

    def _derivatives(
        self,
        theta1: np.ndarray,
        theta2: np.ndarray,
        dtheta1: np.ndarray,
        dtheta2: np.ndarray,
        torque: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(θ1', θ2', θ1'', θ2'')`` of each copy, all ``[N]``: the equations of motion.

        With the inertia terms ``d1``, ``d2`` and the gravity and Coriolis terms ``φ1``, ``φ2``
        of Sutton & Barto (1998, ch. 11.3)::

            θ2'' = (τ + d2/d1 φ1 - m2 l1 lc2 θ1'² sin θ2 - φ2) / (m2 lc2² + I2 - d2²/d1)
            θ1'' = -(d2 θ2'' + φ1) / d1
        """
        m1, m2 = self.LINK_MASS_1, self.LINK_MASS_2
        l1, lc1, lc2 = self.LINK_LENGTH_1, self.LINK_COM_POS_1, self.LINK_COM_POS_2
        i1 = i2 = self.LINK_MOI
        g = 9.8
        sin2, cos2 = np.sin(theta2), np.cos(theta2)
        # operands grouped as Gymnasium's expressions group them, for equal rounding
        d1 = m1 * lc1**2 + m2 * (l1**2 + lc2**2 + 2 * l1 * lc2 * cos2) + i1 + i2
        d2 = m2 * (lc2**2 + l1 * lc2 * cos2) + i2
        phi2 = m2 * lc2 * g * np.cos(theta1 + theta2 - PI / 2.0)
        phi1 = (
            -m2 * l1 * lc2 * _sq(dtheta2) * sin2
            - 2 * m2 * l1 * lc2 * dtheta2 * dtheta1 * sin2
            + (m1 * lc1 + m2 * l1) * g * np.cos(theta1 - PI / 2)
            + phi2
        )
        ddtheta2 = (torque + d2 / d1 * phi1 - m2 * l1 * lc2 * _sq(dtheta1) * sin2 - phi2) / (
            m2 * lc2**2 + i2 - _sq(d2) / d1
        )
        ddtheta1 = -(d2 * ddtheta2 + phi1) / d1
        return dtheta1, dtheta2, ddtheta1, ddtheta2

    def _advance(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self._fresh[:] = False
        torque = self.TORQUES[actions - self.single_action_space.start]
        y = self.state
        dt = self.dt
        half = dt / 2.0
        # one classic Runge-Kutta step of length dt, the torque held constant; each k is [4, N]
        k1 = self._slopes(y, torque)
        k2 = self._slopes(y + half * k1, torque)
        k3 = self._slopes(y + half * k2, torque)
        k4 = self._slopes(y + dt * k3, torque)
        y = y + dt / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
        angles = y[:2]
        if ((angles > PI) | (angles < -PI)).any():
            y[0], y[1] = _wrap(y[0], -PI, PI), _wrap(y[1], -PI, PI)
        np.clip(y[2:], -self._max_velocity, self._max_velocity, out=self.state[2:])
        self.state[:2] = angles
        theta1, theta2 = self.state[0], self.state[1]
        # the free end is higher than one link above the base
        terminated = -np.cos(theta1) - np.cos(theta2 + theta1) > 1.0
        rewards = np.where(terminated, 0.0, -1.0)
        return rewards, terminated

    def _slopes(self, y: np.ndarray, torque: np.ndarray) -> np.ndarray:
        """``d y / dt`` of the state ``y [4, N]`` (``_derivatives``, stacked)."""
        slopes = np.empty_like(y)
        slopes[0], slopes[1], slopes[2], slopes[3] = self._derivatives(*y, torque)
        return slopes

    def _observe(self) -> np.ndarray:
        obs = np.empty((self.num_envs, 6), dtype=np.float32)
        self._features(self.state, obs)
        if self._fresh.any():
            # a start state is float32 in Gymnasium, whose observation then takes cos and sin
            # in float32, not float64
            obs[self._fresh] = self._features(
                self.state[:, self._fresh].astype(np.float32),
                np.empty((int(self._fresh.sum()), 6), dtype=np.float32),
            )
        return obs

    @staticmethod
    def _features(state: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Write the ``[N, 6]`` observations of a ``[4, N]`` state, computed in the state's
        precision, into ``out`` (float32) and return it."""
        theta1, theta2, dtheta1, dtheta2 = state
        out[:, 0], out[:, 1] = np.cos(theta1), np.sin(theta1)
        out[:, 2], out[:, 3] = np.cos(theta2), np.sin(theta2)
        out[:, 4], out[:, 5] = dtheta1, dtheta2
        return out
