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
from dataclasses import dataclass, field

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


def clipped_surrogate_loss(
    log_prob: Tensor,
    old_log_prob: Tensor,
    advantages: Tensor,
    clip_coef: float,
    mask: Tensor | None = None,
) -> Tensor:
    """PPO's clipped surrogate objective, as a loss (Schulman et al., 2017, eq. 7)::

        r_t  = exp(log pi(a_t|s_t) - log pi_old(a_t|s_t))
        loss = -mean_{mask}( min(r_t A_t, clip(r_t, 1 - eps, 1 + eps) A_t) )

    The minimum makes the objective a pessimistic bound on the unclipped one: a step gains
    nothing from moving ``r_t`` beyond ``1 + eps`` where ``A_t > 0`` nor below ``1 - eps`` where
    ``A_t < 0``, and those samples give no gradient; where the change makes things worse the
    unclipped term is kept. At ``pi = pi_old`` (``r_t = 1``, nothing clipped) the gradient is
    the REINFORCE one, ``-mean(grad log pi(a_t|s_t) A_t)``.

    =================  ========  ====================================================
    argument           shape     meaning
    =================  ========  ====================================================
    ``log_prob``       ``[*B]``  ``log pi(a_t|s_t)`` under the policy being updated
    ``old_log_prob``   ``[*B]``  ``log pi_old(a_t|s_t)``, when the data was collected
    ``advantages``     ``[*B]``  ``A_t``; constants
    ``mask``           ``[*B]``  bool (or 0/1): real transitions
    returned           ``[]``    the loss
    =================  ========  ====================================================

    Args:
        log_prob: log-probabilities of the actions taken, with gradient.
        old_log_prob: their log-probabilities under the policy that collected them (detached).
        advantages: advantages, same shape (detached).
        clip_coef: ``eps``, ``> 0``.
        mask: bool (or 0/1) of the same shape; ``None`` uses every entry.

    Returns:
        The scalar loss.

    Raises:
        ValueError: if the shapes differ or ``clip_coef <= 0``.

    Example:
        >>> log_prob = torch.log(torch.tensor([1.5, 0.5]))
        >>> clipped_surrogate_loss(log_prob, torch.zeros(2), torch.tensor([1.0, -1.0]), 0.2)
        tensor(-0.2000)
    """
    return -_masked_mean(
        clipped_surrogate(log_prob, old_log_prob, advantages, clip_coef, mask), mask
    )


def clipped_surrogate(
    log_prob: Tensor,
    old_log_prob: Tensor,
    advantages: Tensor,
    clip_coef: float,
    mask: Tensor | None = None,
) -> Tensor:
    """PPO's clipped objective per sample, unreduced: ``min(r_t A_t, clip(r_t, 1-eps, 1+eps) A_t)``.

    The terms :func:`clipped_surrogate_loss` averages, for a caller that reduces them another
    way (the sequence algorithm aggregates them over tokens as ``sequence_policy_loss`` does).
    Shapes and arguments as :func:`clipped_surrogate_loss`; returns ``[*B]``, the objective (to
    maximise), with gradient through ``log_prob`` only. A masked-out entry's log-ratio is taken
    as 0 before the exponential (a nan there would give a nan gradient, ``0 * nan``); its term
    is then ``A_t``, not zero: reduce with the mask.

    Raises:
        ValueError: if the shapes differ or ``clip_coef <= 0``.

    Example:
        >>> log_prob = torch.log(torch.tensor([1.5, 0.5]))
        >>> clipped_surrogate(log_prob, torch.zeros(2), torch.tensor([1.0, -1.0]), 0.2)
        tensor([ 1.2000, -0.8000])
    """
    if not clip_coef > 0:
        raise ValueError(f"clip_coef must be > 0, got {clip_coef!r}")
    _check_same_shape(
        log_prob=log_prob, old_log_prob=old_log_prob, advantages=advantages, mask=mask
    )
    advantages = advantages.detach()
    log_ratio = log_prob - old_log_prob.detach()
    if mask is not None:  # before exp: a masked-out nan would give a nan gradient (0 * nan)
        log_ratio = torch.where(_as_bool(mask, "mask"), log_ratio, 0.0)
    ratio = torch.exp(log_ratio)
    clipped = ratio.clamp(1.0 - clip_coef, 1.0 + clip_coef)
    return torch.minimum(ratio * advantages, clipped * advantages)


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


def clipped_value_loss(
    values: Tensor,
    old_values: Tensor,
    targets: Tensor,
    clip: float,
    mask: Tensor | None = None,
) -> Tensor:
    """The critic loss with PPO's value clipping (as in OpenAI Baselines' ``ppo2``)::

        V_clip = V_old + clip(V - V_old, -c, c)
        loss   = mean_{mask}( 0.5 * max((V - R)^2, (V_clip - R)^2) )

    Like the policy's clipped objective, a pessimistic bound: moving ``V(s)`` more than ``c``
    away from the value it had when the rollout was prepared earns nothing. Note that ``c`` is
    in the units of the returns (scale the rewards, or pick ``c`` to match); Andrychowicz et al.
    (2021, "What Matters in On-Policy RL") found it does not help and can hurt.

    Args:
        values: critic outputs ``[*B]``, with gradient.
        old_values: the critic's outputs when the rollout was prepared, same shape (detached).
        targets: regression targets, same shape (detached).
        clip: ``c``, ``> 0``.
        mask: bool (or 0/1) of the same shape; ``None`` uses every entry.

    Returns:
        The scalar loss.

    Raises:
        ValueError: if the shapes differ or ``clip <= 0``.
    """
    if not clip > 0:
        raise ValueError(f"clip must be > 0, got {clip!r}")
    _check_same_shape(values=values, old_values=old_values, targets=targets, mask=mask)
    old_values, targets = old_values.detach(), targets.detach()
    clipped = old_values + (values - old_values).clamp(-clip, clip)
    squared = torch.maximum((values - targets).square(), (clipped - targets).square())
    return _masked_mean(0.5 * squared, mask)


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
    if mask is None:  # one fused reduction (PPO calls this on every minibatch)
        std, mean = torch.std_mean(advantages, correction=0)
        return (advantages - mean) / (std + eps)
    mean = _masked_mean(advantages, mask)
    std = _masked_mean((advantages - mean).square(), mask).sqrt()
    normalized = (advantages - mean) / (std + eps)
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


AGGREGATIONS = ("seq_sum", "seq_mean", "token_mean", "token_sum_norm")


def sequence_policy_loss(
    token_log_probs: Tensor,
    advantages: Tensor,
    mask: Tensor | None,
    aggregation: str,
    max_length: int | None = None,
) -> Tensor:
    """The REINFORCE loss of whole sequences, with the aggregation over tokens named.

    Sequence ``i`` has tokens ``t = 1..|o_i|`` (``mask``), token log-probabilities
    ``l_it = log pi(o_it | o_i<t)`` and one advantage ``A_i`` (a function of the whole
    sequence's reward, e.g. :func:`pgrad.baselines.leave_one_out`). With ``B`` sequences and
    ``L`` the padded length::

        seq_sum         -1/B          sum_i A_i sum_t l_it
        seq_mean        -1/B          sum_i A_i (1/|o_i|) sum_t l_it
        token_mean      -1/sum_i|o_i| sum_i A_i sum_t l_it
        token_sum_norm  -1/(B L)      sum_i A_i sum_t l_it

    ``seq_sum`` is the REINFORCE estimate itself: ``sum_t grad l_it = grad log pi(o_i)``, so its
    gradient is minus the unbiased policy gradient (Williams, 1992). ``token_sum_norm``, Dr.
    GRPO's (Liu et al., 2025), divides that by the constant ``L`` (the generation budget: pass
    ``max_length`` if the batch is padded to less), which changes nothing but the scale.
    ``seq_mean`` is GRPO's (Shao et al., 2024): dividing by the sampled sequence's own length
    weighs a short sequence's tokens more, a bias that favours short right answers and long wrong
    ones. ``token_mean`` is DAPO's (Yu et al., 2025): every token of the batch weighs the same,
    so long sequences are not diluted; the divisor depends on the batch's lengths, a bias of
    order ``1 / B`` that vanishes for large batches.

    =======================  ============  ==================================================
    argument                 shape         meaning
    =======================  ============  ==================================================
    ``token_log_probs``      ``[B, L]``    ``log pi(o_it | o_i<t)``, with gradient
    ``advantages``           ``[B]``       one per sequence; detached here
    ``mask``                 ``[B, L]``    bool (or 0/1): the token belongs to the sequence
    returned                 ``[]``        the loss
    =======================  ============  ==================================================

    Args:
        token_log_probs: ``[B, L]`` log-probabilities of the sampled tokens.
        advantages: ``[B]`` advantages.
        mask: ``[B, L]`` mask of real tokens, or ``None`` if every sequence has ``L`` tokens.
            Masked-out entries never reach the loss, even as nan.
        aggregation: one of ``"seq_sum"``, ``"seq_mean"``, ``"token_mean"``,
            ``"token_sum_norm"``.
        max_length: the ``L`` of ``token_sum_norm``, ``>= L``; ``None`` uses the padded length.

    Returns:
        The scalar loss; 0 (with a gradient of zeros) when no token is masked in.

    Raises:
        ValueError: for shapes other than ``[B, L]`` and ``[B]``, an unknown aggregation, or a
            ``max_length`` below ``L``.

    Example:
        >>> log_probs = torch.tensor([[-1.0, -2.0, -3.0], [-4.0, 0.0, 0.0]])
        >>> mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
        >>> sequence_policy_loss(log_probs, torch.tensor([2.0, 3.0]), mask, "seq_mean")
        tensor(8.)
    """
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {aggregation!r}")
    if token_log_probs.ndim != 2 or advantages.shape != token_log_probs.shape[:1]:
        raise ValueError(
            f"token_log_probs must be [B, L] and advantages [B], got {tuple(token_log_probs.shape)} "
            f"and {tuple(advantages.shape)}"
        )
    if mask is None:
        keep = torch.ones_like(token_log_probs, dtype=torch.bool)
    else:
        _check_same_shape(token_log_probs=token_log_probs, mask=mask)
        keep = _as_bool(mask, "mask")
    num_sequences, length = token_log_probs.shape
    # torch.where, not a product: the log-prob of a padding token may be -inf or nan.
    sums = torch.where(keep, token_log_probs, 0.0).sum(dim=1)
    weighted = sums * advantages.detach()
    if aggregation == "seq_sum":
        return -weighted.sum() / max(num_sequences, 1)
    if aggregation == "seq_mean":
        return -(weighted / keep.sum(dim=1).clamp(min=1)).sum() / max(num_sequences, 1)
    if aggregation == "token_mean":
        return -weighted.sum() / keep.sum().clamp(min=1)
    if max_length is None:
        max_length = length
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < length:
        raise ValueError(f"max_length must be an integer >= L = {length}, got {max_length!r}")
    return -weighted.sum() / max(num_sequences * max_length, 1)


def kl_k1(log_prob: Tensor, ref_log_prob: Tensor) -> Tensor:
    """The k1 estimate of ``KL(pi || pi_ref)`` per sampled token: ``log pi - log pi_ref``.

    From Schulman (2020), "Approximating KL Divergence": for ``x ~ pi``,
    ``E[k1] = KL(pi || pi_ref)``, unbiased but with high variance and often negative. Fold it
    into the reward (``r - beta * k1``, detached, as in RLHF's per-token penalty; Ziegler et
    al., 2019): the score-function gradient then pushes toward ``pi_ref``. Added to the *loss*
    it does nothing useful: its autograd gradient is ``grad log pi(x)``, whose mean is 0.

    Args:
        log_prob: ``log pi(x)`` of sampled tokens, any shape.
        ref_log_prob: ``log pi_ref(x)`` of the same tokens, same shape.

    Returns:
        The per-token estimates, same shape (with whatever gradient ``log_prob`` carries).

    Raises:
        ValueError: if the shapes differ.
    """
    _check_same_shape(log_prob=log_prob, ref_log_prob=ref_log_prob)
    return log_prob - ref_log_prob


def kl_k3(log_prob: Tensor, ref_log_prob: Tensor) -> Tensor:
    """The k3 estimate of ``KL(pi || pi_ref)`` per sampled token, for the loss.

    From Schulman (2020), "Approximating KL Divergence", with ``r = pi_ref(x) / pi(x)``::

        k3 = r - log r - 1 = exp(log pi_ref - log pi) - (log pi_ref - log pi) - 1

    For ``x ~ pi`` it is unbiased, ``E[k3] = KL(pi || pi_ref)``, never negative, and of low
    variance when the two are close; GRPO adds ``beta * mean(k3)`` to the loss (Shao et al.,
    2024). Note what that gradient is: ``grad k3 = (1 - r) grad log pi(x)``, whose mean under
    ``pi`` is ``grad KL(pi_ref || pi)``, the *reverse* direction of the value it estimates.
    Both vanish at ``pi = pi_ref`` and agree to second order near it.

    Args:
        log_prob: ``log pi(x)`` of sampled tokens, any shape, with gradient.
        ref_log_prob: ``log pi_ref(x)``, same shape; a constant.

    Returns:
        The per-token estimates, same shape.

    Raises:
        ValueError: if the shapes differ.
    """
    _check_same_shape(log_prob=log_prob, ref_log_prob=ref_log_prob)
    log_ratio = ref_log_prob.detach() - log_prob
    return torch.expm1(log_ratio) - log_ratio


@dataclass(frozen=True)
class LossParts:
    """The total loss of one update and its named parts, for the agent to log.

    Attributes:
        total: the scalar that is backpropagated, e.g.
            ``policy - entropy_coef * entropy + value_coef * value``.
        policy: the policy loss (:func:`reinforce_loss`).
        entropy: the mean entropy (:func:`entropy_bonus`), before its coefficient.
        value: the critic loss (:func:`value_loss`), ``None`` without a critic.
        extras: anything else the loss measured, keyed by its full TensorBoard tag
            (``diagnostics/approx_kl``); scalars, logged once per update as their mean over
            the update's steps, or their maximum for a tag that ends in ``_max``.
    """

    total: Tensor
    policy: Tensor
    entropy: Tensor
    value: Tensor | None = None
    extras: dict[str, Tensor] = field(default_factory=dict)

    def scalars(self) -> dict[str, float]:
        """Python floats: the parts keyed by their ``losses/`` tag names without the prefix (no
        ``value_loss`` key without a critic), and the ``extras`` by their full tags."""
        out = {
            "total_loss": float(self.total.detach()),
            "policy_loss": float(self.policy.detach()),
            "entropy": float(self.entropy.detach()),
        }
        if self.value is not None:
            out["value_loss"] = float(self.value.detach())
        out.update({tag: float(value.detach()) for tag, value in self.extras.items()})
        return out

    @staticmethod
    def mean_scalars(steps: list[tuple[LossParts, float]]) -> dict[str, float]:
        """The scalars and ``diagnostics/grad_norm`` over an update's optimizer steps, given as
        ``(parts, grad_norm)`` pairs: the mean of each, the maximum of a tag ending in ``_max``.
        A key without a ``/`` is a part of the loss and goes under ``losses/``."""
        rows = [
            {
                **{(k if "/" in k else f"losses/{k}"): v for k, v in parts.scalars().items()},
                "diagnostics/grad_norm": g,
            }
            for parts, g in steps
        ]
        out: dict[str, float] = {}
        for key in dict.fromkeys(k for row in rows for k in row):  # a key from any step
            values = [row[key] for row in rows if key in row]
            out[key] = max(values) if key.endswith("_max") else sum(values) / len(values)
        return out


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
    "AGGREGATIONS",
    "LossParts",
    "clipped_surrogate",
    "clipped_surrogate_loss",
    "clipped_value_loss",
    "entropy_bonus",
    "explained_variance",
    "kl_k1",
    "kl_k3",
    "normalize_advantages",
    "reinforce_loss",
    "sequence_policy_loss",
    "value_loss",
]
