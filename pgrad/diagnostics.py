"""Gradient diagnostics: how noisy is the policy gradient an update follows?"""

from __future__ import annotations

import math

import torch
from torch import nn

from pgrad.losses import reinforce_loss
from pgrad.rollout import Batch


def gradient_diagnostics(policy: nn.Module, batch: Batch, splits: int) -> dict[str, float]:
    """Variance and SNR of the policy gradient, from disjoint splits of ``batch`` over envs.

    With K splits giving gradients ``g_k`` of the REINFORCE loss on ``1/K`` of the environments,
    the full-batch gradient's total variance is estimated as ``sum_params Var_k(g_k) / K`` and
    its signal-to-noise ratio as ``||mean_k g_k||^2`` over that variance. It reads only the
    batch (observations, actions, advantages, mask), so it holds for any loss an agent uses.

    Args:
        policy: the policy whose parameters' gradient is measured.
        batch: a time-major ``[T, N]`` batch.
        splits: K, capped at ``N``; fewer than 2 gives ``{}``.
    """
    k = min(splits, batch.mask.shape[-1])
    if k < 2:
        return {}
    params = [p for p in policy.parameters() if p.requires_grad]
    log_prob = policy(batch.obs).log_prob(batch.actions)
    grads = []
    for chunk in torch.arange(log_prob.shape[-1], device=log_prob.device).chunk(k):
        loss = reinforce_loss(
            log_prob[..., chunk], batch.advantages[..., chunk], batch.mask[..., chunk]
        )
        g = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
        grads.append(
            torch.cat(
                [
                    (x if x is not None else torch.zeros_like(p)).flatten()
                    for x, p in zip(g, params, strict=True)
                ]
            )
        )
    stacked = torch.stack(grads)
    variance = float(stacked.var(dim=0).sum() / k)
    signal_power = float(stacked.mean(0).pow(2).sum())
    return {
        "diagnostics/grad_variance": variance,
        "diagnostics/grad_snr": signal_power / variance if variance > 0 else math.inf,
    }


__all__ = ["gradient_diagnostics"]
