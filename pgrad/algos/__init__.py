"""Algorithms: what an update prepares once per rollout and what it differentiates per step.

| name        | class                       | paper                                                          |
|-------------|-----------------------------|----------------------------------------------------------------|
| reinforce   | :class:`ReinforceAlgorithm` | Williams 1992; with a critic and GAE, A2C (Mnih et al. 2016)   |
| ppo         | :class:`PPOAlgorithm`       | Schulman et al. 2017 (PPO-Clip)                                |
| sequence    | :class:`SequenceAlgorithm`  | whole-sequence REINFORCE: RLOO, GRPO, Dr. GRPO, REINFORCE++, POMO, greedy rollout |
"""

from pgrad.algos.base import Algorithm
from pgrad.algos.ppo import PPOAlgorithm
from pgrad.algos.reinforce import ReinforceAlgorithm
from pgrad.algos.sequence import SequenceAlgorithm

ALGORITHMS: dict[str, type[Algorithm]] = {
    "reinforce": ReinforceAlgorithm,
    "ppo": PPOAlgorithm,
    "sequence": SequenceAlgorithm,
}

__all__ = ["ALGORITHMS", "Algorithm", "PPOAlgorithm", "ReinforceAlgorithm", "SequenceAlgorithm"]
