"""The ready agents: REINFORCE and A2C, each the one loop with its algorithm and defaults.

``pgrad train ENV --agent reinforce`` (or ``a2c``) trains any environment with these; the
presets in this package subclass them with tuned defaults.
"""

from __future__ import annotations

from pgrad.agent import Agent
from pgrad.algos import ReinforceAlgorithm


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


__all__ = ["A2C", "Reinforce"]
