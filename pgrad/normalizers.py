"""Running statistics that standardise what the networks see (observations) or learn from
(rewards).

``RunningNorm`` keeps its statistics in buffers, so they are saved with the weights, broadcast
to Ray workers with them, and applied in evaluation as in training. ``RewardScaler`` rescales
only what the learner sees: the rewards of a rollout before its advantages are computed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
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


class RewardScaler:
    """Divides rewards by a running standard deviation of the discounted return, then clips.

    Each environment ``i`` keeps the discounted sum of its rewards so far in the episode in
    progress, ``G_t = r_t + gamma G_{t-1}`` (``G = 0`` before an episode's first step); a
    running variance ``sigma^2`` of every ``G_t`` seen so far (Chan et al. 1979) then scales::

        r'_t = clip(r_t / sqrt(sigma^2 + eps), -clip, clip)

    The mean is not subtracted: shifting rewards would change which policy is best where
    episodes end early. This is the reward scaling of OpenAI Baselines' ``VecNormalize``,
    studied by Engstrom et al. (2020, "Implementation Matters in Deep Policy Gradients") and
    listed by Huang et al. (2022, "The 37 Implementation Details of PPO"): it keeps the critic's
    targets near unit scale whatever the reward's units, so one learning rate, one value-loss
    weight and one ``clip_value`` fit many tasks.

    Shapes (``T`` steps, ``N`` environments): ``rewards``, ``terminated``, ``truncated`` and
    ``mask`` are ``[T, N]``, as in ``pgrad.rollout.Rollout``. A step with ``mask`` False (the
    dead step after an episode ended) has reward 0, adds nothing to the statistics and comes
    back as 0. The statistics are folded in with each rollout before it is scaled.

    Args:
        gamma: the discount of the return whose scale is estimated (the run's ``gamma``).
        clip: bound on the scaled rewards.
        eps: added to the variance.
    """

    def __init__(self, gamma: float, clip: float = 10.0, eps: float = 1e-8) -> None:
        self.gamma, self.clip, self.eps = gamma, clip, eps
        self.mean, self.var, self.count = 0.0, 1.0, 0
        self.returns: np.ndarray | None = None
        """``[N]`` the discounted return of each environment's episode in progress."""

    @torch.no_grad()
    def __call__(
        self, rewards: Tensor, terminated: Tensor, truncated: Tensor, mask: Tensor
    ) -> Tensor:
        """Fold in this rollout's discounted returns, then return its scaled rewards ``[T, N]``."""
        if not rewards.shape == terminated.shape == truncated.shape == mask.shape:
            raise ValueError(
                "rewards, terminated, truncated and mask must be [T, N] alike, got "
                f"{tuple(rewards.shape)}, {tuple(terminated.shape)}, {tuple(truncated.shape)}, "
                f"{tuple(mask.shape)}"
            )
        r = rewards.detach().cpu().numpy().astype(np.float64)
        done = (terminated | truncated).cpu().numpy()
        keep = mask.bool().cpu().numpy()
        if self.returns is None or self.returns.shape != r.shape[1:]:
            self.returns = np.zeros(r.shape[1:])
        seen = np.empty_like(r)
        for t in range(r.shape[0]):  # a forward recursion over time, vectorised over envs
            self.returns = np.where(keep[t], self.returns * self.gamma + r[t], 0.0)
            seen[t] = self.returns
            self.returns[done[t]] = 0.0  # the episode ended: the next one starts from 0
        self._fold_in(seen[keep])
        scaled = np.clip(r / np.sqrt(self.var + self.eps), -self.clip, self.clip)
        return torch.from_numpy(np.where(keep, scaled, 0.0)).to(rewards)

    def _fold_in(self, x: np.ndarray) -> None:
        n = x.size
        if n == 0:
            return
        total = self.count + n
        delta = float(x.mean()) - self.mean
        self.var = (
            self.var * self.count + float(x.var()) * n + delta**2 * self.count * n / total
        ) / total
        self.mean += delta * n / total
        self.count = total

    @property
    def std(self) -> float:
        """The current divisor, ``sqrt(sigma^2 + eps)``."""
        return float(np.sqrt(self.var + self.eps))

    def state_dict(self) -> dict[str, Any]:
        """The statistics; not the returns of episodes in progress, whose environments a
        checkpoint does not hold either (a resumed run starts fresh episodes)."""
        return {"mean": self.mean, "var": self.var, "count": self.count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.mean, self.var = float(state["mean"]), float(state["var"])
        self.count = int(state["count"])
        self.returns = None


__all__ = ["RewardScaler", "RunningNorm"]
