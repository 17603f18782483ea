"""pgrad: policy gradients done right, on PyTorch and Gymnasium.

The math (pure functions of tensors): ``discounted_returns``, ``gae``, the baselines, the losses
and the gradient estimators for non-differentiable operations. The agents: ``Agent`` and the
ready ``Reinforce``, ``A2C`` and ``PPO``, with presets per environment in ``pgrad.agents``.

Names are imported on first use (PEP 562), so ``import pgrad`` and ``pgrad --help`` do not pay
for torch; importing ``pgrad`` registers pgrad's environments with Gymnasium.
"""

from __future__ import annotations

import importlib
from typing import Any

from pgrad import envs as _register_envs  # noqa: F401  (registers pgrad/... environments)

__version__ = "0.1.0"

_EXPORTS = {
    "pgrad.agent": ["Agent"],
    "pgrad.agents.generic": ["A2C", "PPO", "Reinforce"],
    "pgrad.agents.sequence": ["Sequence"],
    "pgrad.baselines": ["EMABaseline", "group_normalize", "leave_one_out"],
    "pgrad.config": ["Config"],
    "pgrad.errors": ["TrainingError"],
    "pgrad.estimators": ["gumbel_softmax", "round_ste", "score_function", "sign_ste"],
    "pgrad.losses": [
        "LossParts",
        "clipped_surrogate_loss",
        "clipped_value_loss",
        "entropy_bonus",
        "explained_variance",
        "normalize_advantages",
        "reinforce_loss",
        "value_loss",
    ],
    "pgrad.nn": ["BinaryLinear", "mlp"],
    "pgrad.policies": ["Policy", "ValueFunction", "policy_for"],
    "pgrad.returns": ["discounted_returns", "gae"],
    "pgrad.rollout": ["Batch", "Rollout"],
    "pgrad.sequence_policies": ["TokenPolicy", "TourPolicy"],
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted([*_WHERE, "__version__"])


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'pgrad' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next access skips this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])
