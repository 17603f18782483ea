"""pgrad: policy gradients done right, on PyTorch and Gymnasium.

The math (pure functions of tensors): ``discounted_returns``, ``gae``, the baselines, the losses
and the gradient estimators for non-differentiable operations. The agents: ``Agent`` and the
ready ``Reinforce``, ``A2C`` and ``PPO``, with presets per environment in ``pgrad.agents``.
"""

from pgrad import envs as _register_envs  # noqa: F401  (registers pgrad/... environments)
from pgrad.agent import Agent
from pgrad.agents.generic import A2C, PPO, Reinforce
from pgrad.baselines import EMABaseline, group_normalize, leave_one_out
from pgrad.config import Config
from pgrad.errors import TrainingError
from pgrad.estimators import gumbel_softmax, round_ste, score_function, sign_ste
from pgrad.losses import (
    LossParts,
    clipped_surrogate_loss,
    clipped_value_loss,
    entropy_bonus,
    explained_variance,
    normalize_advantages,
    reinforce_loss,
    value_loss,
)
from pgrad.nn import BinaryLinear, mlp
from pgrad.policies import Policy, ValueFunction, policy_for
from pgrad.returns import discounted_returns, gae
from pgrad.rollout import Batch, Rollout

__version__ = "0.1.0"

__all__ = [
    "A2C",
    "Batch",
    "Agent",
    "BinaryLinear",
    "Config",
    "EMABaseline",
    "LossParts",
    "PPO",
    "Policy",
    "Reinforce",
    "Rollout",
    "TrainingError",
    "ValueFunction",
    "__version__",
    "clipped_surrogate_loss",
    "clipped_value_loss",
    "discounted_returns",
    "entropy_bonus",
    "explained_variance",
    "gae",
    "group_normalize",
    "gumbel_softmax",
    "leave_one_out",
    "mlp",
    "normalize_advantages",
    "policy_for",
    "reinforce_loss",
    "round_ste",
    "score_function",
    "sign_ste",
    "value_loss",
]
