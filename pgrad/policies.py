"""Policies: an encoder and a head that map observations to a fresh ``torch.distributions.Distribution``.

A policy is ``encoder -> obs_norm -> net -> distribution``: the encoder (``pgrad.encoders``,
chosen by the observation space) turns observations, as the space gives them, into features;
an optional running standardisation (``obs_norm``, set by the agent); an MLP ``net`` to the
distribution's parameters; and the head's distribution, chosen by the action space:

| action space      | distribution                                   | ``log_prob`` shape |
|-------------------|------------------------------------------------|--------------------|
| ``Discrete(n)``   | ``Categorical(logits)``                        | ``[B]``            |
| ``Box(shape)``    | ``Independent(Normal(mean, exp(log_std)), 1)`` | ``[B]``            |
| ``MultiDiscrete`` | ``Independent(Categorical(padded logits), 1)`` | ``[B]``            |
| ``MultiBinary(n)``| ``Independent(Bernoulli(logits), 1)``          | ``[B]``            |

``B`` is any batch shape (``[N]`` while acting, ``[T, N]`` in an update): every distribution has
one ``log_prob`` per sample, so it lines up with advantages of the same shape.

**Action masks.** A ``Dict`` observation with an ``action_mask`` entry (PettingZoo's
convention: 1 = allowed) masks ``Discrete`` and ``MultiDiscrete`` heads (``MultiDiscrete``: one
flat mask of ``sum(nvec)`` entries, component by component). A masked action's logit becomes the
most negative float, so it is never sampled nor chosen by ``mode``; its probability is exactly
0, so ``log_prob`` and ``entropy`` are those of the distribution over legal actions, and no
gradient reaches its logit. A row whose mask allows nothing gives a uniform distribution
rather than NaNs (the collector refuses such a row where an action matters: see
``pgrad.rollout``).

Box actions are sampled unbounded and **clipped to the space's bounds only when sent to the
environment** (``to_env``); the log-probability is that of the unclipped sample, which keeps the
score-function gradient exact for the policy as written (the clip is part of the environment).
"""

from __future__ import annotations

from collections.abc import Sequence

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from torch import Tensor, nn
from torch.distributions import Bernoulli, Categorical, Distribution, Independent, Normal

from pgrad.encoders import encoder_for
from pgrad.nn import mlp
from pgrad.obs import Obs, action_mask

ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "relu": nn.ReLU}


# -- distributions ---------------------------------------------------------------------------
_FEW_ACTIONS = 16
"""Below this many actions, large batches are normalised across the batch (see below)."""


def log_normalize(logits: Tensor) -> Tensor:
    """``log_softmax`` over the last dimension, computed the fast way for the shape.

    ``log p_i = x_i - m - log sum_j exp(x_j - m)`` with ``m = max_j x_j``. For few actions and
    a large batch (an update's ``[T, N, 2]``), ``torch.log_softmax`` reduces each row of 2 to
    15 numbers on its own, 2-10x slower than laying the actions out first (``[K, *B]``) and
    reducing across the batch, which vectorises; its backward likewise. Otherwise (many
    actions, or a small batch such as one environment step's) it is ``torch.log_softmax``. The
    two agree to a few units in the last place. ``m`` carries no gradient: the result does
    not depend on it.

    Args:
        logits: ``[*B, K]`` unnormalised log-probabilities.

    Returns:
        ``[*B, K]`` log-probabilities, contiguous.
    """
    actions = logits.shape[-1]
    if actions >= _FEW_ACTIONS or logits.numel() < 4096:
        return logits.log_softmax(-1)
    by_action = logits.movedim(-1, 0).contiguous()  # [K, *B]
    shifted = by_action - by_action.amax(0).detach()
    return (shifted - shifted.exp().sum(0).log()).movedim(0, -1).contiguous()


class GumbelCategorical(Categorical):
    """``Categorical`` with a fast sampler (the Gumbel-max trick) and fused log-prob and entropy.

    ``argmax_i(logits_i + g_i)`` with i.i.d. standard Gumbel noise ``g_i = -log(e_i)``,
    ``e_i ~ Exp(1)``, is distributed exactly as ``Categorical(logits=logits)`` (Gumbel, 1954;
    Maddison, Tarlow and Minka, 2014, "A* Sampling"). It needs neither the softmax nor
    ``torch.multinomial`` of ``Categorical.sample``, which on a CPU cost more than the rest of a
    small policy's forward pass: sampling is 3x faster at batch 8 to 1,024.

    The logits are normalised once (:func:`log_normalize`), and both ``log_prob`` and
    ``entropy`` read the normalised log-probabilities ``l``: ``log_prob(a) = l_a`` (one gather,
    where ``Categorical`` broadcasts the actions against the logits first) and
    ``H = -sum_i exp(l_i) l_i`` (``Categorical`` computes a second softmax for ``probs``). On an
    update's ``[16, 512, 2]`` batch the three, forward and backward, cost a third of
    ``Categorical``'s; the values agree to float rounding. ``probs``, ``mode`` and ``log_prob``
    of sample-shaped actions are ``Categorical``'s. A masked action (logit
    ``MASKED_LOGIT``) has ``exp(l) = 0``: it adds exactly 0 to the entropy and gets no
    gradient. Built from logits only.

    Example:
        >>> dist = GumbelCategorical(logits=torch.tensor([[0.0, 20.0], [20.0, 0.0]]))
        >>> dist.sample()
        tensor([1, 0])
    """

    def __init__(self, logits: Tensor, validate_args: bool | None = None) -> None:
        if logits.dim() < 1:
            raise ValueError("logits must be at least one-dimensional")
        # what Categorical.__init__ sets for logits, normalised
        self.logits = log_normalize(logits)
        self._param = self.logits
        self._num_events = logits.shape[-1]
        Distribution.__init__(self, logits.shape[:-1], validate_args=validate_args)

    def sample(self, sample_shape: Sequence[int] = ()) -> Tensor:
        shape = self._extended_shape(torch.Size(sample_shape)) + (self._num_events,)
        with torch.no_grad():
            exponential = torch.empty(shape, dtype=self.logits.dtype, device=self.logits.device)
            # an exact 0 would make the noise +inf (see pgrad.estimators.gumbel_softmax)
            exponential.exponential_().clamp_(min=torch.finfo(self.logits.dtype).tiny)
            return (self.logits.expand(shape) - exponential.log_()).argmax(-1)

    def log_prob(self, value: Tensor) -> Tensor:
        if value.shape != self.batch_shape:  # sample-shaped: Categorical broadcasts
            return super().log_prob(value)
        return self.logits.gather(-1, value.long().unsqueeze(-1)).squeeze(-1)

    def entropy(self) -> Tensor:
        # a logit of -inf gives 0 * -inf = nan; clamped, as in Categorical
        log_p = self.logits.clamp(min=torch.finfo(self.logits.dtype).min)
        return -(log_p.exp() * log_p).sum(-1)


# -- policies --------------------------------------------------------------------------------
MASKED_LOGIT = torch.finfo(torch.float32).min
"""The logit of a masked action: its probability underflows to exactly 0."""


class Policy(nn.Module):
    """Maps observations ``[*B, ...]`` to a distribution with batch shape ``B``.

    ``encoder`` turns observations into features ``[*B, encoder.out_dim]``; ``net`` (an MLP)
    maps them to the head's parameters. Subclasses (the heads) implement ``distribution``
    (parameters and an optional action mask to a distribution) and the two conversions
    ``to_env`` and ``mode``.

    Args:
        encoder: any module with an ``out_dim`` attribute (see ``pgrad.encoders``).
        out_dim: how many parameters the head needs.
        hidden: widths of the MLP's hidden layers.
        activation: ``tanh`` or ``relu``.
    """

    action_space: gym.Space

    def __init__(
        self, encoder: nn.Module, out_dim: int, hidden: Sequence[int], activation: str
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.obs_norm: nn.Module = nn.Identity()
        self.net = mlp(encoder.out_dim, hidden, out_dim, ACTIVATIONS[activation], output_gain=0.01)

    def forward(self, obs: Obs) -> Distribution:
        features = self.obs_norm(self.encoder(obs))
        return self.distribution(self.net(features), action_mask(obs))

    def distribution(self, out: Tensor, mask: Tensor | None = None) -> Distribution:
        raise NotImplementedError

    def mode(self, dist: Distribution) -> Tensor:
        """The most likely action (used by ``deterministic=True``)."""
        raise NotImplementedError

    def to_env(self, actions: Tensor) -> np.ndarray:
        """Convert sampled actions ``[N, ...]`` into the batch the vector environment expects."""
        raise NotImplementedError

    def _no_mask(self, mask: Tensor | None) -> None:
        if mask is not None:
            raise ValueError(
                f"action masks need Discrete or MultiDiscrete actions, not {self.action_space}"
            )


class CategoricalPolicy(Policy):
    """``Discrete(n)``: a categorical over ``n`` actions, maskable."""

    def __init__(
        self,
        encoder: nn.Module,
        space: spaces.Discrete,
        hidden: Sequence[int],
        activation: str = "tanh",
    ) -> None:
        super().__init__(encoder, int(space.n), hidden, activation)
        self.action_space = space
        self.start = int(space.start)

    def distribution(self, out: Tensor, mask: Tensor | None = None) -> Distribution:
        if mask is not None:
            out = out.masked_fill(~mask.bool(), MASKED_LOGIT)
        return GumbelCategorical(logits=out, validate_args=False)

    def mode(self, dist: Distribution) -> Tensor:
        return dist.logits.argmax(-1)  # type: ignore[attr-defined]

    def to_env(self, actions: Tensor) -> np.ndarray:
        return actions.cpu().numpy() + self.start


class GaussianPolicy(Policy):
    """Diagonal Gaussian with a state-independent learned log standard deviation."""

    def __init__(
        self,
        encoder: nn.Module,
        space: spaces.Box,
        hidden: Sequence[int],
        activation: str = "tanh",
        log_std_init: float = 0.0,
    ) -> None:
        self.dim = int(np.prod(space.shape))
        super().__init__(encoder, self.dim, hidden, activation)
        self.action_space = space
        self.log_std = nn.Parameter(torch.full((self.dim,), float(log_std_init)))
        self.register_buffer("low", torch.as_tensor(space.low, dtype=torch.float32).flatten())
        self.register_buffer("high", torch.as_tensor(space.high, dtype=torch.float32).flatten())

    def distribution(self, out: Tensor, mask: Tensor | None = None) -> Distribution:
        self._no_mask(mask)
        std = self.log_std.clamp(-20.0, 2.0).exp().expand_as(out)
        return Independent(Normal(out, std, validate_args=False), 1, validate_args=False)

    def mode(self, dist: Distribution) -> Tensor:
        return dist.mean

    def to_env(self, actions: Tensor) -> np.ndarray:
        clipped = torch.maximum(torch.minimum(actions, self.high), self.low)
        shape = (actions.shape[0], *self.action_space.shape)
        return clipped.cpu().numpy().reshape(shape).astype(self.action_space.dtype, copy=False)


class MultiCategoricalPolicy(Policy):
    """One Categorical per dimension; logits of unequal sizes are padded with a huge negative.

    A mask is one flat vector of ``sum(nvec)`` entries, the first ``nvec[0]`` for dimension 0
    and so on; it is scattered into the padded ``[len(nvec), max(nvec)]`` layout.
    """

    def __init__(
        self,
        encoder: nn.Module,
        space: spaces.MultiDiscrete,
        hidden: Sequence[int],
        activation: str = "tanh",
    ) -> None:
        nvec = np.asarray(space.nvec).flatten()
        self.sizes = [int(n) for n in nvec]
        self.width = max(self.sizes)
        super().__init__(encoder, len(self.sizes) * self.width, hidden, activation)
        self.action_space = space
        pad = torch.zeros(len(self.sizes), self.width)
        for i, n in enumerate(self.sizes):
            pad[i, n:] = MASKED_LOGIT
        self.register_buffer("pad", pad)
        self.register_buffer("start", torch.as_tensor(np.asarray(space.start).flatten()))
        where = [i * self.width + j for i, n in enumerate(self.sizes) for j in range(n)]
        self.register_buffer("mask_index", torch.as_tensor(where), persistent=False)

    def distribution(self, out: Tensor, mask: Tensor | None = None) -> Distribution:
        if mask is not None:
            legal = mask.new_zeros(
                (*mask.shape[:-1], len(self.sizes) * self.width), dtype=torch.bool
            )
            legal[..., self.mask_index] = mask.bool()
            out = out.masked_fill(~legal, MASKED_LOGIT)
        logits = out.unflatten(-1, (len(self.sizes), self.width)) + self.pad
        return Independent(
            GumbelCategorical(logits=logits, validate_args=False), 1, validate_args=False
        )

    def mode(self, dist: Distribution) -> Tensor:
        return dist.base_dist.logits.argmax(-1)  # type: ignore[attr-defined]

    def to_env(self, actions: Tensor) -> np.ndarray:
        shape = (actions.shape[0], *self.action_space.shape)
        return (actions + self.start).cpu().numpy().reshape(shape).astype(self.action_space.dtype)


class BernoulliPolicy(Policy):
    """``MultiBinary``: one Bernoulli per entry."""

    def __init__(
        self,
        encoder: nn.Module,
        space: spaces.MultiBinary,
        hidden: Sequence[int],
        activation: str = "tanh",
    ) -> None:
        self.dim = int(np.prod(space.shape))
        super().__init__(encoder, self.dim, hidden, activation)
        self.action_space = space

    def distribution(self, out: Tensor, mask: Tensor | None = None) -> Distribution:
        self._no_mask(mask)
        return Independent(Bernoulli(logits=out, validate_args=False), 1, validate_args=False)

    def mode(self, dist: Distribution) -> Tensor:
        return (dist.base_dist.logits > 0).float()  # type: ignore[attr-defined]

    def to_env(self, actions: Tensor) -> np.ndarray:
        shape = (actions.shape[0], *self.action_space.shape)
        return actions.cpu().numpy().reshape(shape).astype(self.action_space.dtype)


def policy_for(
    observation: gym.Space | nn.Module,
    action_space: gym.Space,
    hidden: Sequence[int] = (64, 64),
    activation: str = "tanh",
    log_std_init: float = 0.0,
) -> Policy:
    """The default policy for ``action_space``.

    Args:
        observation: the observation space (its default encoder is built, see
            ``pgrad.encoders.encoder_for``) or an encoder module with an ``out_dim``.
        action_space: picks the head (see the module table).
        hidden: the MLP between encoder and head.
        activation: ``tanh`` or ``relu``.
        log_std_init: the Gaussian head's initial log standard deviation.

    Raises:
        TypeError: for a space with no encoder or no head here (e.g. Dict or Text actions).
    """
    encoder = encoder_for(observation) if isinstance(observation, gym.Space) else observation
    if isinstance(action_space, spaces.Discrete):
        return CategoricalPolicy(encoder, action_space, hidden, activation)
    if isinstance(action_space, spaces.Box):
        if not np.all(np.isfinite(action_space.low) | np.isinf(action_space.low)):
            raise TypeError(f"Box action space has invalid bounds: {action_space}")
        return GaussianPolicy(encoder, action_space, hidden, activation, log_std_init)
    if isinstance(action_space, spaces.MultiDiscrete):
        return MultiCategoricalPolicy(encoder, action_space, hidden, activation)
    if isinstance(action_space, spaces.MultiBinary):
        return BernoulliPolicy(encoder, action_space, hidden, activation)
    raise TypeError(
        f"action space {action_space} is not supported: use Discrete, Box, MultiDiscrete or "
        "MultiBinary"
    )


class ValueFunction(nn.Module):
    """State-value critic ``V(s)``: observations ``[*B, ...] -> [*B]``.

    Args:
        observation: the observation space (its default encoder is built) or an encoder,
            e.g. the policy's own, to share it.
        hidden: widths of the MLP after the encoder.
        activation: ``tanh`` or ``relu``.
    """

    def __init__(
        self, observation: gym.Space | nn.Module, hidden: Sequence[int], activation: str = "tanh"
    ) -> None:
        super().__init__()
        self.encoder = (
            encoder_for(observation) if isinstance(observation, gym.Space) else observation
        )
        self.obs_norm: nn.Module = nn.Identity()
        self.net = mlp(self.encoder.out_dim, hidden, 1, ACTIVATIONS[activation], output_gain=1.0)

    def forward(self, obs: Obs) -> Tensor:
        return self.net(self.obs_norm(self.encoder(obs))).squeeze(-1)


def check_policy(policy: nn.Module) -> None:
    """Raise ``TypeError`` naming what a custom policy lacks of the contract.

    A policy is an ``nn.Module`` whose ``forward(obs)`` returns a ``torch.distributions``
    object with one ``log_prob`` per sample, with ``mode(dist)`` (the most likely action) and
    ``to_env(actions)`` (actions ``[N, ...]`` to the numpy batch the vector environment takes).
    Subclass :class:`Policy` to get all three.
    """
    if not isinstance(policy, nn.Module):
        raise TypeError(f"make_policy must return an nn.Module, got {type(policy).__name__}")
    missing = [name for name in ("mode", "to_env") if not callable(getattr(policy, name, None))]
    if type(policy).forward is nn.Module.forward:
        missing.insert(0, "forward")
    if missing:
        raise TypeError(
            f"policy {type(policy).__name__} lacks {', '.join(missing)}: a policy maps "
            "observations to a torch distribution and has mode(dist) and to_env(actions); "
            "subclass pgrad.Policy"
        )
