"""The guarded optimizer step: gradient clipping, and a skip for non-finite numbers.

A non-finite loss or gradient norm (one NaN in a batch is enough) would write NaN into every
weight the optimizer touches. The step is skipped instead, with a warning; ``max_nonfinite``
skips in a row mean something is broken for good and stop training (``TrainingError``).
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import Tensor

from pgrad.errors import TrainingError


class GuardedStep:
    """``step(loss)``: backward, clip, and an optimizer step unless anything is non-finite.

    Args:
        optimizer: the optimizer; every parameter in its groups is clipped together.
        max_grad_norm: the global gradient norm to clip to (0: no clipping).
        max_nonfinite: consecutive skipped steps after which ``TrainingError`` is raised.
    """

    def __init__(
        self, optimizer: torch.optim.Optimizer, max_grad_norm: float, max_nonfinite: int
    ) -> None:
        self.optimizer = optimizer
        self.max_norm = max_grad_norm if max_grad_norm > 0 else math.inf
        self.max_nonfinite = max_nonfinite
        self.streak = 0
        """Consecutive skipped steps so far."""

    def step(self, loss: Tensor, where: str) -> float | None:
        """One step on ``loss``; the gradient norm before clipping, or ``None`` if skipped.

        Parameters that ``loss`` does not reach get no gradient (``None``) and are left as they
        are, momentum included. ``where`` names the step in the warning (e.g. ``update 12``).
        """
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, self.max_norm))
        if math.isfinite(float(loss.detach())) and math.isfinite(grad_norm):
            self.streak = 0
            self.optimizer.step()
            return grad_norm
        self.optimizer.zero_grad(set_to_none=True)
        self.streak += 1
        warnings.warn(
            f"{where}: non-finite loss or gradient, update skipped ({self.streak} in a row)",
            RuntimeWarning,
            stacklevel=3,
        )
        if self.streak >= self.max_nonfinite:
            raise TrainingError(
                f"{self.streak} updates in a row had a non-finite loss or gradient; "
                "stopping (weights are unchanged)"
            )
        return None
