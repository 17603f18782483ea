"""Network building blocks: ``mlp`` and binary layers trained through straight-through estimators."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from pgrad.estimators import sign_ste


def mlp(
    in_features: int,
    hidden: Sequence[int],
    out_features: int,
    activation: type[nn.Module] = nn.Tanh,
    output_gain: float = 1.0,
) -> nn.Sequential:
    """A multilayer perceptron with orthogonal initialisation.

    Hidden layers get gain ``sqrt(2)`` and the output layer ``output_gain`` (a small gain such as
    0.01 on a policy head starts the policy close to uniform); biases start at zero.

    Args:
        in_features: size of the input's last dimension.
        hidden: widths of the hidden layers; empty for a linear map.
        out_features: size of the output's last dimension.
        activation: the non-linearity after each hidden layer.
        output_gain: orthogonal-init gain of the last layer.

    Returns:
        ``nn.Sequential`` mapping ``[..., in_features]`` to ``[..., out_features]``.
    """
    if in_features < 1 or out_features < 1 or any(h < 1 for h in hidden):
        raise ValueError(
            f"mlp sizes must be positive, got in={in_features}, hidden={list(hidden)}, out={out_features}"
        )
    layers: list[nn.Module] = []
    sizes = [in_features, *hidden]
    for a, b in zip(sizes[:-1], sizes[1:], strict=True):
        layers += [_orthogonal(nn.Linear(a, b), math.sqrt(2.0)), activation()]
    layers.append(_orthogonal(nn.Linear(sizes[-1], out_features), output_gain))
    return nn.Sequential(*layers)


def _orthogonal(layer: nn.Linear, gain: float) -> nn.Linear:
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.zeros_(layer.bias)
    return layer


class BinaryLinear(nn.Linear):
    r"""A linear layer whose weights are binarised to ``±1`` in the forward pass (BinaryConnect).

    Forward: :math:`y = x \operatorname{sign}(W)^\top + b`, with ``sign(0) = +1`` so every
    effective weight is exactly ``-1`` or ``+1``; the bias stays real. Backward: the latent real
    weights :math:`W` receive the straight-through gradient of :func:`pgrad.estimators.sign_ste`,
    :math:`\partial L / \partial W := \partial L / \partial \operatorname{sign}(W)`
    (Courbariaux, Bengio & David, 2015, "BinaryConnect: Training Deep Neural Networks with
    binary weights during propagations"; Hubara et al., 2016, "Binarized Neural Networks").

    The latent weights only accumulate small updates between sign flips, so BinaryConnect keeps
    them in ``[-1, 1]``: beyond that range a weight would need ever more updates to flip back,
    while its binarised value no longer changes. **The training loop must call**
    :meth:`clip_weights_` **after every** ``optimizer.step()``. We clip there rather than inside
    ``forward``: an in-place change of a parameter during ``forward`` would invalidate any graph
    that already used it (e.g. two forward passes before one backward) and would hide an
    optimizer-side effect inside evaluation.

    The pre-activations grow like :math:`\sqrt{\text{in\_features}}` because no weight is
    small; follow the layer with a batch norm, as BinaryNet does.

    ======  =================================  ======================================
    symbol  shape                              meaning
    ======  =================================  ======================================
    input   ``[..., in_features]``             real or binary activations
    weight  ``[out_features, in_features]``    latent real weights in ``[-1, 1]``
    bias    ``[out_features]``                 real bias (if ``bias=True``)
    output  ``[..., out_features]``            ``input @ sign(weight).T + bias``
    ======  =================================  ======================================

    Args:
        in_features: size of the input's last dimension.
        out_features: size of the output's last dimension.
        bias: whether to add a learnable real bias.

    Example:
        >>> layer = BinaryLinear(3, 2)
        >>> bool((layer.binary_weight().abs() == 1).all())
        True
        >>> optimizer = torch.optim.SGD(layer.parameters(), lr=10.0)
        >>> layer(torch.ones(4, 3)).sum().backward()
        >>> optimizer.step()
        >>> layer.clip_weights_()
        >>> bool((layer.weight.abs() <= 1).all())
        True
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        if in_features < 1 or out_features < 1:
            raise ValueError(
                f"BinaryLinear sizes must be positive, got in={in_features}, out={out_features}"
            )
        super().__init__(in_features, out_features, bias=bias)

    def binary_weight(self) -> torch.Tensor:
        """The effective weights ``sign(weight)``, ``[out_features, in_features]``, entries ``±1``."""
        return sign_ste(self.weight)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return F.linear(input, self.binary_weight(), self.bias)

    @torch.no_grad()
    def clip_weights_(self) -> None:
        """Clamp the latent weights to ``[-1, 1]`` in place; call after each ``optimizer.step()``."""
        self.weight.clamp_(-1.0, 1.0)


__all__ = ["BinaryLinear", "mlp"]
