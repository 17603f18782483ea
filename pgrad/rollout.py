"""Rollouts: time-major batches of experience collected from a Gymnasium vector environment.

The vector environment runs in Gymnasium's *next-step* autoreset mode (the only mode every
vectorisation supports, the numpy-vectorised CartPole included). In that mode the step that ends
an episode returns the episode's true final observation, and the *following* step ignores its
action, resets, and returns the first observation of a new episode with reward 0. That following
step is a dead transition: ``mask`` is False there and no update may learn from it.

Shapes (T steps, N environments):

| field          | shape                | meaning                                                  |
|----------------|----------------------|----------------------------------------------------------|
| ``obs``        | ``[T + 1, N, D]``    | encoded observations; ``obs[t + 1]`` followed step ``t`` |
| ``actions``    | ``[T, N, *A]``       | sampled actions (policy's representation)                |
| ``rewards``    | ``[T, N]``           | float32 rewards                                          |
| ``terminated`` | ``[T, N]``           | the episode ended in a terminal state at step ``t``      |
| ``truncated``  | ``[T, N]``           | the episode was cut (time limit) at step ``t``           |
| ``mask``       | ``[T, N]``           | step ``t`` is a real transition to learn from            |

``obs[t + 1]`` at a step with ``terminated | truncated`` is the true final observation, so the
value of ``obs[1:]`` is exactly the ``next_values`` that returns and GAE need, truncation
bootstrap included.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from gymnasium.vector import AutoresetMode, VectorEnv
from torch import Tensor

from pgrad.policies import Policy


class NonFiniteError(ValueError):
    """An observation or reward from the environment is NaN or infinite."""


@dataclass
class Rollout:
    """A time-major batch of experience; see the module docstring for the shapes."""

    obs: Tensor
    actions: Tensor
    rewards: Tensor
    terminated: Tensor
    truncated: Tensor
    mask: Tensor
    episode_returns: list[float] = field(default_factory=list)
    episode_lengths: list[int] = field(default_factory=list)
    weights_version: int = 0

    @property
    def num_steps(self) -> int:
        """Environment steps taken to collect this rollout (dead transitions included)."""
        return int(self.rewards.numel())

    def to(self, device: torch.device | str) -> Rollout:
        moved = {k: getattr(self, k).to(device) for k in
                 ("obs", "actions", "rewards", "terminated", "truncated", "mask")}
        return Rollout(**moved, episode_returns=self.episode_returns,
                       episode_lengths=self.episode_lengths, weights_version=self.weights_version)


Encoder = Callable[[Tensor], Tensor]


class Collector:
    """Collects ``Rollout``s from a vector environment with one policy call per step.

    Episode statistics carry across rollouts (an episode may span several), so the returns in
    ``Rollout.episode_returns`` are those of whole episodes.
    """

    def __init__(self, envs: VectorEnv, policy: Policy, encode: Encoder, device: torch.device,
                 seed: int) -> None:
        mode = envs.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
        if AutoresetMode(mode) is not AutoresetMode.NEXT_STEP:
            raise ValueError(f"the collector needs next-step autoreset, the env uses {mode}")
        self.envs, self.policy, self.encode, self.device = envs, policy, encode, device
        self.num_envs = envs.num_envs
        self.seed = seed
        self._obs: Tensor | None = None
        self._prev_done = np.zeros(self.num_envs, dtype=bool)
        self._running_return = np.zeros(self.num_envs, dtype=np.float64)
        self._running_length = np.zeros(self.num_envs, dtype=np.int64)

    # -- helpers -----------------------------------------------------------------------------
    def _observe(self, raw: np.ndarray, step: int) -> Tensor:
        obs = self.encode(torch.as_tensor(raw, device=self.device))
        if obs.is_floating_point() and not torch.isfinite(obs).all():
            env = int((~torch.isfinite(obs)).flatten(1).any(1).nonzero()[0])
            raise NonFiniteError(f"non-finite observation from environment {env} at step {step}")
        return obs

    def reset(self, seed: int | list[int] | None) -> None:
        raw, _ = self.envs.reset(seed=seed)
        self._obs = self._observe(raw, 0)
        self._prev_done[:] = False
        self._running_return[:] = 0.0
        self._running_length[:] = 0

    @torch.inference_mode()
    def _act(self, obs: Tensor) -> Tensor:
        return self.policy(obs).sample()

    def _step(self, actions: Tensor, step: int) -> tuple[Tensor, np.ndarray, np.ndarray, np.ndarray]:
        raw, rewards, terminated, truncated, _ = self.envs.step(self.policy.to_env(actions))
        rewards = np.asarray(rewards, dtype=np.float32)
        if not np.isfinite(rewards).all():
            env = int(np.flatnonzero(~np.isfinite(rewards))[0])
            raise NonFiniteError(f"non-finite reward {rewards[env]} from environment {env} at step {step}")
        return self._observe(raw, step), rewards, np.asarray(terminated), np.asarray(truncated)

    def _track_episodes(self, rewards: np.ndarray, done: np.ndarray, mask: np.ndarray,
                        rollout: Rollout) -> None:
        """Accumulate per-env return and length; record each episode that ends. Arrays are [T, N]."""
        for t in range(rewards.shape[0]):
            live = mask[t]
            self._running_return += np.where(live, rewards[t], 0.0)
            self._running_length += live
            ended = np.flatnonzero(done[t] & live)
            if ended.size:
                rollout.episode_returns.extend(self._running_return[ended].tolist())
                rollout.episode_lengths.extend(self._running_length[ended].tolist())
                self._running_return[ended] = 0.0
                self._running_length[ended] = 0

    # -- the two ways to collect -------------------------------------------------------------
    def collect_steps(self, num_steps: int, step_offset: int = 0) -> Rollout:
        """``num_steps`` steps in every environment, continuing the episodes in progress."""
        if self._obs is None:
            self.reset(self.seed)
        assert self._obs is not None
        T, N = num_steps, self.num_envs
        obs = torch.empty((T + 1, *self._obs.shape), dtype=self._obs.dtype, device=self.device)
        actions: Tensor | None = None
        rewards = np.empty((T, N), dtype=np.float32)
        terminated = np.empty((T, N), dtype=bool)
        truncated = np.empty((T, N), dtype=bool)
        mask = np.empty((T, N), dtype=bool)
        obs[0] = self._obs
        for t in range(T):
            action = self._act(obs[t])
            if actions is None:
                actions = torch.empty((T, *action.shape), dtype=action.dtype, device=self.device)
            actions[t] = action
            mask[t] = ~self._prev_done
            obs[t + 1], rewards[t], terminated[t], truncated[t] = self._step(action, step_offset + t * N)
            self._prev_done = terminated[t] | truncated[t]
        self._obs = obs[T].clone()
        assert actions is not None
        return self._finish(obs, actions, rewards, terminated, truncated, mask)

    def collect_episodes(self, reset_seed: int | list[int] | None, max_steps: int,
                         step_offset: int = 0) -> Rollout:
        """One whole episode in every environment, each started by a reset with ``reset_seed``.

        Environments whose episode ended wait (masked) until the last one ends. An episode still
        running after ``max_steps`` steps is marked truncated there.
        """
        self.reset(reset_seed)
        assert self._obs is not None
        N = self.num_envs
        obs_list, action_list = [self._obs], []
        reward_list, term_list, trunc_list, mask_list = [], [], [], []
        running = np.ones(N, dtype=bool)
        t = 0
        while running.any() and t < max_steps:
            action = self._act(obs_list[-1])
            next_obs, rewards, terminated, truncated = self._step(action, step_offset + t * N)
            obs_list.append(next_obs)
            action_list.append(action)
            reward_list.append(rewards)
            term_list.append(terminated)
            trunc_list.append(truncated)
            mask_list.append(running.copy())
            running &= ~(terminated | truncated)
            t += 1
        truncated_arr = np.stack(trunc_list)
        truncated_arr[-1] |= running  # cut by max_steps: the episode did not end on its own
        # the environments are mid-autoreset now; the next collect_episodes resets them anyway
        self._obs = None
        return self._finish(torch.stack(obs_list), torch.stack(action_list), np.stack(reward_list),
                            np.stack(term_list), truncated_arr, np.stack(mask_list))

    def _finish(self, obs: Tensor, actions: Tensor, rewards: np.ndarray, terminated: np.ndarray,
                truncated: np.ndarray, mask: np.ndarray) -> Rollout:
        rewards = np.where(mask, rewards, np.float32(0.0))
        terminated &= mask
        truncated &= mask
        rollout = Rollout(
            obs=obs,
            actions=actions,
            rewards=torch.from_numpy(rewards).to(self.device),
            terminated=torch.from_numpy(terminated).to(self.device),
            truncated=torch.from_numpy(truncated).to(self.device),
            mask=torch.from_numpy(mask).to(self.device),
        )
        self._track_episodes(rewards, terminated | truncated, mask, rollout)
        return rollout
