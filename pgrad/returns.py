"""Return estimators over time-major rollouts: reward-to-go and GAE(lambda).

Every rollout tensor is ``[T, N]``: ``T`` steps of ``N`` parallel environments.

==================  ==========  ===============================================================
symbol              shape       meaning
==================  ==========  ===============================================================
``rewards``         ``[T, N]``  reward received after the action at step ``t``
``terminated``      ``[T, N]``  the episode ended at step ``t`` (a terminal state): no bootstrap
``truncated``       ``[T, N]``  the episode was cut at step ``t`` (time limit): bootstrap
``values``          ``[T, N]``  ``V(s_t)``, the critic at the observation before step ``t``
``next_values``     ``[T, N]``  ``V(s_{t+1})``, the critic at the observation *after* step ``t``
==================  ==========  ===============================================================

``next_values[t]`` is the value of whatever observation followed step ``t``: at a truncated step
that is the episode's true final observation, at the last step of the rollout it is the
observation the next rollout starts from. So no separate "last value" argument is needed, and
within an episode ``next_values[t] == values[t + 1]``.

Termination is not truncation. ``terminated`` stops bootstrapping (the future is worth zero);
``terminated | truncated`` stops accumulating (what follows belongs to another episode). A step
that is both counts as terminated. The last step of the rollout is treated like a truncation: the
episode goes on beyond what was collected, so the return bootstraps from ``next_values[T - 1]``.

Returns and advantages are targets, not functions of the parameters: both functions compute them
from detached inputs, so their outputs never carry gradient, whatever the caller's grad mode.
"""

from __future__ import annotations

import numbers

import torch
from torch import Tensor


def discounted_returns(
    rewards: Tensor,
    terminated: Tensor,
    truncated: Tensor,
    gamma: float,
    next_values: Tensor | None = None,
) -> Tensor:
    """Discounted reward-to-go with termination and truncation kept apart.

    Computes, backwards from ``t = T - 1``::

        returns[t] = rewards[t] + gamma * c[t]
        c[t] = 0                 if terminated[t]
             = next_values[t]    elif truncated[t] or t == T - 1
             = returns[t + 1]    otherwise

    which is the Monte-Carlo return ``G_t = sum_k gamma^k r_{t+k}`` of REINFORCE (Williams, 1992),
    bootstrapped with the critic wherever the episode did not really end.

    ======================  ==========  ========================================================
    argument                shape       meaning
    ======================  ==========  ========================================================
    ``rewards``             ``[T, N]``  rewards, floating point
    ``terminated``          ``[T, N]``  bool (or 0/1): a terminal state was reached at ``t``
    ``truncated``           ``[T, N]``  bool (or 0/1): the episode was cut at ``t``
    ``next_values``         ``[T, N]``  ``V`` of the observation after step ``t``; ``None``
                                        bootstraps from zero (no critic)
    returned ``returns``    ``[T, N]``  reward-to-go, no gradient
    ======================  ==========  ========================================================

    Args:
        rewards: ``[T, N]`` rewards.
        terminated: ``[T, N]`` termination flags.
        truncated: ``[T, N]`` truncation flags.
        gamma: discount factor in ``[0, 1]``.
        next_values: ``[T, N]`` bootstrap values, or ``None`` for zeros.

    Returns:
        ``[T, N]`` returns in the floating dtype of the inputs (``rewards`` and ``next_values``
        promoted together), computed from detached inputs.

    Raises:
        ValueError: if a tensor is not ``[T, N]`` with ``T >= 1``, the shapes differ, a flag
            tensor holds values other than 0 and 1, or ``gamma`` is outside ``[0, 1]``.

    Example:
        >>> rewards = torch.tensor([[1.0], [2.0], [4.0]])
        >>> terminated = torch.tensor([[False], [True], [False]])
        >>> discounted_returns(rewards, terminated, torch.zeros_like(terminated), 0.5).squeeze(1)
        tensor([2., 2., 4.])
    """
    _check_unit_interval("gamma", gamma)
    rewards, next_values, terminated, truncated = _prepare(
        rewards, next_values, None, terminated, truncated
    )
    done = terminated | truncated
    # The rollout ends mid-episode at T - 1: bootstrap there as for a truncation.
    done[-1] = True
    # Bootstrap wherever the episode was cut but did not end; torch.where rather than a product
    # so that a meaningless next value at a terminal step (even nan or inf) cannot leak in.
    bootstrap = torch.where(done & ~terminated, next_values, 0.0)
    return _backward_recursion(rewards + gamma * bootstrap, gamma * (~done).to(rewards.dtype))


def gae(
    rewards: Tensor,
    values: Tensor,
    next_values: Tensor,
    terminated: Tensor,
    truncated: Tensor,
    gamma: float,
    lam: float,
) -> tuple[Tensor, Tensor]:
    """Generalised advantage estimation, GAE(lambda) (Schulman et al., 2016).

    Computes, backwards from ``t = T - 1`` with ``A[T] = 0``::

        delta[t] = rewards[t] + gamma * (1 - terminated[t]) * next_values[t] - values[t]
        A[t]     = delta[t] + gamma * lam * (1 - done[t]) * A[t + 1]
        done[t]  = terminated[t] or truncated[t]
        returns  = A + values

    Bootstrapping stops only at termination; accumulation stops at termination or truncation.
    ``lam = 0`` gives the one-step TD error ``delta``; ``lam = 1`` gives
    ``discounted_returns(rewards, terminated, truncated, gamma, next_values) - values`` provided
    ``next_values[t] == values[t + 1]`` inside episodes (the same observation, so the same value).
    With the true value function every ``lam`` gives an unbiased advantage; with a learned critic
    smaller ``lam`` trades variance for bias.

    ======================  ==========  ========================================================
    argument                shape       meaning
    ======================  ==========  ========================================================
    ``rewards``             ``[T, N]``  rewards, floating point
    ``values``              ``[T, N]``  ``V(s_t)``
    ``next_values``         ``[T, N]``  ``V`` of the observation after step ``t`` (at a
                                        truncation, of the true final observation)
    ``terminated``          ``[T, N]``  bool (or 0/1)
    ``truncated``           ``[T, N]``  bool (or 0/1)
    returned ``advantages`` ``[T, N]``  ``A``, no gradient
    returned ``returns``    ``[T, N]``  ``A + values``, the critic's targets, no gradient
    ======================  ==========  ========================================================

    Args:
        rewards: ``[T, N]`` rewards.
        values: ``[T, N]`` critic values at the observations the actions were taken in.
        next_values: ``[T, N]`` critic values at the observations that followed.
        terminated: ``[T, N]`` termination flags.
        truncated: ``[T, N]`` truncation flags.
        gamma: discount factor in ``[0, 1]``.
        lam: GAE parameter in ``[0, 1]``.

    Returns:
        ``(advantages, returns)``, both ``[T, N]`` in the promoted floating dtype of ``rewards``,
        ``values`` and ``next_values``, computed from detached inputs.

    Raises:
        ValueError: if a tensor is not ``[T, N]`` with ``T >= 1``, the shapes differ, a flag
            tensor holds values other than 0 and 1, or ``gamma`` or ``lam`` is outside ``[0, 1]``.
    """
    _check_unit_interval("gamma", gamma)
    _check_unit_interval("lam", lam)
    rewards, next_values, values, terminated, truncated = _prepare(
        rewards, next_values, values, terminated, truncated
    )
    done = terminated | truncated
    # torch.where rather than (1 - terminated) * next_values: the value of a terminal observation
    # is meaningless (possibly nan) and must not reach delta.
    deltas = rewards + gamma * torch.where(terminated, 0.0, next_values) - values
    advantages = _backward_recursion(deltas, gamma * lam * (~done).to(rewards.dtype))
    return advantages, advantages + values


def _backward_recursion(base: Tensor, carry: Tensor) -> Tensor:
    """``out[t] = base[t] + carry[t] * out[t + 1]`` with ``out[T] = 0``, looping over ``T``.

    The loop is over time only and vectorised over environments; ``T`` is small next to ``N`` in
    the rollouts this library collects, so it beats a scan's extra memory and kernel count.
    """
    out = torch.empty_like(base)
    running = torch.zeros_like(base[0])
    for t in range(base.shape[0] - 1, -1, -1):
        running = base[t] + carry[t] * running
        out[t] = running
    return out


def _prepare(
    rewards: Tensor,
    next_values: Tensor | None,
    values: Tensor | None,
    terminated: Tensor,
    truncated: Tensor,
) -> tuple[Tensor, ...]:
    """Validate ``[T, N]`` shapes; detach, promote to one floating dtype, flags to bool.

    Returns ``(rewards, next_values, [values,] terminated, truncated)``, ``values`` only when
    given, ``next_values`` zeros when not given.
    """
    if rewards.ndim != 2 or rewards.shape[0] < 1:
        raise ValueError(
            f"rewards must be [T, N] with T >= 1 (time-major), got shape {tuple(rewards.shape)}"
        )
    named = {"terminated": terminated, "truncated": truncated}
    if values is not None:
        named["values"] = values
    if next_values is not None:
        named["next_values"] = next_values
    for name, tensor in named.items():
        if tensor.shape != rewards.shape:
            raise ValueError(
                f"{name} has shape {tuple(tensor.shape)} but rewards has shape "
                f"{tuple(rewards.shape)}; all rollout tensors must be the same [T, N]"
            )
    floats = [t for t in (rewards, values, next_values) if t is not None]
    dtype = floats[0].dtype
    for t in floats[1:]:
        dtype = torch.promote_types(dtype, t.dtype)
    if not dtype.is_floating_point:
        dtype = torch.get_default_dtype()
    rewards = rewards.detach().to(dtype)
    next_values = (
        torch.zeros_like(rewards) if next_values is None else next_values.detach().to(dtype)
    )
    flags = (_as_bool(terminated, "terminated"), _as_bool(truncated, "truncated"))
    if values is None:
        return rewards, next_values, *flags
    return rewards, next_values, values.detach().to(dtype), *flags


def _as_bool(flags: Tensor, name: str) -> Tensor:
    """``flags`` as a bool tensor; 0/1 numbers are accepted, anything else raises ``ValueError``."""
    if flags.dtype == torch.bool:
        return flags
    # A float flag of 0.5 or -1 is a bug upstream (a reward or a value passed by position), not
    # something to round.
    if bool(((flags != 0) & (flags != 1)).any()):
        bad = flags[(flags != 0) & (flags != 1)].flatten()[:3].tolist()
        raise ValueError(f"{name} must be bool or 0/1, got values such as {bad}")
    return flags != 0


def _check_unit_interval(name: str, value: float) -> None:
    # numbers.Real takes Python and numpy floats; a string or a tensor here is a call-site bug.
    # Written as `not (0 <= x <= 1)` so that nan is rejected too.
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")


__all__ = ["discounted_returns", "gae"]
