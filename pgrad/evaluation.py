"""Evaluation: whole episodes from seeded starts, in fresh environments, summarised."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from pgrad.config import check_seed
from pgrad.envs_util import accepts_seed_list, derive_seed, episode_cap
from pgrad.rollout import Collector


def evaluate(
    agent: Any, episodes: int = 10, deterministic: bool = True, seed: int | None = None
) -> dict[str, Any]:
    """Run ``episodes`` whole episodes of ``agent``'s policy in parallel, one per environment.

    The environments are new (``agent.make_env(episodes)``), reset with seeds derived from
    ``seed`` (default: the run's seed + 10,000, so evaluation never replays training starts);
    torch's global RNG is left as it was.

    Returns:
        ``{"episodes", "mean_return", "std_return", "mean_length", "returns", "lengths"}``,
        and ``mean_<key>`` for each episode-end info entry the environment declares or the
        config's ``log_info_keys`` names (e.g. ``mean_exact``, ``mean_tour_length``); the
        returns as the agent's environment gives them (after its reward wrappers). Where
        the environment reports its own returns for every episode (``pgrad.episode_stats``;
        the default ``make_env`` does), also ``"raw_returns"``, ``"mean_raw_return"`` and
        ``"std_raw_return"``: the same episodes' returns before any reward wrapper, equal to
        the others when there is none.
    """
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    if seed is not None:
        check_seed(seed)  # one line here, not Gymnasium's traceback from the first reset
    seed = agent.config.seed + 10_000 if seed is None else seed
    envs = agent.make_env(episodes)
    try:
        collector = Collector(
            envs, agent.policy, agent.device, seed, deterministic, agent.config.info_keys
        )
        reset_seed = (
            [derive_seed(seed, i) for i in range(episodes)] if accepts_seed_list(envs) else seed
        )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            rollout = collector.collect_episodes(
                reset_seed, episode_cap(envs, agent.config.max_episode_steps)
            )
    finally:
        envs.close()
    returns = np.asarray(rollout.episode_returns, dtype=np.float64)
    lengths = np.asarray(rollout.episode_lengths, dtype=np.float64)
    # the environment's episode-end infos (exact match, tour length, ...) as mean_<key>
    info_means = {
        f"mean_{key}": float(np.mean(values))
        for key, values in rollout.episode_infos.items()
        if values
    }
    result = {
        "episodes": int(returns.size),
        "mean_return": float(returns.mean()),
        "std_return": float(returns.std()),
        "mean_length": float(lengths.mean()),
        **info_means,
        "returns": returns.tolist(),
        "lengths": lengths.astype(int).tolist(),
    }
    raw = np.asarray(rollout.raw_episode_returns, dtype=np.float64)
    if raw.size == returns.size and np.isfinite(raw).all():
        result["raw_returns"] = raw.tolist()
        result["mean_raw_return"] = float(raw.mean())
        result["std_raw_return"] = float(raw.std())
    return result
