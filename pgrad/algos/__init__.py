"""Algorithms: what an update prepares once per rollout and what it differentiates per step.

| name        | class                       | paper                                                          |
|-------------|-----------------------------|----------------------------------------------------------------|
| reinforce   | :class:`ReinforceAlgorithm` | Williams 1992; with a critic and GAE, A2C (Mnih et al. 2016)   |
| ppo         | :class:`PPOAlgorithm`       | Schulman et al. 2017 (PPO-Clip)                                |
"""

from pgrad.algos.base import Algorithm
from pgrad.algos.ppo import PPOAlgorithm
from pgrad.algos.reinforce import ReinforceAlgorithm

ALGORITHMS: dict[str, type[Algorithm]] = {"reinforce": ReinforceAlgorithm, "ppo": PPOAlgorithm}

__all__ = ["ALGORITHMS", "Algorithm", "PPOAlgorithm", "ReinforceAlgorithm"]
