"""Running statistics that standardise what the networks see (observations) or learn from.

``RunningNorm`` keeps its statistics in buffers, so they are saved with the weights, broadcast
to Ray workers with them, and applied in evaluation as in training.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class RunningNorm(nn.Module):
    """Standardises observations by a running mean and variance: ``clip((x - mean) / std)``.

    The statistics are buffers, so they are saved with the network and broadcast with its
    weights. ``update`` folds in a batch with the parallel-variance formula (Chan et al. 1979);
    the agent calls it after each optimizer step, so the policy that collected a rollout and the
    one that is differentiated on it normalise alike.

    Args:
        dim: observation size.
        clip: bound on the standardised values.
    """

    def __init__(self, dim: int, clip: float = 10.0, eps: float = 1e-8) -> None:
        super().__init__()
        self.clip, self.eps = clip, eps
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("var", torch.ones(dim))
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))

    def forward(self, obs: Tensor) -> Tensor:
        return ((obs - self.mean) / (self.var + self.eps).sqrt()).clamp(-self.clip, self.clip)

    @classmethod
    def attach(cls, nets: list[nn.Module], device: torch.device | str) -> RunningNorm:
        """One instance over ``nets[0].encoder``'s features, set as every net's ``obs_norm``."""
        norm = cls(nets[0].encoder.out_dim).to(device)
        for net in nets:
            net.obs_norm = norm
        return norm

    @torch.no_grad()
    def update(self, obs: Tensor, mask: Tensor | None = None) -> None:
        """Fold in ``obs`` ``[..., dim]`` (the entries where ``mask`` ``[...]`` is True)."""
        batch = obs.reshape(-1, obs.shape[-1]) if mask is None else obs[mask]
        n = batch.shape[0]
        if n == 0:
            return
        batch_mean = batch.mean(0)
        batch_var = batch.var(0, correction=0)
        total = self.count + n
        delta = batch_mean - self.mean
        self.mean += delta * (n / total).float()
        self.var.copy_(
            (
                self.var * self.count.float()
                + batch_var * n
                + delta.pow(2) * (self.count * n / total).float()
            )
            / total.float()
        )
        self.count.copy_(total)


__all__ = ["RunningNorm"]
