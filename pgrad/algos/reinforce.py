"""REINFORCE with a baseline, and its actor-critic form (A2C / VPG with GAE).

The score-function estimator (Williams 1992): for a batch of transitions,

    grad J ~= mean_t [ grad log pi(a_t | s_t) * A_t ]

where the advantage ``A_t`` is a return minus a baseline that does not depend on ``a_t``.
``prepare`` computes the advantages once per rollout:

| config ``baseline`` | advantage ``A_t``                                          | paper              |
|---------------------|------------------------------------------------------------|--------------------|
| ``none``            | ``G_t``, the discounted reward-to-go                        | Williams 1992      |
| ``ema``             | ``G_t - b``, ``b`` a moving average of past batches' returns | Williams 1992      |
| ``loo``             | ``G_t`` minus the mean of the other episodes of its group   | Kool et al. 2019 (RLOO) |
| ``group``           | ``(G_t - mean) / std`` over its group                       | Shao et al. 2024 (GRPO) |
| ``value``           | GAE(lambda) from a learned ``V``; ``lambda = 1``: ``G_t - V(s_t)`` | Schulman et al. 2016; Mnih et al. 2016 (A2C) |

and ``loss`` is the surrogate whose gradient is that estimate, minus an entropy bonus, plus
the critic's regression loss ``(V(s_t) - target_t)^2`` when there is a critic:

    L = -mean(log pi(a_t|s_t) * A_t) - c_H * mean(H[pi(.|s_t)]) + c_V * mean((V(s_t) - R_t)^2)

REINFORCE and A2C in pgrad differ only in what they learn from (whole episodes, or ``num_steps``
per environment bootstrapped from ``V``) and their defaults, so they share this one update; one
pass over the rollout, one optimizer step.
"""

from __future__ import annotations

from typing import Any

import torch

from pgrad.algos.base import Algorithm
from pgrad.baselines import EMABaseline, group_normalize, leave_one_out
from pgrad.config import SEQUENCE_BASELINES, Config
from pgrad.losses import (
    LossParts,
    entropy_bonus,
    explained_variance,
    normalize_advantages,
    reinforce_loss,
    value_loss,
)
from pgrad.obs import map_obs
from pgrad.returns import discounted_returns, gae
from pgrad.rollout import Batch, Rollout


def advantage_stats(advantages: torch.Tensor, mask: torch.Tensor | None) -> dict[str, float]:
    """``diagnostics/advantage_mean`` and ``advantage_std`` over the masked entries (all: None)."""
    masked = advantages if mask is None else advantages[mask]
    return {
        "diagnostics/advantage_mean": float(masked.mean()) if masked.numel() else 0.0,
        "diagnostics/advantage_std": float(masked.std()) if masked.numel() > 1 else 0.0,
    }


class ReinforceAlgorithm(Algorithm):
    """The score-function policy gradient with the config's baseline; see the module docstring."""

    name = "reinforce"

    def __init__(self, policy: torch.nn.Module, critic: torch.nn.Module | None, config: Config):
        super().__init__(policy, critic, config)
        if config.baseline in SEQUENCE_BASELINES:
            raise ValueError(
                f"baseline={config.baseline} compares whole sequences: use the sequence agent "
                "(--agent sequence)"
            )
        self.ema = EMABaseline(config.ema_decay)

    @torch.no_grad()
    def prepare(self, rollout: Rollout) -> Batch:
        batch = self.estimate(rollout)
        # before normalisation, which would make them 0 and 1: what the baseline left over
        real = batch.mask.flatten().nonzero().squeeze(-1)
        batch.stats.update(advantage_stats(batch.advantages.flatten()[real], None))
        if self.config.normalize_advantages:
            batch.advantages = normalize_advantages(batch.advantages, batch.mask)
        return batch

    @torch.no_grad()
    def estimate(self, rollout: Rollout) -> Batch:
        """Values, returns and advantages (not normalised) with the config's baseline."""
        c = self.config
        mask = rollout.mask
        stats: dict[str, float] = {}
        values = None
        if self.critic is not None:
            values_all = self.critic(rollout.obs)  # [T + 1, N]: obs[t + 1] follows step t
            values = values_all[:-1]
            advantages, returns = gae(
                rollout.rewards,
                values,
                values_all[1:],
                rollout.terminated,
                rollout.truncated,
                c.gamma,
                c.gae_lambda,
            )
            # the real transitions, found once (boolean indexing would search the mask each time)
            real = mask.flatten().nonzero().squeeze(-1)
            real_values, real_returns = values.flatten()[real], returns.flatten()[real]
            stats["diagnostics/explained_variance"] = explained_variance(real_values, real_returns)
            # well defined where explained variance is not: once every episode reaches the time
            # limit, the targets are all about 1 / (1 - gamma) and their variance vanishes
            error = (real_values - real_returns).pow(2).mean().sqrt()
            scale = real_returns.pow(2).mean().sqrt().clamp(min=1e-8)
            stats["diagnostics/value_error"] = float(error / scale) if real.numel() else 0.0
        else:
            # without a critic a truncated episode or a rollout's end bootstraps from 0
            returns = (
                discounted_returns(rollout.rewards, rollout.terminated, rollout.truncated, c.gamma)
                * mask
            )
            advantages = self.baseline_advantages(returns, mask)
        return Batch(
            obs=map_obs(lambda x: x[:-1], rollout.obs),
            actions=rollout.actions,
            mask=mask,
            advantages=advantages,
            returns=returns,
            old_values=values,
            stats=stats,
        )

    def baseline_advantages(self, returns: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``returns [T, N]`` minus the config's critic-free baseline."""
        c = self.config
        if c.baseline == "ema":
            # this batch is folded into the average only once its update is taken
            return returns - self.ema(returns)
        if c.baseline == "loo":
            return returns - leave_one_out(returns, c.group_size, mask)
        if c.baseline == "group":
            return group_normalize(returns, c.group_size)
        return returns

    def loss(self, batch: Batch, entropy_coef: float) -> LossParts:
        dist = self.policy(batch.obs)
        log_prob = dist.log_prob(batch.actions)
        assert log_prob.shape == batch.advantages.shape, (log_prob.shape, batch.advantages.shape)
        policy = reinforce_loss(log_prob, batch.advantages, batch.mask)
        if entropy_coef:
            entropy = entropy_bonus(dist, log_prob, batch.mask)
            total = policy - entropy_coef * entropy
        else:  # logged only: no graph to build and differentiate through
            with torch.no_grad():
                entropy = entropy_bonus(dist, log_prob, batch.mask)
            total = policy
        value = None
        if self.critic is not None:
            value = value_loss(self.critic(batch.obs), batch.returns, batch.mask)
            total = total + self.config.vf_coef * value
        return LossParts(total=total, policy=policy, entropy=entropy, value=value)

    def after_update(self, batch: Batch) -> None:
        if self.config.baseline == "ema" and self.critic is None:
            self.ema.update(batch.returns, batch.mask)

    def state_dict(self) -> dict[str, Any]:
        return {"ema": self.ema.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "ema" in state:
            self.ema.load_state_dict(state["ema"])
