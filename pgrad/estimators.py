"""Gradient estimators for operations whose true gradient is zero or undefined.

Each function computes a non-differentiable operation in the forward pass and pairs it with a
surrogate gradient in the backward pass:

=====================  =========================  ==========================================
operation              estimator                  backward pass
=====================  =========================  ==========================================
``round(x)``           :func:`round_ste`          identity (straight-through)
``sign(x)``            :func:`sign_ste`           identity, zeroed where ``|x| > clip``
``argmax(logits)``     :func:`gumbel_softmax`     gradient of a Gumbel-softmax sample
``sample()``           :func:`score_function`     ``(cost - baseline) * grad log_prob``
=====================  =========================  ==========================================

The straight-through estimators (STE) and the Gumbel-softmax relaxation are biased but have low
variance; the score-function (REINFORCE) estimator is unbiased but noisy. ``bench/rebar.py``
measures both on the toy problem of Tucker et al. (2017).

All functions are pure torch and know nothing about environments or agents.
"""

from __future__ import annotations

import torch


def round_ste(x: torch.Tensor) -> torch.Tensor:
    r"""Round to the nearest integer, with the straight-through (identity) gradient.

    Forward: :math:`y = \operatorname{round}(x)` (``torch.round``: halves go to the nearest even
    integer, so ``round(-1.5) = -2`` and ``round(0.5) = 0``).
    Backward: :math:`\partial y / \partial x := 1`, the straight-through estimator of
    Bengio, Léonard & Courville (2013), "Estimating or Propagating Gradients Through Stochastic
    Neurons for Conditional Computation". The true derivative is zero almost everywhere, which
    would stop all learning upstream of the rounding.

    Quantisation to a grid of step ``1/s`` is ``round_ste(x * s) / s``.

    Args:
        x: any shape ``[...]``, floating point.

    Returns:
        ``[...]``, same shape and dtype as ``x``; the values are exactly ``torch.round(x)``.

    Example:
        >>> x = torch.tensor([0.4, 0.6, -1.5], requires_grad=True)
        >>> y = round_ste(x)
        >>> y
        tensor([ 0.,  1., -2.], grad_fn=<AddBackward0>)
        >>> y.sum().backward()
        >>> x.grad
        tensor([1., 1., 1.])
    """
    # ``hard + (x - x.detach())`` rather than ``x + (hard - x).detach()``: the added term is
    # exactly zero, so the value is bit-for-bit ``torch.round(x)``.
    return torch.round(x.detach()) + (x - x.detach())


def sign_ste(x: torch.Tensor, clip: float | None = None) -> torch.Tensor:
    r"""Binarise to ``±1`` with the straight-through gradient, optionally cancelled beyond ``clip``.

    Forward: :math:`y = +1` if :math:`x \ge 0` else :math:`-1` (unlike ``torch.sign``,
    ``sign(0) = +1``, so the output is always binary).
    Backward: :math:`\partial y / \partial x := 1` when ``clip`` is ``None`` (Bengio, Léonard &
    Courville, 2013), else :math:`\mathbb{1}[|x| \le \text{clip}]`, the gradient of
    :math:`\operatorname{hardtanh}(x / c) \cdot c`. Cancelling the gradient for large
    :math:`|x|` is BinaryNet's estimator (Hubara, Courbariaux, Soudry, El-Yaniv & Bengio, 2016,
    "Binarized Neural Networks"), with ``clip=1``: once a pre-activation is far past the
    threshold, a small change cannot flip its sign, so pushing it further is wasted effort.

    Args:
        x: any shape ``[...]``, floating point.
        clip: threshold above which the gradient is zeroed; ``None`` passes it everywhere.

    Returns:
        ``[...]``, same shape and dtype as ``x``, every entry exactly ``-1`` or ``+1``.

    Raises:
        ValueError: if ``clip`` is not positive.

    Example:
        >>> x = torch.tensor([-2.0, -0.5, 0.0, 3.0], requires_grad=True)
        >>> y = sign_ste(x, clip=1.0)
        >>> y.detach()
        tensor([-1., -1.,  1.,  1.])
        >>> y.sum().backward()
        >>> x.grad
        tensor([0., 1., 1., 0.])
    """
    if clip is not None and not clip > 0:
        raise ValueError(f"sign_ste: clip must be > 0 or None, got {clip!r}")
    hard = torch.where(x.detach() >= 0, 1.0, -1.0).to(x.dtype)
    # clamp's gradient is 1 inside [-clip, clip] (boundaries included) and 0 outside: exactly the
    # hard-tanh mask, with no custom autograd.Function to maintain.
    passthrough = x if clip is None else x.clamp(-clip, clip)
    return hard + (passthrough - passthrough.detach())


def gumbel_softmax(
    logits: torch.Tensor,
    tau: float = 1.0,
    hard: bool = False,
    dim: int = -1,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""Sample from ``Categorical(logits=logits)`` through the Gumbel-softmax relaxation.

    With Gumbel noise :math:`g_i = -\log E_i`, :math:`E_i \sim \operatorname{Exp}(1)`, the soft
    sample is

    .. math:: y_i = \frac{\exp((\ell_i + g_i)/\tau)}{\sum_j \exp((\ell_j + g_j)/\tau)},

    a point on the simplex that tends to a one-hot sample as :math:`\tau \to 0` (Jang, Gu & Poole,
    2017, "Categorical Reparameterization with Gumbel-Softmax"; Maddison, Mnih & Teh, 2017,
    "The Concrete Distribution"). Its argmax, :math:`\arg\max_i(\ell_i + g_i)`, is an exact
    categorical sample (the Gumbel-max trick), whatever :math:`\tau`.

    * ``hard=False``: returns :math:`y` and its reparameterised gradient.
    * ``hard=True``: returns the one-hot vector of :math:`\arg\max_i y_i` (exactly 0 and 1) with
      the gradient of :math:`y` (straight-through Gumbel-softmax, Jang et al., 2017). The
      gradient is biased: it is that of the relaxation, not of the discrete sample.

    Why not ``torch.nn.functional.gumbel_softmax``: it draws from the global RNG only, so a
    sample cannot be reproduced without resetting every other random stream; and it takes
    ``-log`` of ``exponential_()`` unguarded, which has returned exact zeros (hence ``inf`` noise
    and ``NaN`` outputs) on some backends and versions (pytorch/pytorch#22557, #101620). Here the
    exponential draw is clamped to the smallest positive normal number, so the noise is finite,
    and ``softmax`` subtracts the maximum, so logits of ``±1e4`` with ``tau=0.05`` stay finite
    forward and backward.

    Args:
        logits: ``[..., K, ...]`` unnormalised log-probabilities; ``K`` categories along ``dim``.
        tau: temperature :math:`\tau > 0`; small is closer to one-hot but noisier in gradient.
        hard: return an exact one-hot sample with the straight-through gradient.
        dim: the category dimension.
        generator: source of randomness, on ``logits.device``; ``None`` uses the global RNG.

    Returns:
        Same shape as ``logits``; each slice along ``dim`` sums to 1 (exactly one-hot if
        ``hard``).

    Raises:
        ValueError: if ``tau`` is not positive and finite.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> y = gumbel_softmax(torch.zeros(2, 3), tau=0.5, hard=True, generator=g)
        >>> y.sum(dim=-1)
        tensor([1., 1.])
        >>> bool(((y == 0) | (y == 1)).all())
        True
    """
    if not 0.0 < tau < float("inf"):
        raise ValueError(f"gumbel_softmax: tau must be positive and finite, got {tau!r}")
    exponentials = torch.empty_like(logits, memory_format=torch.contiguous_format).exponential_(
        generator=generator
    )
    # An exact zero would make the noise +inf and the softmax NaN (see the docstring).
    gumbels = -exponentials.clamp_min(torch.finfo(exponentials.dtype).tiny).log()
    soft = ((logits + gumbels) / tau).softmax(dim)
    if not hard:
        return soft
    index = soft.detach().argmax(dim, keepdim=True)
    one_hot = torch.zeros_like(soft).scatter_(dim, index, 1.0)
    # ``one_hot + (soft - soft.detach())`` keeps the forward value exactly one-hot (the added term
    # is exactly zero) and routes the soft sample's gradient backward.
    return one_hot + (soft - soft.detach())


def score_function(
    log_prob: torch.Tensor,
    cost: torch.Tensor,
    baseline: float | torch.Tensor = 0.0,
) -> torch.Tensor:
    r"""Attach the score-function (REINFORCE) gradient of a sampled cost to the cost itself.

    For a sample :math:`x \sim p_\theta` with log-probability :math:`\log p_\theta(x)` and cost
    :math:`f_\theta(x)`, returns the "magic box" surrogate (Foerster et al., 2018, "DiCE: The
    Infinitely Differentiable Monte Carlo Estimator")

    .. math:: s = f + \operatorname{sg}[f - b] \cdot (\log p - \operatorname{sg}[\log p]),

    where :math:`\operatorname{sg}` stops the gradient. Its value is exactly :math:`f`, and its
    gradient is

    .. math:: \nabla_\theta s = (f - b)\, \nabla_\theta \log p_\theta(x) + \nabla_\theta f_\theta(x),

    the likelihood-ratio estimator of Williams (1992), "Simple Statistical Gradient-Following
    Algorithms for Connectionist Reinforcement Learning", plus the pathwise gradient of
    :math:`f` when the cost depends on :math:`\theta` directly. In expectation over :math:`x`
    this is :math:`\nabla_\theta \mathbb{E}_{p_\theta}[f_\theta(x)]` for any baseline :math:`b`
    that does not depend on :math:`x` (a constant, or a leave-one-out mean over other samples);
    the baseline only changes the variance. Because the value is the cost itself, the result
    composes: sum it, average it or add other losses to it before ``backward()``.

    ========  ===================  =====================================================
    symbol    shape                meaning
    ========  ===================  =====================================================
    log_prob  ``[...]``            :math:`\log p_\theta(x)` of each sample, with its graph
    cost      ``[...]``            :math:`f(x)` of each sample, same shape as ``log_prob``
    baseline  ``[]`` or ``[...]``  a float, or a tensor broadcastable to ``cost``
    returns   ``[...]``            equal to ``cost``; gradient as above
    ========  ===================  =====================================================

    Args:
        log_prob: log-probability of each sample, carrying the graph back to :math:`\theta`.
        cost: cost of each sample; its own graph, if any, adds the pathwise gradient.
        baseline: subtracted from ``cost`` in the score term only; never differentiated.

    Returns:
        A tensor equal in value to ``cost``, shape ``cost.shape``.

    Raises:
        ValueError: if ``log_prob`` and ``cost`` differ in shape, or ``baseline`` does not
            broadcast to ``cost.shape``.

    Example:
        >>> logits = torch.zeros(3, requires_grad=True)
        >>> dist = torch.distributions.Categorical(logits=logits)
        >>> action = torch.tensor(2)
        >>> surrogate = score_function(dist.log_prob(action), torch.tensor(5.0), baseline=1.0)
        >>> surrogate.detach()
        tensor(5.)
        >>> surrogate.backward()
        >>> logits.grad  # (5 - 1) * (onehot(2) - softmax(logits))
        tensor([-1.3333, -1.3333,  2.6667])
    """
    # Same shape, not merely broadcastable: a [N] log_prob against an [N, 1] cost would silently
    # pair every sample with every other sample's cost.
    if log_prob.shape != cost.shape:
        raise ValueError(
            f"score_function: log_prob and cost must have the same shape, got "
            f"log_prob {tuple(log_prob.shape)} and cost {tuple(cost.shape)}"
        )
    if isinstance(baseline, torch.Tensor):
        try:
            broadcast = torch.broadcast_shapes(baseline.shape, cost.shape)
        except RuntimeError:
            broadcast = None
        if broadcast != cost.shape:
            raise ValueError(
                f"score_function: baseline of shape {tuple(baseline.shape)} does not broadcast "
                f"to cost shape {tuple(cost.shape)}"
            )
        baseline = baseline.detach()
    advantage = (cost - baseline).detach()
    return cost + advantage * (log_prob - log_prob.detach())


__all__ = ["gumbel_softmax", "round_ste", "score_function", "sign_ste"]
