"""Algorithms: what an update prepares once per rollout and what it differentiates per step.

| name        | class                    | paper                                          |
|-------------|--------------------------|------------------------------------------------|
| reinforce   | :class:`ReinforceAlgorithm` | Williams 1992; with a critic and GAE, A2C (Mnih et al. 2016) |
| sequence    | :class:`SequenceAlgorithm` | whole-sequence REINFORCE: RLOO, GRPO, Dr. GRPO, REINFORCE++, POMO, greedy rollout |
"""

from pgrad.algos.base import Algorithm
from pgrad.algos.reinforce import ReinforceAlgorithm
from pgrad.algos.sequence import SequenceAlgorithm

ALGORITHMS: dict[str, type[Algorithm]] = {
    "reinforce": ReinforceAlgorithm,
    "sequence": SequenceAlgorithm,
}

__all__ = ["ALGORITHMS", "Algorithm", "ReinforceAlgorithm", "SequenceAlgorithm"]
