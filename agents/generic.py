"""The ready agents: REINFORCE, A2C and PPO, each the one loop with its algorithm and defaults.

``pgrad train ENV --agent reinforce`` (or ``a2c``, ``ppo``) trains any environment with these;
the presets in this package subclass them with tuned defaults.
"""

from __future__ import annotations

import torch
from torch import nn

from pgrad.agent import Agent
from pgrad.algos import PPOAlgorithm, ReinforceAlgorithm


class Reinforce(Agent):
    """Monte-Carlo REINFORCE (Williams 1992): whole episodes, reward-to-go, a chosen baseline.

    Each update collects one episode per environment from seeded resets. ``baseline`` picks what
    is subtracted from the return: none, ema, value (a learned critic; ``gae_lambda=1`` makes the
    advantage ``G_t - V(s_t)``), loo (leave-one-out over groups of ``group_size`` environments
    that start from the same seed) or group (group-normalised returns).

    With a learned baseline, the critic takes ``value_epochs=10`` extra regression steps on each
    batch's returns: Monte-Carlo returns grow to about ``1 / (1 - gamma)`` (100 on CartPole),
    and Adam moves each weight by about one learning rate per step, so one step per update
    leaves the critic far behind the returns (explained variance near 0 all run long; the
    advantage normalisation hides it). Spinning Up's VPG fits its value function with 80 steps
    per epoch for the same reason.
    """

    name = "reinforce"
    algorithm_class = ReinforceAlgorithm
    defaults = {
        "rollout": "episodes",
        "baseline": "value",
        "gae_lambda": 1.0,
        "learning_rate": 3e-3,
        "num_envs": 16,
        "value_epochs": 10,
    }


class A2C(Agent):
    """Synchronous advantage actor-critic / VPG (Mnih et al. 2016; Schulman et al. 2016).

    Fixed-length rollouts of ``num_steps`` per environment, a learned value function, GAE(lambda)
    advantages, bootstrapping at rollout ends and time-limit truncations.
    """

    name = "a2c"
    algorithm_class = ReinforceAlgorithm
    defaults = {
        "rollout": "steps",
        "baseline": "value",
        "num_steps": 16,
        "gae_lambda": 0.95,
        "learning_rate": 1e-3,
        "ent_coef": 0.0,
        "num_envs": 16,
    }


class PPO(Agent):
    """Proximal Policy Optimization, the clipped variant (Schulman et al. 2017).

    Defaults in the manner of CleanRL's and the paper's: 2,048 samples per update (8
    environments x 256 steps), 10 epochs of 32 shuffled minibatches (64 samples each), Adam at
    3e-4 annealed linearly to 0, GAE(0.95) with gamma 0.99, ratio clipped to [0.8, 1.2],
    advantages normalised per minibatch, value weight 0.5, no entropy bonus, gradient norm
    clipped at 0.5. Value clipping is off (``clip_value=none``): Andrychowicz et al. (2021)
    found it does not help; ``--set clip_value=0.2`` turns on CleanRL's. Observation and
    reward normalisation are off here and on in the continuous-control presets.
    """

    name = "ppo"
    algorithm_class = PPOAlgorithm
    defaults = {
        "rollout": "steps",
        "baseline": "value",
        "num_envs": 8,
        "num_steps": 256,
        "update_epochs": 10,
        "num_minibatches": 32,
        "learning_rate": 3e-4,
        "learning_rate_final": 0.0,
        "gamma": 0.99,
        "gae_lambda": 0.95,
        "clip_coef": 0.2,
        "ent_coef": 0.0,
        "vf_coef": 0.5,
        "max_grad_norm": 0.5,
        "normalize_advantages": True,
    }

    def make_optimizer(self, params: list[nn.Parameter]) -> torch.optim.Optimizer:
        """Adam as for every agent, fused into one kernel where torch has that for the device:
        PPO takes hundreds of small steps per update, where Adam's per-tensor loop shows."""
        if self.config.optimizer == "adam":
            try:
                return torch.optim.Adam(params, lr=self.config.learning_rate, eps=1e-5, fused=True)
            except (RuntimeError, TypeError):  # an older torch, or a device without it
                pass
        return super().make_optimizer(params)


__all__ = ["A2C", "PPO", "Reinforce"]
