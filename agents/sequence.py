"""The sequence agent and its presets: token tasks and TSP through the one loop.

``Sequence`` is whole-sequence REINFORCE (:class:`pgrad.algos.SequenceAlgorithm`): one episode
per environment, one reward per sequence, groups of ``group_size`` completions per prompt, the
estimator named by ``baseline`` and the token aggregation by ``aggregation``. Token and tour
environments get their sequence model from ``Agent.make_policy`` (a causal transformer, Kool's
attention model); any other environment with whole-episode rewards works too, with the default
policy.

Besides the usual charts it logs ``charts/tokens_per_second`` (generated tokens, i.e. real
steps, per second of collecting and learning) and, from the environments' episode infos,
``charts/exact`` (token tasks) or ``charts/tour_length`` (TSP).
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import Tensor, nn

from pgrad.agent import Agent
from pgrad.algos import SequenceAlgorithm
from pgrad.envs_util import episode_cap
from pgrad.rollout import Collector, Rollout


class Sequence(Agent):
    """Whole-sequence REINFORCE: RLOO by default; GRPO, Dr. GRPO, REINFORCE++, POMO, greedy.

    ``baseline``: none, ema, loo (RLOO), group (GRPO), drgrpo, rpp (REINFORCE++), pomo, greedy
    (Kool's greedy rollout); ``aggregation``: seq_sum (unbiased), seq_mean, token_mean,
    token_sum_norm; ``kl_coef`` and ``kl_estimator`` (k1, k3) for a KL to the starting policy;
    ``seq_clip`` for PPO's clipped ratio per token over ``update_epochs x num_minibatches`` steps.
    """

    name = "sequence"
    algorithm_class = SequenceAlgorithm
    defaults = {
        "rollout": "episodes",
        "baseline": "loo",
        "group_size": 4,
        "num_envs": 64,
        "gamma": 1.0,
        "normalize_advantages": False,
        "learning_rate": 1e-3,
        "max_grad_norm": 1.0,
        "eval_episodes": 100,
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.config.baseline == "greedy":
            self.algorithm.greedy_rollout = self.greedy_returns
        self._greedy_envs = None
        self._cycle_start = time.perf_counter()

    def greedy_returns(self, module: nn.Module, reset_seeds: Any) -> Tensor:
        """Rewards ``[N]`` of greedy decodes by ``module`` of the episodes ``reset_seeds`` start
        (the training environments' construction, so the same seeds give the same prompts)."""
        if self._greedy_envs is None:
            self._greedy_envs = self.make_env()
        envs = self._greedy_envs
        collector = Collector(envs, module, self.device, self.config.seed, deterministic=True)
        with torch.inference_mode():
            rollout = collector.collect_episodes(
                reset_seeds, episode_cap(envs, self.config.max_episode_steps)
            )
        return torch.where(rollout.mask, rollout.rewards, 0.0).sum(0)

    def collect(self) -> Rollout:
        self._cycle_start = time.perf_counter()
        return super().collect()

    def update(self, rollout: Rollout) -> dict[str, float]:
        metrics = super().update(rollout)
        if metrics:
            elapsed = time.perf_counter() - self._cycle_start
            metrics["charts/tokens_per_second"] = float(rollout.mask.sum()) / elapsed
        return metrics


class TokenTaskPreset(Sequence):
    """Shared defaults of the token-task presets: RLOO over 64 prompts x 4 completions."""

    defaults = {
        "num_envs": 256,
        "group_size": 4,
        "learning_rate": 1e-3,
        "total_steps": 150_000,
        "d_model": 64,
        "num_heads": 4,
        "num_layers": 2,
    }


class Reverse(TokenTaskPreset):
    """Reverse 5 symbols: greedy exact match 1.0 in 150,000 steps (about 30 s on 2 cores)."""

    name = "reverse"
    env_id = "pgrad/Reverse-v0"


class Copy(TokenTaskPreset):
    name = "copy"
    env_id = "pgrad/Copy-v0"


class Sort(TokenTaskPreset):
    name = "sort"
    env_id = "pgrad/Sort-v0"
    defaults = {"total_steps": 1_500_000}


class Addition(TokenTaskPreset):
    """Addition, least significant digit first. RL from the end-of-answer reward learns it
    slowly: within 120,000 sequences every estimator stays near 0.3 per-token accuracy
    (``bench/sequences.py``); this preset is the starting point, not a solution."""

    name = "addition"
    env_id = "pgrad/Addition-v0"
    defaults = {"env_kwargs": "least_significant_first=true", "total_steps": 1_000_000}


class TSP(Sequence):
    """TSP20 with POMO: every instance toured from each of its 20 cities, the shared mean of the
    20 tours as baseline, Kool's attention model."""

    name = "tsp"
    env_id = "pgrad/TSP-v0"
    defaults = {
        "baseline": "pomo",
        "group_size": 20,
        "num_envs": 640,
        "learning_rate": 1e-3,
        "total_steps": 2_000_000,
        "d_model": 128,
        "num_heads": 8,
        "num_layers": 3,
        "eval_episodes": 200,
        "checkpoint_every": 200_000,
    }


__all__ = ["TSP", "Addition", "Copy", "Reverse", "Sequence", "Sort"]
