"""Policies: networks that map observations to a fresh ``torch.distributions.Distribution``.

| action space      | distribution                                   | ``log_prob`` shape |
|-------------------|------------------------------------------------|--------------------|
| ``Discrete(n)``   | ``Categorical(logits)``                        | ``[B]``            |
| ``Box(shape)``    | ``Independent(Normal(mean, exp(log_std)), 1)`` | ``[B]``            |
| ``MultiDiscrete`` | ``Independent(Categorical(padded logits), 1)`` | ``[B]``            |
| ``MultiBinary(n)``| ``Independent(Bernoulli(logits), 1)``          | ``[B]``            |

``B`` is any batch shape (``[N]`` while acting, ``[T, N]`` in an update): every distribution has
one ``log_prob`` per sample, so it lines up with advantages of the same shape.

Box actions are sampled unbounded and **clipped to the space's bounds only when sent to the
environment** (``to_env``); the log-probability is that of the unclipped sample, which keeps the
score-function gradient exact for the policy as written (the clip is part of the environment).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from torch import Tensor, nn
from torch.distributions import Bernoulli, Categorical, Distribution, Independent, Normal

from pgrad.nn import mlp

ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "relu": nn.ReLU}


# -- observations ---------------------------------------------------------------------------
def observation_encoder(space: gym.Space) -> tuple[int, Callable[[Tensor], Tensor]]:
    """How a batch of raw observations becomes a float tensor ``[B, obs_dim]``.

    Box, MultiBinary and MultiDiscrete are flattened to floats; Discrete is one-hot encoded.
    Dict and Tuple spaces are flattened by the environment wrapper (see ``Agent.make_env``).

    Returns:
        ``(obs_dim, encode)`` where ``encode`` maps ``Tensor[B, *space.shape]`` to ``[B, obs_dim]``.

    Raises:
        TypeError: for a space that has no fixed-size flat encoding (Graph, Sequence, Text, ...).
    """
    if isinstance(space, spaces.Discrete):
        n, start = int(space.n), int(space.start)
        return n, lambda obs: nn.functional.one_hot(obs.long() - start, n).float()
    if isinstance(space, spaces.Box | spaces.MultiBinary | spaces.MultiDiscrete):
        dim = int(np.prod(space.shape)) if space.shape else 1
        return dim, lambda obs: obs.reshape(obs.shape[0], dim).float()
    raise TypeError(
        f"observation space {space} is not supported: use Box, Discrete, MultiBinary, "
        "MultiDiscrete, or a Dict/Tuple of those"
    )


# -- distributions ---------------------------------------------------------------------------
class GumbelCategorical(Categorical):
    """``Categorical`` whose ``sample`` uses the Gumbel-max trick.

    ``argmax_i(logits_i + g_i)`` with i.i.d. standard Gumbel noise ``g_i = -log(e_i)``,
    ``e_i ~ Exp(1)``, is distributed exactly as ``Categorical(logits=logits)`` (Gumbel, 1954;
    Maddison, Tarlow and Minka, 2014, "A* Sampling"). It needs neither the softmax nor
    ``torch.multinomial`` of ``Categorical.sample``, which on a CPU cost more than the rest of a
    small policy's forward pass: sampling is 3x faster at batch 8 to 1,024. It also normalises
    the logits with one ``log_softmax`` instead of ``Categorical``'s ``logits - logsumexp``
    (7x faster at batch 8; the same values up to rounding). ``log_prob``, ``entropy``, ``probs``
    and ``mode`` are ``Categorical``'s. Built from logits only.

    Example:
        >>> dist = GumbelCategorical(logits=torch.tensor([[0.0, 20.0], [20.0, 0.0]]))
        >>> dist.sample()
        tensor([1, 0])
    """

    def __init__(self, logits: Tensor, validate_args: bool | None = None) -> None:
        if logits.dim() < 1:
            raise ValueError("logits must be at least one-dimensional")
        # what Categorical.__init__ sets for logits, normalised by log_softmax
        self.logits = logits.log_softmax(-1)
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


# -- policies --------------------------------------------------------------------------------
class Policy(nn.Module):
    """Maps encoded observations ``[*B, obs_dim]`` to a distribution with batch shape ``B``.

    Subclasses implement ``distribution`` (parameters from features) and the two conversions
    ``to_env`` and ``mode``; ``forward`` runs the body network.
    """

    action_space: gym.Space

    def __init__(self, obs_dim: int, out_dim: int, hidden: Sequence[int], activation: str) -> None:
        super().__init__()
        self.obs_norm: nn.Module = nn.Identity()
        self.net = mlp(obs_dim, hidden, out_dim, ACTIVATIONS[activation], output_gain=0.01)

    def forward(self, obs: Tensor) -> Distribution:
        return self.distribution(self.net(self.obs_norm(obs)))

    def distribution(self, out: Tensor) -> Distribution:
        raise NotImplementedError

    def mode(self, dist: Distribution) -> Tensor:
        """The most likely action (used by ``deterministic=True``)."""
        raise NotImplementedError

    def to_env(self, actions: Tensor) -> np.ndarray:
        """Convert sampled actions ``[N, ...]`` into the batch the vector environment expects."""
        raise NotImplementedError


class CategoricalPolicy(Policy):
    def __init__(
        self, obs_dim: int, space: spaces.Discrete, hidden: Sequence[int], activation: str = "tanh"
    ) -> None:
        super().__init__(obs_dim, int(space.n), hidden, activation)
        self.action_space = space
        self.start = int(space.start)

    def distribution(self, out: Tensor) -> Distribution:
        return GumbelCategorical(logits=out, validate_args=False)

    def mode(self, dist: Distribution) -> Tensor:
        return dist.logits.argmax(-1)  # type: ignore[attr-defined]

    def to_env(self, actions: Tensor) -> np.ndarray:
        return actions.cpu().numpy() + self.start


class GaussianPolicy(Policy):
    """Diagonal Gaussian with a state-independent learned log standard deviation."""

    def __init__(
        self,
        obs_dim: int,
        space: spaces.Box,
        hidden: Sequence[int],
        activation: str = "tanh",
        log_std_init: float = 0.0,
    ) -> None:
        self.dim = int(np.prod(space.shape))
        super().__init__(obs_dim, self.dim, hidden, activation)
        self.action_space = space
        self.log_std = nn.Parameter(torch.full((self.dim,), float(log_std_init)))
        self.register_buffer("low", torch.as_tensor(space.low, dtype=torch.float32).flatten())
        self.register_buffer("high", torch.as_tensor(space.high, dtype=torch.float32).flatten())

    def distribution(self, out: Tensor) -> Distribution:
        std = self.log_std.clamp(-20.0, 2.0).exp().expand_as(out)
        return Independent(Normal(out, std, validate_args=False), 1, validate_args=False)

    def mode(self, dist: Distribution) -> Tensor:
        return dist.mean

    def to_env(self, actions: Tensor) -> np.ndarray:
        clipped = torch.maximum(torch.minimum(actions, self.high), self.low)
        shape = (actions.shape[0], *self.action_space.shape)
        return clipped.cpu().numpy().reshape(shape).astype(self.action_space.dtype, copy=False)


class MultiCategoricalPolicy(Policy):
    """One Categorical per dimension; logits of unequal sizes are padded with a huge negative."""

    def __init__(
        self,
        obs_dim: int,
        space: spaces.MultiDiscrete,
        hidden: Sequence[int],
        activation: str = "tanh",
    ) -> None:
        nvec = np.asarray(space.nvec).flatten()
        self.sizes = [int(n) for n in nvec]
        self.width = max(self.sizes)
        super().__init__(obs_dim, len(self.sizes) * self.width, hidden, activation)
        self.action_space = space
        pad = torch.zeros(len(self.sizes), self.width)
        for i, n in enumerate(self.sizes):
            pad[i, n:] = torch.finfo(torch.float32).min
        self.register_buffer("pad", pad)
        self.register_buffer("start", torch.as_tensor(np.asarray(space.start).flatten()))

    def distribution(self, out: Tensor) -> Distribution:
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
    def __init__(
        self,
        obs_dim: int,
        space: spaces.MultiBinary,
        hidden: Sequence[int],
        activation: str = "tanh",
    ) -> None:
        self.dim = int(np.prod(space.shape))
        super().__init__(obs_dim, self.dim, hidden, activation)
        self.action_space = space

    def distribution(self, out: Tensor) -> Distribution:
        return Independent(Bernoulli(logits=out, validate_args=False), 1, validate_args=False)

    def mode(self, dist: Distribution) -> Tensor:
        return (dist.base_dist.logits > 0).float()  # type: ignore[attr-defined]

    def to_env(self, actions: Tensor) -> np.ndarray:
        shape = (actions.shape[0], *self.action_space.shape)
        return actions.cpu().numpy().reshape(shape).astype(self.action_space.dtype)


def policy_for(
    obs_dim: int,
    action_space: gym.Space,
    hidden: Sequence[int] = (64, 64),
    activation: str = "tanh",
    log_std_init: float = 0.0,
) -> Policy:
    """The default policy for ``action_space``.

    Raises:
        TypeError: for an action space with no policy here (Dict, Tuple, Text, ...).
    """
    if isinstance(action_space, spaces.Discrete):
        return CategoricalPolicy(obs_dim, action_space, hidden, activation)
    if isinstance(action_space, spaces.Box):
        if not np.all(np.isfinite(action_space.low) | np.isinf(action_space.low)):
            raise TypeError(f"Box action space has invalid bounds: {action_space}")
        return GaussianPolicy(obs_dim, action_space, hidden, activation, log_std_init)
    if isinstance(action_space, spaces.MultiDiscrete):
        return MultiCategoricalPolicy(obs_dim, action_space, hidden, activation)
    if isinstance(action_space, spaces.MultiBinary):
        return BernoulliPolicy(obs_dim, action_space, hidden, activation)
    raise TypeError(
        f"action space {action_space} is not supported: use Discrete, Box, MultiDiscrete or "
        "MultiBinary"
    )


class ValueFunction(nn.Module):
    """State-value critic ``V(s)``: ``[*B, obs_dim] -> [*B]``."""

    def __init__(self, obs_dim: int, hidden: Sequence[int], activation: str = "tanh") -> None:
        super().__init__()
        self.obs_norm: nn.Module = nn.Identity()
        self.net = mlp(obs_dim, hidden, 1, ACTIVATIONS[activation], output_gain=1.0)

    def forward(self, obs: Tensor) -> Tensor:
        return self.net(self.obs_norm(obs)).squeeze(-1)


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
