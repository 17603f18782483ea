"""Policy-gradient losses as small pure functions, plus the statistics an update logs.

================  ==============  =============================================================
symbol            shape           meaning
================  ==============  =============================================================
``log_prob``      ``[T, N]``      ``log pi(a_t | s_t)``, one number per sample (use
                                  ``Independent(Normal(...), 1)`` for vector actions)
``advantages``    ``[T, N]``      ``G_t - b_t`` or GAE; constants
``values``        ``[T, N]``      critic output ``V(s_t)``
``targets``       ``[T, N]``      critic targets (returns); constants
``mask``          ``[T, N]``      bool (or 0/1): the step is a real transition to learn from
================  ==============  =============================================================

Shapes are only required to match each other; ``[T, N]`` is the usual case. They must match
*exactly*: ``[T, N]`` against ``[T, N, 1]`` would broadcast into a silently wrong loss, so every
function raises ``ValueError`` naming both shapes instead.

A masked mean averages over the ``mask``-True entries only; with no True entry it is 0 (no data,
no gradient) rather than nan. Every loss is a mean, never a sum, and never normalises the
advantages itself: normalisation is :func:`normalize_advantages`, a separate, chosen step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.distributions import Distribution

from pgrad.returns import _as_bool


def reinforce_loss(log_prob: Tensor, advantages: Tensor, mask: Tensor | None = None) -> Tensor:
    """The REINFORCE surrogate loss (Williams, 1992)::

        loss = -mean_{mask}(log_prob * stop_gradient(advantages))

    Its gradient is minus the score-function estimate of the policy gradient,
    ``-mean(grad log pi(a_t|s_t) * A_t)``, so minimising it ascends the expected return. The
    advantages are detached here: they are constants even if a critic produced them.

    The mean runs over every (masked) step of every environment. The unbiased estimate of the
    gradient of the discounted objective ``J = E[sum_t gamma^t r_t]`` is
    ``sum_t gamma^t grad log pi(a_t|s_t) (G_t - b_t)`` per episode; the mean differs from that sum
    by a positive constant (``mask.sum() / num_episodes``), which the learning rate absorbs,
    and the factor ``gamma^t`` is up to the caller (the common practice drops it).

    Args:
        log_prob: log-probabilities of the actions taken, with gradient.
        advantages: advantages, same shape.
        mask: bool (or 0/1) of the same shape; ``None`` uses every entry.

    Returns:
        The scalar loss.

    Raises:
        ValueError: if the shapes differ.

    Example:
        >>> log_prob = torch.tensor([[-1.0, -2.0]], requires_grad=True)
        >>> reinforce_loss(log_prob, torch.tensor([[2.0, 3.0]]))
        tensor(4., grad_fn=<NegBackward0>)
    """
    _check_same_shape(log_prob=log_prob, advantages=advantages, mask=mask)
    return -_masked_mean(log_prob * advantages.detach(), mask)


def entropy_bonus(
    dist: Distribution, log_prob: Tensor | None = None, mask: Tensor | None = None
) -> Tensor:
    """The (masked) mean entropy of the policy, to be subtracted as ``coef * entropy``.

    Uses ``dist.entropy()``. Where the distribution has no closed-form entropy
    (``NotImplementedError``), falls back to the single-sample estimate ``H ~ -log pi(a|s)`` from
    the ``log_prob`` of actions sampled from ``dist``. The fallback's value is ``-log_prob`` but
    its gradient is ``-log_prob * grad log_prob``, the unbiased score-function estimate of
    ``grad H = -E[log pi(a) grad log pi(a)]``: the plain ``-log_prob`` would have a gradient of
    expectation zero (``E[grad log pi] = 0``) and would regularise nothing. The estimate assumes
    the actions were sampled without gradient (``sample()``, not ``rsample()``).

    Args:
        dist: the policy's action distribution with batch shape ``[T, N]``.
        log_prob: ``dist.log_prob(actions)``; required for the fallback, and when given its shape
            is checked against the entropy's (a vector-action ``Normal`` without ``Independent``
            gives one entropy per action dimension and fails here instead of training wrongly).
        mask: bool (or 0/1), shaped like the entropy.

    Returns:
        The scalar mean entropy, with gradient.

    Raises:
        ValueError: if the fallback is needed and ``log_prob`` is ``None``, or shapes differ.
    """
    try:
        entropy = dist.entropy()
    except NotImplementedError:
        if log_prob is None:
            raise ValueError(
                f"{type(dist).__name__} has no closed-form entropy; pass log_prob of sampled "
                "actions for the single-sample estimate"
            ) from None
        constant = log_prob.detach()
        entropy = -constant - constant * (log_prob - constant)
    _check_same_shape(entropy=entropy, log_prob=log_prob, mask=mask)
    return _masked_mean(entropy, mask)


def value_loss(values: Tensor, targets: Tensor, mask: Tensor | None = None) -> Tensor:
    """Squared-error critic loss ``mean_{mask}(0.5 * (values - stop_gradient(targets))^2)``.

    The targets (``discounted_returns`` or the ``returns`` of ``gae``) are detached: the critic
    regresses onto them, it does not move them.

    Args:
        values: critic outputs, with gradient.
        targets: regression targets, same shape.
        mask: bool (or 0/1) of the same shape; ``None`` uses every entry.

    Returns:
        The scalar loss.

    Raises:
        ValueError: if the shapes differ (``[T, N]`` values against ``[T, N, 1]`` targets is the
            classic case).
    """
    _check_same_shape(values=values, targets=targets, mask=mask)
    return _masked_mean(0.5 * (values - targets.detach()).square(), mask)


def normalize_advantages(
    advantages: Tensor, mask: Tensor | None = None, eps: float = 1e-8
) -> Tensor:
    """Standardise advantages over the masked entries: ``(A - mean) / (std + eps)``.

    Mean and population standard deviation are taken over the ``mask``-True entries only, so
    padding and dead transitions do not shift them; masked-out entries come back as 0. This
    rescales the gradient by a batch-dependent factor and shifts it by a batch-mean baseline
    (each sample is in its own mean: a bias of order ``1 / batch``); it is common because it makes
    the step size independent of the reward scale.

    Args:
        advantages: advantages of any shape.
        mask: bool (or 0/1) of the same shape; ``None`` uses every entry.
        eps: added to the std so that constant advantages give zeros; ``>= 0``.

    Returns:
        The normalised advantages, same shape, no gradient.

    Raises:
        ValueError: if the shapes differ or ``eps < 0``.
    """
    if not eps >= 0.0:
        raise ValueError(f"eps must be >= 0, got {eps!r}")
    _check_same_shape(advantages=advantages, mask=mask)
    advantages = advantages.detach()
    mean = _masked_mean(advantages, mask)
    std = _masked_mean((advantages - mean).square(), mask).sqrt()
    normalized = (advantages - mean) / (std + eps)
    if mask is None:
        return normalized
    return torch.where(_as_bool(mask, "mask"), normalized, 0.0)


def explained_variance(values: Tensor, targets: Tensor, mask: Tensor | None = None) -> float:
    """How much of the targets' variance the critic explains: ``1 - Var[targets - values] / Var[targets]``.

    1 is a perfect critic, 0 is no better than predicting the mean, negative is worse than that.
    Population variances over the masked entries.

    Args:
        values: critic outputs.
        targets: returns the critic regresses onto, same shape.
        mask: bool (or 0/1) of the same shape; ``None`` uses every entry.

    Returns:
        A Python float; nan when ``Var[targets]`` is 0 (including no masked-in entries).

    Raises:
        ValueError: if the shapes differ.
    """
    _check_same_shape(values=values, targets=targets, mask=mask)
    with torch.no_grad():
        targets = targets.double()
        residuals = targets - values.double()
        if mask is not None:
            keep = _as_bool(mask, "mask")
            targets, residuals = targets[keep], residuals[keep]
        if targets.numel() == 0:
            return math.nan
        target_var = float(targets.var(correction=0))
        if target_var == 0.0:
            return math.nan
        return 1.0 - float(residuals.var(correction=0)) / target_var


@dataclass(frozen=True)
class LossParts:
    """The total loss of one update and its named parts, for the agent to log.

    Attributes:
        total: the scalar that is backpropagated, e.g.
            ``policy - entropy_coef * entropy + value_coef * value``.
        policy: the policy loss (:func:`reinforce_loss`).
        entropy: the mean entropy (:func:`entropy_bonus`), before its coefficient.
        value: the critic loss (:func:`value_loss`), ``None`` without a critic.
    """

    total: Tensor
    policy: Tensor
    entropy: Tensor
    value: Tensor | None = None

    def scalars(self) -> dict[str, float]:
        """Python floats keyed by the ``losses/`` TensorBoard tag names; no ``value_loss`` key
        without a critic."""
        out = {
            "total_loss": float(self.total.detach()),
            "policy_loss": float(self.policy.detach()),
            "entropy": float(self.entropy.detach()),
        }
        if self.value is not None:
            out["value_loss"] = float(self.value.detach())
        return out

    @staticmethod
    def mean_scalars(steps: list[tuple[LossParts, float]]) -> dict[str, float]:
        """The ``losses/`` scalars and ``diagnostics/grad_norm`` averaged over an update's
        optimizer steps, given as ``(parts, grad_norm)`` pairs."""
        rows = [
            {**{f"losses/{k}": v for k, v in parts.scalars().items()}, "diagnostics/grad_norm": g}
            for parts, g in steps
        ]
        return {key: sum(row[key] for row in rows) / len(rows) for key in rows[0]}


def _masked_mean(x: Tensor, mask: Tensor | None) -> Tensor:
    """Mean over the ``mask``-True entries; 0 when there are none."""
    if mask is None:
        return x.mean()
    keep = _as_bool(mask, "mask")
    # torch.where, not x * mask: a masked-out nan or inf (a dead transition) must not leak in.
    return torch.where(keep, x, 0.0).sum() / keep.sum().clamp(min=1)


def _check_same_shape(**tensors: Tensor | None) -> None:
    """Raise ``ValueError`` naming every shape if the given (non-``None``) tensors differ."""
    given = {name: tensor for name, tensor in tensors.items() if tensor is not None}
    shapes = {tuple(tensor.shape) for tensor in given.values()}
    if len(shapes) > 1:
        described = ", ".join(f"{name} {tuple(tensor.shape)}" for name, tensor in given.items())
        raise ValueError(
            f"shapes must match exactly, got {described} "
            "(broadcasting them would silently pair the wrong entries)"
        )


__all__ = [
    "LossParts",
    "entropy_bonus",
    "explained_variance",
    "normalize_advantages",
    "reinforce_loss",
    "value_loss",
]
