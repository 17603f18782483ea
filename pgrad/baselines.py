"""Baselines for the score-function policy gradient, each with one documented job.

Subtracting a baseline ``b`` from the return leaves the policy gradient unbiased as long as ``b``
does not depend on the action it is paired with (nor on anything that action caused):
``E[grad log pi(a|s) * b] = b * E[grad log pi(a|s)] = 0`` (Williams, 1992). A good baseline
tracks the return, so ``G - b`` has a smaller variance than ``G``.

The choices, as named in the config:

``none``
    No class: the advantages are the returns themselves.
``ema``
    :class:`EMABaseline`, a moving average of past returns; one constant for the whole batch.
``value``
    A learned critic ``V(s_t)``: a network in the agent, not an object here. Its targets are
    :func:`pgrad.returns.discounted_returns` (``lam = 1``) or the ``returns`` output of
    :func:`pgrad.returns.gae`, and its advantages come from ``gae``.
``loo``
    :func:`leave_one_out` (RLOO): each sample is compared with the other samples of its group.
``group``
    :func:`group_normalize` (GRPO): not a baseline but standardised advantages; biased.

For one reward per sequence (a generated answer, a tour), three more, all over groups of samples
that share a start:

:func:`group_mean_advantage`
    Dr. GRPO: the return minus the group mean, nothing else; unbiased up to the factor
    ``(k - 1) / k``.
:func:`reinforce_pp_advantage`
    REINFORCE++ with a baseline: the group mean subtracted, then divided by the whole batch's
    standard deviation.
:class:`GreedyRolloutBaseline`
    Kool et al.'s baseline: the reward of a greedy decode by a frozen copy of the policy,
    replaced when the policy is significantly better.

All of them return constants: the outputs carry no gradient.
"""

from __future__ import annotations

import copy
import math
import numbers
import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from pgrad.returns import _as_bool


class EMABaseline:
    """An exponential moving average of the returns of previous batches: a constant baseline.

    ``update(returns)`` folds in the mean of a batch::

        value <- mean(returns)                                      on the first update
        value <- decay * value + (1 - decay) * mean(returns)        afterwards

    The first update sets the value directly, so the average starts at the scale of the returns
    instead of creeping up from zero. ``baseline(returns)`` returns ``value`` broadcast to the
    shape of ``returns`` and uses only the batches given to earlier ``update`` calls, never the
    batch it is applied to. The baseline is therefore independent of the current actions and
    the gradient estimate stays unbiased. (Averaging in the current batch would correlate the
    baseline with each sample's own return; the bias is ``O(1/batch)`` but it is avoidable.)

    Call it, then update it::

        >>> baseline = EMABaseline(decay=0.9)
        >>> returns = torch.tensor([[1.0, 3.0]])
        >>> advantages = returns - baseline(returns)  # 0.0 before any update
        >>> baseline.update(returns)
        >>> baseline.value
        2.0

    Args:
        decay: weight of the old value in each update, in ``[0, 1)``; 0 keeps only the last
            batch's mean.

    Raises:
        ValueError: if ``decay`` is outside ``[0, 1)``.
    """

    def __init__(self, decay: float = 0.9) -> None:
        _check_decay(decay)
        self.decay = float(decay)
        self.value = 0.0
        self.num_updates = 0

    def __call__(self, returns: Tensor) -> Tensor:
        """The current value as a tensor shaped like ``returns`` (any shape), no gradient."""
        return torch.full_like(returns, self.value, requires_grad=False)

    def update(self, returns: Tensor, mask: Tensor | None = None) -> None:
        """Fold the mean of ``returns`` over ``mask``-True entries into the average.

        A batch with no ``mask``-True entries (or no entries) leaves the average unchanged.

        Args:
            returns: returns of any shape, typically ``[T, N]``.
            mask: bool (or 0/1) tensor of the same shape; ``None`` uses every entry.

        Raises:
            ValueError: if ``mask`` has another shape than ``returns`` or the mean is not finite
                (a nan would poison every later baseline).
        """
        returns = returns.detach()
        if mask is not None:
            if mask.shape != returns.shape:
                raise ValueError(
                    f"mask has shape {tuple(mask.shape)} but returns has shape "
                    f"{tuple(returns.shape)}; they must match"
                )
            returns = returns[_as_bool(mask, "mask")]
        if returns.numel() == 0:
            return
        mean = float(returns.double().mean())
        if not math.isfinite(mean):
            raise ValueError(f"EMABaseline.update got returns with a non-finite mean ({mean})")
        if self.num_updates == 0:
            self.value = mean
        else:
            self.value = self.decay * self.value + (1.0 - self.decay) * mean
        self.num_updates += 1

    def state_dict(self) -> dict[str, Any]:
        """The state to checkpoint: ``decay``, ``value`` and ``num_updates``."""
        return {"decay": self.decay, "value": self.value, "num_updates": self.num_updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state produced by :meth:`state_dict`.

        Raises:
            ValueError: if a key is missing or ``decay`` is outside ``[0, 1)``.
        """
        missing = {"decay", "value", "num_updates"} - set(state)
        if missing:
            raise ValueError(f"EMABaseline state is missing {sorted(missing)}")
        _check_decay(state["decay"])
        self.decay = float(state["decay"])
        self.value = float(state["value"])
        self.num_updates = int(state["num_updates"])

    def __repr__(self) -> str:
        return (
            f"EMABaseline(decay={self.decay}, value={self.value}, num_updates={self.num_updates})"
        )


def leave_one_out(returns: Tensor, group_size: int, mask: Tensor | None = None) -> Tensor:
    """Leave-one-out baseline, RLOO (Kool, van Hoof and Welling, 2019).

    The last dimension holds ``N // group_size`` groups of ``k = group_size`` contiguous samples
    started from the same state (samples ``0..k-1`` are group 0, and so on). Each sample's
    baseline is the mean return of the *other* ``k - 1`` samples in its group, at the same leading
    index (for ``[T, N]`` returns: the same time step)::

        b_i = (sum_{j in group(i)} R_j - R_i) / (k - 1)

    ``b_i`` never depends on sample ``i``, and the samples of a group are drawn independently
    given the shared start, so the baseline is unbiased, while the group shares the start state
    that most of the return's variance comes from.

    ====================  ==============  ====================================================
    argument              shape           meaning
    ====================  ==============  ====================================================
    ``returns``           ``[..., N]``    returns, e.g. ``[T, N]`` or ``[N]``
    ``mask``              ``[..., N]``    bool (or 0/1); False entries count as return 0
    returned              ``[..., N]``    the baselines ``b``, no gradient
    ====================  ==============  ====================================================

    Masked-out entries (an environment whose episode already ended) count as return 0 in the
    others' baselines and the denominator stays ``k - 1``: an ended episode's reward-to-go is 0.

    Args:
        returns: ``[..., N]`` returns.
        group_size: samples per group ``k >= 2``; must divide ``N``.
        mask: ``[..., N]`` mask, or ``None``.

    Returns:
        ``[..., N]`` baselines; subtract them from ``returns`` for the advantages.

    Raises:
        ValueError: if ``returns`` has no dimension, ``group_size < 2``, ``N % group_size != 0``,
            or ``mask`` has another shape than ``returns``.
    """
    grouped = _grouped(returns, group_size, "leave_one_out")
    if mask is not None:
        if mask.shape != returns.shape:
            raise ValueError(
                f"mask has shape {tuple(mask.shape)} but returns has shape "
                f"{tuple(returns.shape)}; they must match"
            )
        grouped = torch.where(_as_bool(mask, "mask").unflatten(-1, grouped.shape[-2:]), grouped, 0)
    totals = grouped.sum(dim=-1, keepdim=True)
    return ((totals - grouped) / (group_size - 1)).flatten(-2)


def group_normalize(returns: Tensor, group_size: int, eps: float = 1e-8) -> Tensor:
    """Group-normalised advantages as in GRPO (Shao et al., 2024, DeepSeekMath).

    Within each group of ``k = group_size`` contiguous samples along the last dimension::

        A_i = (R_i - mean_group(R)) / (std_group(R) + eps)

    with the population standard deviation (divide by ``k``), so a normalised group has exactly
    unit variance; implementations that divide by ``k - 1`` differ by the constant factor
    ``sqrt((k - 1) / k)``, which the learning rate absorbs.

    These are advantages, not a baseline, and they are biased: each sample is part of its own
    group mean (``R_i - mean_group(R) = (k - 1) / k * (R_i - b_i)`` with ``b_i`` the
    leave-one-out mean, so the mean alone shrinks the expected gradient by ``(k - 1) / k``), and
    dividing by a per-group std weights groups by how much their returns
    disagree rather than by the return scale. People use it anyway because it needs no critic,
    makes the step size invariant to the reward scale, and gives a group whose samples all got the
    same return zero weight, so learning concentrates on states where the policy's choices
    matter. For an unbiased critic-free alternative use :func:`leave_one_out`.

    ====================  ==============  ====================================================
    argument              shape           meaning
    ====================  ==============  ====================================================
    ``returns``           ``[..., N]``    returns (often one reward per sample, ``[N]``)
    returned              ``[..., N]``    advantages, no gradient
    ====================  ==============  ====================================================

    Args:
        returns: ``[..., N]`` returns.
        group_size: samples per group ``k >= 2``; must divide ``N``.
        eps: added to the std so that a group of equal returns gives zeros, not nan; ``>= 0``.

    Returns:
        ``[..., N]`` advantages.

    Raises:
        ValueError: if ``returns`` has no dimension, ``group_size < 2``, ``N % group_size != 0``
            or ``eps < 0``.
    """
    if not eps >= 0.0:
        raise ValueError(f"eps must be >= 0, got {eps!r}")
    grouped = _grouped(returns, group_size, "group_normalize")
    mean = grouped.mean(dim=-1, keepdim=True)
    std = grouped.std(dim=-1, correction=0, keepdim=True)
    return ((grouped - mean) / (std + eps)).flatten(-2)


def group_mean_advantage(returns: Tensor, group_size: int) -> Tensor:
    """Dr. GRPO advantages: the return minus its group's mean, not divided by any std.

    Liu et al. (2025), "Understanding R1-Zero-Like Training: A Critical Perspective", drop both
    of GRPO's normalisations: the per-group std here (it weights groups by how little their
    returns disagree) and the per-sequence length in the loss (see
    :func:`pgrad.losses.sequence_policy_loss`)::

        A_i = R_i - mean_{j in group(i)} R_j = (k - 1) / k * (R_i - b_i)

    with ``b_i`` the leave-one-out mean of :func:`leave_one_out`. So the expected gradient is
    exactly ``(k - 1) / k`` times the true policy gradient: the right direction, a constant scale
    that the learning rate absorbs.

    ====================  ==============  ====================================================
    argument              shape           meaning
    ====================  ==============  ====================================================
    ``returns``           ``[..., N]``    returns, ``N // k`` contiguous groups of ``k``
    returned              ``[..., N]``    advantages, no gradient
    ====================  ==============  ====================================================

    Args:
        returns: ``[..., N]`` returns.
        group_size: samples per group ``k >= 2``; must divide ``N``.

    Returns:
        ``[..., N]`` advantages.

    Raises:
        ValueError: if ``returns`` has no dimension, ``group_size < 2`` or
            ``N % group_size != 0``.

    Example:
        >>> group_mean_advantage(torch.tensor([1.0, 2.0, 3.0, 6.0]), group_size=2)
        tensor([-0.5000,  0.5000, -1.5000,  1.5000])
    """
    grouped = _grouped(returns, group_size, "group_mean_advantage")
    return (grouped - grouped.mean(dim=-1, keepdim=True)).flatten(-2)


def reinforce_pp_advantage(returns: Tensor, group_size: int, eps: float = 1e-8) -> Tensor:
    """REINFORCE++ advantages with a group baseline: group mean out, then the batch's std.

    Hu (2025), "REINFORCE++: A Simple and Efficient Approach for Aligning Large Language
    Models", the variant with a baseline for ``k > 1`` samples per prompt::

        A~_i = R_i - mean_{j in group(i)} R_j
        A_i  = A~_i / (std_batch(A~) + eps)

    with the population std over *every* entry of the batch (all leading dimensions too). The
    paper also subtracts the batch mean of ``A~``, which is exactly 0 when every group is
    complete, so it is left out. One scale for the whole batch keeps the relative weight of the
    groups (unlike GRPO's per-group std) while making the step size independent of the reward
    scale; the scale is a function of the batch, so the estimate is biased by ``O(1 / batch)``,
    like :func:`pgrad.losses.normalize_advantages`.

    ====================  ==============  ====================================================
    argument              shape           meaning
    ====================  ==============  ====================================================
    ``returns``           ``[..., N]``    returns, ``N // k`` contiguous groups of ``k``
    returned              ``[..., N]``    advantages, no gradient
    ====================  ==============  ====================================================

    Args:
        returns: ``[..., N]`` returns.
        group_size: samples per group ``k >= 2``; must divide ``N``.
        eps: added to the std so that a batch of equal returns gives zeros, not nan; ``>= 0``.

    Returns:
        ``[..., N]`` advantages.

    Raises:
        ValueError: if ``returns`` has no dimension, ``group_size < 2``, ``N % group_size != 0``
            or ``eps < 0``.
    """
    if not eps >= 0.0:
        raise ValueError(f"eps must be >= 0, got {eps!r}")
    grouped = _grouped(returns, group_size, "reinforce_pp_advantage")
    centred = grouped - grouped.mean(dim=-1, keepdim=True)
    return (centred / (centred.std(correction=0) + eps)).flatten(-2)


@dataclass(frozen=True)
class BaselineTest:
    """The outcome of :meth:`GreedyRolloutBaseline.update`.

    Attributes:
        replaced: the frozen copy was replaced by the policy.
        p_value: one-sided p-value of "the policy is no better than the baseline".
        policy_mean: the policy's mean greedy reward on the evaluation set.
        baseline_mean: the frozen copy's mean greedy reward on the same instances.
    """

    replaced: bool
    p_value: float
    policy_mean: float
    baseline_mean: float


class GreedyRolloutBaseline:
    """The greedy-rollout baseline of Kool, van Hoof and Welling (2019), "Attention, Learn to
    Solve Routing Problems!".

    The baseline of an instance ``s`` is the reward of a greedy (argmax) decode of ``s`` by a
    frozen copy ``theta_BL`` of the policy::

        b(s) = R(greedy(pi_{theta_BL}, s))

    It depends on the instance but not on the sampled solution, so the gradient stays unbiased;
    it is a hard baseline to beat (a sample must be better than the greedy decode to be
    reinforced), which is what makes it strong. After each epoch, :meth:`update` decodes an
    evaluation set greedily with both the policy and the frozen copy and replaces the copy with
    the policy when a one-sided paired t-test says the policy is better at level ``alpha``:

        d_i = R(greedy(pi_theta, s_i)) - R(greedy(pi_{theta_BL}, s_i)),
        t = mean(d) / (std(d) / sqrt(m)),   replace if P(T_{m-1} >= t) < alpha.

    Kool et al. draw a fresh evaluation set after each replacement (else the test is rerun on the
    instances the new copy was selected on) and use an exponential moving average as the
    baseline during the first epoch; both are the caller's choice here.

    =====================  ===============  ==================================================
    symbol                 shape            meaning
    =====================  ===============  ==================================================
    ``instances``          any              what ``rollout`` takes: e.g. coordinates ``[B, n, 2]``
    ``rollout(m, x)``      ``[B]``          rewards of greedy decodes of ``x`` by module ``m``
    returned by ``()``     ``[B]``          the baselines, no gradient
    =====================  ===============  ==================================================

    Args:
        policy: the policy module; a deep copy is frozen (``eval()``, no gradients).
        rollout: ``rollout(module, instances) -> rewards [B]``, a greedy decode; it is called
            under ``torch.no_grad()``.
        alpha: significance level of the replacement test, in ``(0, 1)``.

    Raises:
        ValueError: if ``alpha`` is not in ``(0, 1)``.
    """

    def __init__(
        self,
        policy: nn.Module,
        rollout: Callable[[nn.Module, Any], Tensor],
        alpha: float = 0.05,
    ) -> None:
        if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not 0 < alpha < 1:
            raise ValueError(f"alpha must be a number in (0, 1), got {alpha!r}")
        self.rollout = rollout
        self.alpha = float(alpha)
        self.module = _frozen_copy(policy)
        self.num_replacements = 0

    def __call__(self, instances: Any) -> Tensor:
        """The frozen copy's greedy rewards on ``instances``: ``[B]``, no gradient."""
        with torch.no_grad():
            return self.rollout(self.module, instances).detach()

    def update(self, policy: nn.Module, instances: Any) -> BaselineTest:
        """Replace the frozen copy with ``policy`` if it is significantly better on ``instances``.

        Args:
            policy: the current policy.
            instances: the evaluation set, decoded greedily by both.

        Returns:
            The test's outcome.

        Raises:
            ValueError: if the two rollouts' rewards are not the same 1-d shape with at least
                two entries.
        """
        with torch.no_grad():
            candidate = self.rollout(policy, instances).detach().double()
            current = self.rollout(self.module, instances).detach().double()
        if candidate.shape != current.shape or candidate.ndim != 1 or candidate.numel() < 2:
            raise ValueError(
                "rollout must return rewards [B] with B >= 2 for both modules, got shapes "
                f"{tuple(candidate.shape)} and {tuple(current.shape)}"
            )
        p_value = paired_t_test(candidate, current)
        replaced = p_value < self.alpha
        if replaced:
            self.module = _frozen_copy(policy)
            self.num_replacements += 1
        return BaselineTest(replaced, p_value, float(candidate.mean()), float(current.mean()))

    def state_dict(self) -> dict[str, Any]:
        """The frozen copy's parameters, ``alpha`` and ``num_replacements``."""
        return {
            "module": self.module.state_dict(),
            "alpha": self.alpha,
            "num_replacements": self.num_replacements,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state produced by :meth:`state_dict` into the frozen copy."""
        self.module.load_state_dict(state["module"])
        self.alpha = float(state["alpha"])
        self.num_replacements = int(state["num_replacements"])


def paired_t_test(first: Tensor, second: Tensor) -> float:
    """One-sided paired t-test: the p-value of ``mean(first - second) <= 0``.

    ::

        d = first - second,   t = mean(d) / (std(d) / sqrt(m)),   p = P(T_{m-1} >= t)

    with the sample std (divide by ``m - 1``) and ``T_{m-1}`` Student's t with ``m - 1`` degrees
    of freedom. Differences that are all equal give ``p = 0`` if positive, else 1 (no spread,
    no doubt).

    Args:
        first: ``[m]`` paired samples, ``m >= 2``.
        second: ``[m]``.

    Returns:
        The p-value, a float in ``[0, 1]``.

    Raises:
        ValueError: for shapes that differ or fewer than two pairs.
    """
    if first.shape != second.shape or first.ndim != 1 or first.numel() < 2:
        raise ValueError(
            f"paired_t_test needs two [m] tensors with m >= 2, got {tuple(first.shape)} and "
            f"{tuple(second.shape)}"
        )
    differences = first.detach().double() - second.detach().double()
    mean = float(differences.mean())
    std = float(differences.std(correction=1))
    if std == 0.0:
        return 0.0 if mean > 0 else 1.0
    t = mean / (std / math.sqrt(differences.numel()))
    return _student_t_sf(t, differences.numel() - 1)


def _student_t_sf(t: float, df: int) -> float:
    """``P(T_df >= t)`` for an integer ``df >= 1``, by the finite series of Abramowitz and
    Stegun (1964), 26.7.3 and 26.7.4, for ``A = P(|T| < |t|)`` with ``theta = atan(|t| / sqrt(df))``:

    * odd ``df``: ``A = 2/pi * (theta + sin cos * sum_{j < (df-1)/2} c_j cos^{2j})``,
      ``c_0 = 1``, ``c_j = c_{j-1} * 2j / (2j + 1)``;
    * even ``df``: ``A = sin * sum_{j < df/2} c_j cos^{2j}``,
      ``c_0 = 1``, ``c_j = c_{j-1} * (2j - 1) / (2j)``.

    Exact up to rounding; the terms are positive, so the sums are stable.
    """
    theta = math.atan(abs(t) / math.sqrt(df))
    sin, cos2 = math.sin(theta), math.cos(theta) ** 2
    terms = df // 2 if df % 2 == 0 else (df - 1) // 2  # 0 only for df = 1
    j = torch.arange(1, max(terms, 1), dtype=torch.float64)
    ratios = (2 * j - 1) / (2 * j) if df % 2 == 0 else 2 * j / (2 * j + 1)
    # c_j cos^{2j} as a running product of ratio * cos^2: no power of cos underflows alone.
    series = 1.0 + float(torch.cumprod(ratios * cos2, 0).sum()) if terms > 0 else 0.0
    odd = 2 / math.pi * (theta + sin * math.cos(theta) * series)
    inside = sin * series if df % 2 == 0 else odd  # P(|T| < |t|)
    tail = (1.0 - inside) / 2
    return tail if t >= 0 else 1.0 - tail


def _frozen_copy(module: nn.Module) -> nn.Module:
    frozen = copy.deepcopy(module).eval()
    for parameter in frozen.parameters():
        parameter.requires_grad_(False)
    return frozen


def _grouped(returns: Tensor, group_size: int, caller: str) -> Tensor:
    """Detached ``returns`` reshaped from ``[..., N]`` to ``[..., N // k, k]`` after validation."""
    if returns.ndim < 1:
        raise ValueError(f"{caller} needs returns with a last dimension N, got a 0-d tensor")
    size = returns.shape[-1]
    try:
        # operator.index accepts Python and numpy integers but not floats or bools-as-floats.
        valid = not isinstance(group_size, bool) and operator.index(group_size) >= 2
    except TypeError:
        valid = False
    if not valid:
        raise ValueError(f"{caller} needs an integer group_size >= 2, got {group_size!r}")
    if size % group_size:
        raise ValueError(
            f"{caller}: the last dimension of returns (shape {tuple(returns.shape)}) has "
            f"{size} samples, not a multiple of group_size={group_size}"
        )
    return returns.detach().unflatten(-1, (size // group_size, group_size))


def _check_decay(decay: float) -> None:
    if isinstance(decay, bool) or not isinstance(decay, numbers.Real) or not 0.0 <= decay < 1.0:
        raise ValueError(f"decay must be a number in [0, 1), got {decay!r}")


__all__ = [
    "BaselineTest",
    "EMABaseline",
    "GreedyRolloutBaseline",
    "group_mean_advantage",
    "group_normalize",
    "leave_one_out",
    "paired_t_test",
    "reinforce_pp_advantage",
]
