"""Rollouts: time-major batches of experience collected from a Gymnasium vector environment.

The vector environment runs in Gymnasium's *next-step* autoreset mode (the only mode every
vectorisation supports, the numpy-vectorised CartPole included). In that mode the step that ends
an episode returns the episode's true final observation, and the *following* step ignores its
action, resets, and returns the first observation of a new episode with reward 0. That following
step is a dead transition: ``mask`` is False there and no update may learn from it.

Shapes (T steps, N environments):

| field          | shape                | meaning                                                  |
|----------------|----------------------|----------------------------------------------------------|
| ``obs``        | ``[T + 1, N, ...]``  | observations as the space gives them (dtype and Dict or  |
|                |                      | Tuple structure kept); ``obs[t + 1]`` followed step ``t``|
| ``actions``    | ``[T, N, *A]``       | sampled actions (policy's representation)                |
| ``rewards``    | ``[T, N]``           | float32 rewards                                          |
| ``terminated`` | ``[T, N]``           | the episode ended in a terminal state at step ``t``      |
| ``truncated``  | ``[T, N]``           | the episode was cut (time limit) at step ``t``           |
| ``mask``       | ``[T, N]``           | step ``t`` is a real transition to learn from            |

``obs[t + 1]`` at a step with ``terminated | truncated`` is the true final observation, so the
value of ``obs[1:]`` is exactly the ``next_values`` that returns and GAE need, truncation
bootstrap included.

**Action masks**: where observations carry an ``action_mask`` (see ``pgrad.policies``), a mask
that allows no action is an error naming the environment and step, unless that environment's
action is ignored anyway (the dead step after an episode's end, or an environment waiting for
the others in ``collect_episodes``).

**Episode infos**: the info entries named by the environment's ``metadata["episode_info_keys"]``
(e.g. ``exact`` of the token tasks, ``tour_length`` of TSP) and the collector's ``info_keys`` are
kept for every episode that ends, as floats, in ``Rollout.episode_infos``; with no keys the step
loop does nothing more than before.

A ``Batch`` is what an update learns from: the rollout's observations and actions with what
the algorithm prepared once per rollout (advantages, value targets, old log-probabilities),
time-major ``[T, N]``, sliced into shuffled minibatches when an algorithm takes several steps.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, fields, replace

import numpy as np
import torch
from gymnasium.vector import AutoresetMode, VectorEnv
from torch import Tensor

from pgrad.episode_stats import step_reports
from pgrad.errors import NonFiniteError
from pgrad.obs import Obs, action_mask, leaves, map_obs, to_tensor
from pgrad.policies import Policy

ROLLOUT_FIELDS = ("obs", "actions", "rewards", "terminated", "truncated", "mask")
"""The time-major tensor fields of a ``Rollout`` (``obs`` may be a dict or tuple of tensors)."""


@dataclass
class Rollout:
    """A time-major batch of experience; see the module docstring for the shapes."""

    obs: Obs
    actions: Tensor
    rewards: Tensor
    terminated: Tensor
    truncated: Tensor
    mask: Tensor
    episode_returns: list[float] = field(default_factory=list)
    episode_lengths: list[int] = field(default_factory=list)
    raw_episode_returns: list[float] = field(default_factory=list)
    """The environment's own returns of the same episodes (``pgrad.episode_stats``), before
    any reward wrapper: empty when the environment reports none, else one per entry of
    ``episode_returns`` (NaN for an episode whose end carried no report, e.g. one cut by
    ``collect_episodes``' ``max_steps``)."""
    weights_version: int = 0
    episode_infos: dict[str, list[float]] = field(default_factory=dict)
    """Per info key, its value at the end of each episode that ended, in ``episode_returns``'
    order (see the module docstring)."""
    reset_seeds: int | list[int] | None = None
    """The reset seed(s) that started these episodes (``collect_episodes``), else ``None``."""

    @property
    def num_steps(self) -> int:
        """Environment steps taken to collect this rollout (dead transitions included)."""
        return int(self.rewards.numel())

    def to(self, device: torch.device | str) -> Rollout:
        return replace(
            self, **{k: map_obs(lambda x: x.to(device), getattr(self, k)) for k in ROLLOUT_FIELDS}
        )


@dataclass
class Batch:
    """What an update learns from, prepared once per rollout (see the module docstring).

    Every tensor has the same leading batch shape ``B``: ``[T, N]`` as prepared, ``[M]`` in a
    shuffled minibatch of ``M`` samples.

    | field             | shape         | meaning                                             |
    |-------------------|---------------|-----------------------------------------------------|
    | ``obs``           | ``[*B, ...]`` | observations the actions were taken in              |
    | ``actions``       | ``[*B, *A]``  | the actions                                         |
    | ``mask``          | ``[*B]``      | real transitions (False: dead or padding)           |
    | ``advantages``    | ``[*B]``      | what multiplies the score function (constants)      |
    | ``returns``       | ``[*B]``      | value targets (critic), or the Monte-Carlo returns  |
    | ``old_log_probs`` | ``[*B]``      | log-probabilities under the policy that collected   |
    | ``old_values``    | ``[*B]``      | the critic's values when the rollout was prepared   |
    | ``ref_log_probs`` | ``[*B]``      | log-probabilities under a reference policy (KL)     |

    ``stats`` holds the per-update diagnostics computed while preparing (explained variance,
    advantage statistics), logged once per update.
    """

    obs: Obs
    actions: Tensor
    mask: Tensor
    advantages: Tensor
    returns: Tensor | None = None
    old_log_probs: Tensor | None = None
    old_values: Tensor | None = None
    ref_log_probs: Tensor | None = None
    stats: dict[str, float] = field(default_factory=dict)

    def _map(self, fn: Callable[[Tensor], Tensor]) -> Batch:
        changed = {
            f.name: map_obs(fn, getattr(self, f.name))
            for f in fields(self)
            if f.name != "stats" and getattr(self, f.name) is not None
        }
        return replace(self, **changed)

    def __len__(self) -> int:
        return int(self.mask.numel())

    def flatten(self) -> Batch:
        """The batch dimensions merged into one: ``[T, N, ...] -> [T * N, ...]``."""
        dims = self.mask.dim()
        return self._map(lambda x: x.flatten(0, dims - 1)) if dims > 1 else self

    def __getitem__(self, index: Tensor) -> Batch:
        """The samples at ``index`` along the single batch dimension of a flattened batch."""
        return self._map(lambda x: x[index])

    def minibatches(
        self, num_minibatches: int, generator: torch.Generator | None = None
    ) -> Iterator[Batch]:
        """The whole batch as one minibatch, or a shuffled partition into ``num_minibatches``.

        With one minibatch the batch keeps its ``[T, N]`` shape and order; with more it is
        flattened, permuted with ``generator`` and cut into slices of near-equal size.
        """
        if num_minibatches <= 1:
            yield self
            return
        flat = self.flatten()
        order = torch.randperm(len(flat), generator=generator).to(self.mask.device)
        for index in order.tensor_split(num_minibatches):
            yield flat[index]


def _all_finite(x: Tensor) -> bool:
    """``torch.isfinite(x).all()``; through numpy for CPU floats, where it costs a fifth."""
    if x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64):
        return bool(np.isfinite(x.detach().numpy()).all())
    return bool(torch.isfinite(x).all())


class Collector:
    """Collects ``Rollout``s from a vector environment with one policy call per step.

    The step loop does only what each step needs: one batched policy call, one environment step,
    and writes into buffers allocated once per rollout, all under ``torch.inference_mode``. Everything that can be done for the
    whole ``[T, N]`` batch at once (masks, reward checks, episode statistics) is done after the
    loop, so its cost is paid per rollout, not per step. Observations are checked every step,
    before the policy sees them, so that a NaN is reported where it came from.

    Episode statistics carry across rollouts (an episode may span several), so the returns in
    ``Rollout.episode_returns`` are those of whole episodes. Where the environment reports its
    raw returns (``pgrad.episode_stats``), ``Rollout.raw_episode_returns`` holds them for the
    same episodes: reports are read only at the ends the collector counts, so an environment
    that ends an episode while it waits, masked, in ``collect_episodes`` adds none.
    """

    def __init__(
        self,
        envs: VectorEnv,
        policy: Policy,
        device: torch.device,
        seed: int,
        deterministic: bool = False,
        info_keys: Sequence[str] = (),
    ) -> None:
        mode = envs.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
        if AutoresetMode(mode) is not AutoresetMode.NEXT_STEP:
            raise ValueError(f"the collector needs next-step autoreset, the env uses {mode}")
        self.envs, self.policy, self.device = envs, policy, device
        self.num_envs = envs.num_envs
        self.seed = seed
        self.deterministic = deterministic
        """Act with the policy's most likely action instead of a sample (evaluation)."""
        declared = tuple(envs.metadata.get("episode_info_keys", ()))
        self.info_keys = tuple(dict.fromkeys((*declared, *info_keys)))
        """Info entries kept at every episode's end (see the module docstring)."""
        self._infos: dict[str, list[float]] = {key: [] for key in self.info_keys}
        self._obs: Obs | None = None
        self._prev_done = np.zeros(self.num_envs, dtype=bool)
        self._running_return = np.zeros(self.num_envs, dtype=np.float64)
        self._running_length = np.zeros(self.num_envs, dtype=np.int64)
        self._reports_raw = False
        """The environment has reported a raw return: from then on every episode gets one."""
        self._raw: tuple[np.ndarray, np.ndarray] | None = None  # this step's (returns, ended)

    # -- helpers -----------------------------------------------------------------------------
    def _observe(self, raw: object, step: int, live: np.ndarray | None = None) -> Obs:
        """The environments' observations as tensors, checked.

        Args:
            raw: what the vector environment returned.
            step: the global step, for messages.
            live: environments whose next action matters (default: all); only their action
                masks must allow an action.
        """
        obs = to_tensor(raw, self.device)
        for leaf in leaves(obs):
            if leaf.is_floating_point() and not _all_finite(leaf):
                env = int((~torch.isfinite(leaf)).flatten(1).any(1).nonzero()[0])
                raise NonFiniteError(
                    f"non-finite observation from environment {env} at step {step}"
                )
        mask = action_mask(obs)
        if mask is not None:
            empty = ~mask.bool().flatten(1).any(1).cpu().numpy()
            if live is not None:
                empty &= live
            if empty.any():
                env = int(np.flatnonzero(empty)[0])
                raise ValueError(
                    f"the action mask of environment {env} allows no action at step {step}"
                )
        return obs

    def reset(self, seed: int | list[int] | None) -> None:
        raw, _ = self.envs.reset(seed=seed)
        self._obs = self._observe(raw, 0)
        self._prev_done[:] = False
        self._running_return[:] = 0.0
        self._running_length[:] = 0

    def _step(
        self, obs: Obs, step: int, live: np.ndarray | None = None
    ) -> tuple[Tensor, Obs, np.ndarray, np.ndarray, np.ndarray]:
        """One policy call and one environment step; call under ``torch.inference_mode``.

        Returns the action, the next observation, and the raw rewards, terminated and truncated
        arrays ``[N]`` as the environment gave them. ``live`` (default: all) are the
        environments still acting after this step, whose masks are checked.
        """
        dist = self.policy(obs)
        action = self.policy.mode(dist) if self.deterministic else dist.sample()
        raw, rewards, terminated, truncated, infos = self.envs.step(self.policy.to_env(action))
        self._raw = step_reports(infos)
        if self._raw is not None:
            self._reports_raw = True
        done = np.asarray(terminated) | np.asarray(truncated)
        if self.info_keys and done.any():
            self._record_infos(infos, done if live is None else done & live)
        live = ~done if live is None else live & ~done
        return action, self._observe(raw, step, live), rewards, terminated, truncated

    def _record_infos(self, info: dict, ended: np.ndarray) -> None:
        """Keep ``info[key]`` of the environments whose episode ended (``ended [N]``)."""
        for key in self.info_keys:
            if key not in info:
                continue
            present = np.asarray(info.get(f"_{key}", np.ones_like(ended)), dtype=bool)
            values = np.asarray(info[key], dtype=np.float64)
            self._infos[key].extend(values[ended & present].tolist())

    @staticmethod
    def _check_rewards(rewards: np.ndarray, step_offset: int) -> None:
        """Raise ``NonFiniteError`` naming the first non-finite reward of ``rewards [T, N]``."""
        if not np.isfinite(rewards).all():
            t, env = (int(i[0]) for i in np.nonzero(~np.isfinite(rewards)))
            num_envs = rewards.shape[1]
            raise NonFiniteError(
                f"non-finite reward {rewards[t, env]} from environment {env} "
                f"at step {step_offset + t * num_envs}"
            )

    def _track_episodes(
        self,
        rewards: np.ndarray,
        done: np.ndarray,
        mask: np.ndarray,
        rollout: Rollout,
        raw_reports: np.ndarray | None = None,
    ) -> None:
        """Accumulate per-env return and length; record each episode that ends. Arrays are [T, N].

        ``raw_reports`` (NaN where none) are the raw returns the environment reported; the one
        at each recorded end becomes that episode's ``raw_episode_returns`` entry.

        Running sums over time (seeded with the returns carried in from the last rollout) give
        each episode's return as the difference of the sums at its end and at the previous end
        in the same environment. Episodes are recorded in the order they end (by step, then
        environment), as a step-by-step loop would record them.
        """
        cum_return = np.cumsum(np.where(mask, rewards, 0.0), axis=0, dtype=np.float64)
        cum_return += self._running_return
        cum_length = np.cumsum(mask, axis=0, dtype=np.int64) + self._running_length
        ends = done & mask
        end_t, end_env = np.divmod(np.flatnonzero(ends), ends.shape[1])  # by step, then env
        if end_t.size:
            # the sums at the previous end in the same environment (0 before the first)
            by_env = np.lexsort((end_t, end_env))
            prev_return = np.zeros(end_t.size)
            prev_length = np.zeros(end_t.size, dtype=np.int64)
            same_env = end_env[by_env][1:] == end_env[by_env][:-1]
            before = by_env[:-1][same_env]
            prev_return[by_env[1:][same_env]] = cum_return[end_t[before], end_env[before]]
            prev_length[by_env[1:][same_env]] = cum_length[end_t[before], end_env[before]]
            rollout.episode_returns.extend((cum_return[end_t, end_env] - prev_return).tolist())
            rollout.episode_lengths.extend((cum_length[end_t, end_env] - prev_length).tolist())
            if raw_reports is not None:
                rollout.raw_episode_returns.extend(raw_reports[end_t, end_env].tolist())
        # what carries into the next rollout: the sums since each environment's last end
        last_end = np.where(ends.any(0), ends.shape[0] - 1 - np.argmax(ends[::-1], axis=0), -1)
        envs = np.arange(ends.shape[1])
        ended = last_end >= 0
        self._running_return = cum_return[-1].copy()
        self._running_length = cum_length[-1].copy()
        self._running_return[ended] -= cum_return[last_end[ended], envs[ended]]
        self._running_length[ended] -= cum_length[last_end[ended], envs[ended]]

    # -- the two ways to collect -------------------------------------------------------------
    def collect_steps(self, num_steps: int, step_offset: int = 0) -> Rollout:
        """``num_steps`` steps in every environment, continuing the episodes in progress."""
        if self._obs is None:
            self.reset(self.seed)
        assert self._obs is not None
        T, N = num_steps, self.num_envs
        # allocated outside inference mode so that an update can backpropagate through them;
        # observations are copied in at once because an environment may reuse its arrays
        obs = map_obs(
            lambda x: torch.empty((T + 1, *x.shape), dtype=x.dtype, device=self.device), self._obs
        )
        _put(obs, 0, self._obs)
        action_list = []
        rewards = np.empty((T, N), dtype=np.float32)
        terminated = np.empty((T, N), dtype=bool)
        truncated = np.empty((T, N), dtype=bool)
        raw_returns = np.zeros((T, N))
        raw_ended = np.zeros((T, N), dtype=bool)
        with torch.inference_mode():
            for t in range(T):
                action, next_obs, rewards[t], terminated[t], truncated[t] = self._step(
                    _at(obs, t), step_offset + t * N
                )
                if self._raw is not None:
                    raw_returns[t], raw_ended[t] = self._raw
                _put(obs, t + 1, next_obs)
                action_list.append(action)
        self._check_rewards(rewards, step_offset)
        # next-step autoreset: the step after an episode ended is dead (see the module docstring)
        done = terminated | truncated
        mask = np.empty((T, N), dtype=bool)
        mask[0] = ~self._prev_done
        np.logical_not(done[:-1], out=mask[1:])
        self._prev_done = done[-1].copy()
        self._obs = map_obs(lambda x: x[T].clone(), obs)
        return self._finish(
            obs,
            torch.stack(action_list),
            rewards,
            terminated,
            truncated,
            mask,
            np.where(raw_ended, raw_returns, np.nan),
        )

    def collect_episodes(
        self, reset_seed: int | list[int] | None, max_steps: int, step_offset: int = 0
    ) -> Rollout:
        """One whole episode in every environment, each started by a reset with ``reset_seed``.

        Environments whose episode ended wait (masked) until the last one ends. An episode still
        running after ``max_steps`` steps is marked truncated there.
        """
        self.reset(reset_seed)
        assert self._obs is not None
        N = self.num_envs
        obs_list, action_list = [self._obs], []
        reward_list, term_list, trunc_list, mask_list = [], [], [], []
        nothing = np.full(N, np.nan)
        raw_list = []
        running = np.ones(N, dtype=bool)
        t = 0
        with torch.inference_mode():
            while running.any() and t < max_steps:
                action, next_obs, rewards, terminated, truncated = self._step(
                    obs_list[-1], step_offset + t * N, running
                )
                obs_list.append(next_obs)
                action_list.append(action)
                reward_list.append(rewards)
                term_list.append(terminated)
                trunc_list.append(truncated)
                mask_list.append(running.copy())
                if self._raw is None:
                    raw_list.append(nothing)
                else:
                    reported, ended = self._raw
                    raw_list.append(np.where(ended, reported, np.nan))
                running &= ~(np.asarray(terminated) | np.asarray(truncated))
                t += 1
        rewards_arr = np.asarray(reward_list, dtype=np.float32)
        self._check_rewards(rewards_arr, step_offset)
        truncated_arr = np.stack(trunc_list)
        truncated_arr[-1] |= running  # cut by max_steps: the episode did not end on its own
        # the environments are mid-autoreset now; the next collect_episodes resets them anyway
        self._obs = None
        # stacked outside inference mode, so that an update can backpropagate through them
        return self._finish(
            map_obs(lambda *xs: torch.stack(xs), *obs_list),
            torch.stack(action_list),
            rewards_arr,
            np.stack(term_list),
            truncated_arr,
            np.stack(mask_list),
            np.stack(raw_list),
        )

    def _finish(
        self,
        obs: Obs,
        actions: Tensor,
        rewards: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
        mask: np.ndarray,
        raw_reports: np.ndarray,
    ) -> Rollout:
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
        self._track_episodes(
            rewards,
            terminated | truncated,
            mask,
            rollout,
            raw_reports if self._reports_raw else None,
        )
        if self.info_keys:
            rollout.episode_infos = self._infos
            self._infos = {key: [] for key in self.info_keys}
        return rollout


def _at(obs: Obs, t: int) -> Obs:
    """``obs[t]`` of every leaf."""
    return map_obs(lambda x: x[t], obs)


def _put(buffer: Obs, t: int, value: Obs) -> None:
    """``buffer[t] = value`` for every leaf (a copy: environments may reuse their arrays)."""
    map_obs(lambda b, x: b[t].copy_(x), buffer, value)
