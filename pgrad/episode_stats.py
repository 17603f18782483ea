"""Raw episodic returns: what the environment paid, whatever reward wrappers sit outside it.

A reward wrapper that an agent's ``make_env`` adds (``TransformReward``, ``NormalizeReward``,
``ClipReward``, per sub-environment or on the vector environment) changes the rewards the agent
learns from, and so the episodic returns the collector sums. To still say how well the task is
solved, ``pgrad.envs_util.make_vector_env`` puts a recorder *innermost*, next to the
environment, so that wrappers added later sit outside it:

* sync and async vector environments: Gymnasium's ``RecordEpisodeStatistics`` on each
  sub-environment, right after ``gymnasium.make``;
* numpy-vectorised ones: ``VectorEpisodeStatistics`` (below) on the vector environment.

At the step an episode ends both report it in the step's ``infos`` in Gymnasium's format under
``RAW_KEY``: ``infos["raw_episode"]["r"]`` (returns, ``[N]``, 0 where none ended),
``infos["raw_episode"]["l"]`` (lengths) and ``infos["_raw_episode"]`` (``[N]`` bool, the
environments that ended). A key of pgrad's own, not ``episode``, so that a user's own
``RecordEpisodeStatistics`` on top (which refuses an ``episode`` key already present) still
works. The collector (``pgrad.rollout.Collector``) reads these reports at the episode ends it
counts itself; an environment built without a recorder but with Gymnasium's
``RecordEpisodeStatistics`` under its default key ``episode`` is read the same way.

Building your own vector environment, keep raw returns with ``record_raw_returns``: first in
``gymnasium.make_vec(..., wrappers=[record_raw_returns, ...])``, or on a vector environment
before any vector reward wrapper.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv, VectorWrapper
from gymnasium.wrappers import RecordEpisodeStatistics

RAW_KEY = "raw_episode"
"""The ``infos`` key of the raw episode statistics (its mask: ``"_" + RAW_KEY``)."""

REPORT_KEYS = (RAW_KEY, "episode")
"""Keys the collector reads raw returns from, in order: pgrad's recorder, then Gymnasium's
``RecordEpisodeStatistics`` under its default key."""


class VectorEpisodeStatistics(VectorWrapper):
    """Episode returns and lengths of a next-step-autoreset vector environment, in ``infos``.

    Reports what ``gymnasium.wrappers.vector.RecordEpisodeStatistics`` reports (``"r"``,
    ``"l"`` and the mask, not the wall-clock ``"t"``) for less: two additions on ``[N]``
    arrays per step, the rest only at steps where episodes end, and there only on the
    environments that ended; no per-episode queues (see ``bench/raw_returns.py``).

    Next-step autoreset: the step after an episode's end resets that environment and starts
    the next episode, so its reward (0) and the step itself count in neither episode.

    Args:
        env: a vector environment of ``N`` copies in next-step autoreset mode.
        key: the ``infos`` key of the reports (``"_" + key`` for the mask).

    Raises:
        ValueError: an environment in another autoreset mode; a step whose ``infos`` already
            hold ``key``.
    """

    def __init__(self, env: VectorEnv, key: str = RAW_KEY) -> None:
        super().__init__(env)
        mode = env.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
        if AutoresetMode(mode) is not AutoresetMode.NEXT_STEP:
            raise ValueError(f"VectorEpisodeStatistics needs next-step autoreset, got {mode}")
        self._key = key
        self._returns = np.zeros(self.num_envs, dtype=np.float64)
        self._lengths = np.zeros(self.num_envs, dtype=np.int64)
        self._ended = np.zeros(0, dtype=np.int64)  # environments whose next step is a reset

    def reset(
        self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        obs, infos = self.env.reset(seed=seed, options=options)
        reset_mask = (options or {}).get("reset_mask")
        if reset_mask is None:
            reset_mask = np.ones(self.num_envs, dtype=bool)
        self._returns[reset_mask] = 0.0
        self._lengths[reset_mask] = 0
        self._ended = self._ended[~reset_mask[self._ended]]
        return obs, infos

    def step(self, actions: Any) -> tuple[Any, Any, Any, Any, dict[str, Any]]:
        obs, rewards, terminated, truncated, infos = self.env.step(actions)
        self._returns += rewards
        self._lengths += 1
        if self._ended.size:  # reset steps: the next episode starts after them, at 0
            self._returns[self._ended] = 0.0
            self._lengths[self._ended] = 0
        done = np.logical_or(terminated, truncated)
        self._ended = np.flatnonzero(done)
        if self._ended.size:
            if self._key in infos:
                raise ValueError(f"infos already hold episode statistics under {self._key!r}")
            returns = np.zeros(self.num_envs)
            lengths = np.zeros(self.num_envs, dtype=np.int64)
            returns[self._ended] = self._returns[self._ended]
            lengths[self._ended] = self._lengths[self._ended]
            infos[self._key] = {"r": returns, "l": lengths}
            infos["_" + self._key] = done
        return obs, rewards, terminated, truncated, infos


EnvT = TypeVar("EnvT", gym.Env, VectorEnv)


def record_raw_returns(env: EnvT) -> EnvT:
    """``env`` with a raw-return recorder: put it innermost, before any reward wrapper.

    A ``gymnasium.Env`` (a sub-environment: ``make_vec(..., wrappers=[record_raw_returns,
    ...])``) gets Gymnasium's ``RecordEpisodeStatistics``; a ``VectorEnv`` (a numpy-vectorised
    one, in next-step autoreset mode) gets ``VectorEpisodeStatistics``. Both report under
    ``RAW_KEY``.
    """
    if isinstance(env, VectorEnv):
        return VectorEpisodeStatistics(env)
    return RecordEpisodeStatistics(env, stats_key=RAW_KEY)


def step_reports(infos: dict[str, Any]) -> tuple[np.ndarray, np.ndarray] | None:
    """The raw returns reported at one vector step: ``(returns, ended)``, both ``[N]``, the
    returns meaningful where ``ended``; ``None`` when the step reports none (``REPORT_KEYS``)."""
    for key in REPORT_KEYS:
        ended = infos.get("_" + key)
        if ended is not None:
            return infos[key]["r"], ended
    return None


def returns_differ(raw: Sequence[float], returns: Sequence[float]) -> bool:
    """Whether some episode's raw return differs from its training return.

    NaN (no raw figure) differs from nothing. Equal to float32 precision counts as equal: the
    collector sums rewards stored as float32, a recorder sums them as the environment gives
    them (Pendulum's are float64).
    """
    raw_arr, ret_arr = np.asarray(raw, dtype=np.float64), np.asarray(returns, dtype=np.float64)
    if raw_arr.shape != ret_arr.shape or raw_arr.size == 0:
        return False
    known = np.isfinite(raw_arr)
    return bool(np.any(~np.isclose(raw_arr[known], ret_arr[known], rtol=1e-5, atol=1e-4)))
