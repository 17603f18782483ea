"""What every algorithm gives the agent's loop: ``prepare`` once per rollout, ``loss`` per step.

```
batch = algorithm.prepare(rollout)          # once: values, returns or GAE, baselines, old log-probs
for epoch in range(update_epochs):          # REINFORCE and A2C: 1 x 1
    for minibatch in batch.minibatches(num_minibatches):
        parts = algorithm.loss(minibatch, entropy_coef)   # LossParts: everything it computed
        guarded optimizer step on parts.total             # (the agent's: non-finite skip, clip)
    if algorithm.stop_epochs(epoch_parts): break          # e.g. PPO's target KL
algorithm.after_update(batch)               # e.g. fold the batch into a moving-average baseline
```

An algorithm holds the networks it differentiates and the state it carries between updates
(a moving-average baseline), never the environment or the optimizer.
"""

from __future__ import annotations

from typing import Any, ClassVar

from torch import nn

from pgrad.config import Config
from pgrad.losses import LossParts
from pgrad.rollout import Batch, Rollout


class Algorithm:
    """The interface the agent's loop drives; see the module docstring.

    Args:
        policy: the policy (observations to a distribution).
        critic: the value function, or ``None`` when the config's baseline needs none.
        config: the run's hyperparameters (read, never changed).
    """

    name: ClassVar[str] = "algorithm"

    def __init__(self, policy: nn.Module, critic: nn.Module | None, config: Config) -> None:
        self.policy = policy
        self.critic = critic
        self.config = config

    def prepare(self, rollout: Rollout) -> Batch:
        """Everything computed once per rollout, under ``torch.no_grad``."""
        raise NotImplementedError

    def loss(self, batch: Batch, entropy_coef: float) -> LossParts:
        """The differentiable loss of one minibatch and its parts."""
        raise NotImplementedError

    def stop_epochs(self, parts: list[LossParts]) -> bool:
        """Whether to end this update's epochs after one that produced ``parts``."""
        return False

    def after_update(self, batch: Batch) -> None:
        """Called once the update's optimizer steps are taken (not for a skipped update)."""

    def state_dict(self) -> dict[str, Any]:
        """State carried between updates, saved in checkpoints."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
