"""Algorithms: what an update prepares once per rollout and what it differentiates per step.

| name        | class                    | paper                                          |
|-------------|--------------------------|------------------------------------------------|
| reinforce   | :class:`ReinforceAlgorithm` | Williams 1992; with a critic and GAE, A2C (Mnih et al. 2016) |
"""

from pgrad.algos.base import Algorithm
from pgrad.algos.reinforce import ReinforceAlgorithm

ALGORITHMS: dict[str, type[Algorithm]] = {"reinforce": ReinforceAlgorithm}

__all__ = ["ALGORITHMS", "Algorithm", "ReinforceAlgorithm"]
