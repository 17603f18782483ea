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

All of them return constants: the outputs carry no gradient.
"""

from __future__ import annotations

import math
import numbers
import operator
from typing import Any

import torch
from torch import Tensor

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


__all__ = ["EMABaseline", "group_normalize", "leave_one_out"]
