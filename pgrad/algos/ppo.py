"""Proximal Policy Optimization with the clipped objective (Schulman et al. 2017, Algorithm 1).

```
for iteration = 1, 2, ...:
    run pi_old in N environments for T steps                      # the agent's collect()
    compute advantage estimates A_1 .. A_T (GAE)                  # prepare(), once, with
        and log pi_old(a_t|s_t), V_old(s_t)                       #   pi_old = the current pi
    optimise the surrogate L w.r.t. theta, K epochs, minibatches  # loss() per minibatch
    (stop early once the epoch's KL(pi_old || pi) > target_kl)    # stop_epochs()
```

with, per minibatch (eq. 9 of the paper, written as a loss to minimise)::

    r_t(theta) = pi_theta(a_t|s_t) / pi_old(a_t|s_t)
    L          = -mean min(r_t A_t, clip(r_t, 1 - eps, 1 + eps) A_t)      (clip_coef = eps)
                 + c_V mean (V(s_t) - R_t)^2                              (vf_coef; clip_value)
                 - c_H mean H[pi_theta(.|s_t)]                            (ent_coef)

The advantages come from the same estimate as A2C's (``ReinforceAlgorithm.estimate``: GAE with
the learned critic, or any other configured baseline), left unnormalised in the batch and
normalised within each minibatch when ``normalize_advantages`` is set (what OpenAI Baselines
and CleanRL do; Huang et al. 2022, "The 37 Implementation Details of PPO", detail 7). Old
log-probabilities are computed once per rollout, under ``torch.no_grad``, by the policy that
collected it (the weights have not moved yet), so at the first minibatch ``r_t = 1`` and the
gradient is exactly the REINFORCE one.

Each minibatch also measures how far the policy has moved (``LossParts.extras``, logged once per
update): ``diagnostics/approx_kl``, the k3 estimate ``mean((r - 1) - log r)`` of
``KL(pi_old || pi_theta)`` (Schulman 2020, "Approximating KL Divergence"), never negative;
``diagnostics/clip_fraction``, the share of samples with ``|r - 1| > eps``; and
``diagnostics/ratio_mean`` and ``diagnostics/ratio_max``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from pgrad.algos.reinforce import ReinforceAlgorithm, advantage_stats
from pgrad.losses import (
    LossParts,
    clipped_surrogate_loss,
    clipped_value_loss,
    entropy_bonus,
    normalize_advantages,
    value_loss,
)
from pgrad.rollout import Batch, Rollout


class PPOAlgorithm(ReinforceAlgorithm):
    """PPO-Clip: A2C's advantages, several epochs of minibatch steps on the clipped surrogate.

    Uses the config's ``clip_coef``, ``clip_value``, ``target_kl``, ``update_epochs`` and
    ``num_minibatches`` (the last two are the agent loop's). See the module docstring.
    """

    name = "ppo"

    @torch.no_grad()
    def prepare(self, rollout: Rollout) -> Batch:
        """Advantages, value targets, ``V_old`` and ``log pi_old`` of the rollout's real steps.

        Returns a flat batch ``[M]`` of the ``M`` real transitions in time-major order: the
        dead steps of next-step autoreset (``mask`` False) carry no gradient, so they are
        dropped here once rather than masked in every one of the update's many minibatches,
        and a minibatch of 64 holds 64 samples.
        """
        batch = self.estimate(rollout)  # values V_old(s_t), returns R_t, advantages A_t
        # before normalisation, which happens per minibatch: the advantages' own scale
        batch.stats.update(advantage_stats(batch.advantages, batch.mask))
        flat = batch.flatten()
        batch = flat[flat.mask.nonzero().squeeze(-1)]
        batch.old_log_probs = self.policy(batch.obs).log_prob(batch.actions)
        return batch

    def loss(self, batch: Batch, entropy_coef: float) -> LossParts:
        c = self.config
        if batch.old_log_probs is None:
            raise ValueError("PPO's loss needs batch.old_log_probs: build the batch with prepare")
        # prepare's batches hold real transitions only; a plain mean is then the masked one
        mask = None if bool(batch.mask.all()) else batch.mask
        dist = self.policy(batch.obs)
        log_prob = dist.log_prob(batch.actions)
        advantages = batch.advantages
        if c.normalize_advantages:
            advantages = normalize_advantages(advantages, mask)
        policy = clipped_surrogate_loss(
            log_prob, batch.old_log_probs, advantages, c.clip_coef, mask
        )
        if entropy_coef:
            entropy = entropy_bonus(dist, log_prob, mask)
            total = policy - entropy_coef * entropy
        else:  # logged only: no graph to build and differentiate through
            with torch.no_grad():
                entropy = entropy_bonus(dist, log_prob, mask)
            total = policy
        value = None
        if self.critic is not None:
            values = self.critic(batch.obs)
            if c.clip_value is None:
                value = value_loss(values, batch.returns, mask)
            else:
                value = clipped_value_loss(
                    values, batch.old_values, batch.returns, c.clip_value, mask
                )
            total = total + c.vf_coef * value
        extras = ratio_diagnostics(log_prob, batch.old_log_probs, c.clip_coef, mask)
        return LossParts(total=total, policy=policy, entropy=entropy, value=value, extras=extras)

    def stop_epochs(self, parts: list[LossParts]) -> bool:
        """Early stopping on ``target_kl``: the epoch's mean approximate KL exceeded it."""
        return approx_kl_exceeds(parts, self.config.target_kl)


def approx_kl_exceeds(parts: list[LossParts], target: float | None) -> bool:
    """Whether an epoch's steps' mean ``diagnostics/approx_kl`` exceeds ``target`` (``None``:
    never); ``parts`` are the epoch's :class:`LossParts`, each with that extra."""
    if target is None or not parts:
        return False
    kl = sum(float(p.extras["diagnostics/approx_kl"]) for p in parts) / len(parts)
    return kl > target


@torch.no_grad()
def ratio_diagnostics(
    log_prob: Tensor, old_log_prob: Tensor, clip_coef: float, mask: Tensor | None = None
) -> dict[str, Tensor]:
    """How far ``pi_theta`` is from ``pi_old`` on a minibatch, over its masked entries ``[*B]``.

    Returns:
        ``diagnostics/approx_kl`` (k3: ``mean((r - 1) - log r)``), ``diagnostics/clip_fraction``
        (share of ``|r - 1| > clip_coef``), ``diagnostics/ratio_mean``, ``diagnostics/ratio_max``;
        zeros (and a ratio of 1) when nothing is masked in.
    """
    log_ratio = log_prob - old_log_prob
    if mask is not None:
        log_ratio = log_ratio[mask.bool()]
    if log_ratio.numel() == 0:
        zero, one = log_prob.new_zeros(()), log_prob.new_ones(())
        return {
            "diagnostics/approx_kl": zero,
            "diagnostics/clip_fraction": zero,
            "diagnostics/ratio_mean": one,
            "diagnostics/ratio_max": one,
        }
    ratio = log_ratio.exp()
    return {
        "diagnostics/approx_kl": ((ratio - 1.0) - log_ratio).mean(),
        "diagnostics/clip_fraction": ((ratio - 1.0).abs() > clip_coef).float().mean(),
        "diagnostics/ratio_mean": ratio.mean(),
        "diagnostics/ratio_max": ratio.max(),
    }


__all__ = ["PPOAlgorithm", "approx_kl_exceeds", "ratio_diagnostics"]
