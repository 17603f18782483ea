"""pgrad's own Gymnasium environments, registered under the ``pgrad/`` namespace, and
numpy-vectorised forms of Gymnasium's classic-control tasks.

| id                         | what it tests                                                         |
|----------------------------|-----------------------------------------------------------------------|
| ``pgrad/ShortCorridor-v0`` | Sutton & Barto Example 13.1: the best policy is stochastic            |
| ``pgrad/Bandit-v0``        | a k-armed Gaussian bandit with a known best arm                       |
| ``pgrad/PixelGrid-v0``     | a grid world seen only as a 16 x 16 image: the CNN encoder's task     |
| ``pgrad/Copy-v0``          | token generation: repeat the prompt (one token per step)              |
| ``pgrad/Reverse-v0``       | token generation: the prompt backwards                                |
| ``pgrad/Sort-v0``          | token generation: the prompt's symbols sorted                         |
| ``pgrad/Addition-v0``      | token generation: the sum of two numbers                              |
| ``pgrad/TSP-v0``           | build a travelling-salesman tour, one city a step (numpy-vectorised)  |

Importing ``pgrad`` registers them, so ``gymnasium.make("pgrad/ShortCorridor-v0")`` works after
``import pgrad``. Sizes are ``gymnasium.make`` keyword arguments, e.g.
``gymnasium.make("pgrad/Reverse-v0", length=4)``.

``VECTOR_ENVS`` maps Gymnasium ids to ``VectorEnv`` classes that step all N copies as numpy
arrays (Gymnasium 1.4 has such a form for CartPole only). They give the same numbers as
Gymnasium's own environments, step in next-step autoreset mode, and seed each copy on its
own: ``reset(seed=[s0, s1, ...])`` starts copy ``i`` as ``gymnasium.make(id).reset(seed=s_i)``
does, and ``reset(seed=s)`` means ``[s, s + 1, ...]``, as in ``SyncVectorEnv``.
``pgrad.envs_util.make_vector_env`` uses them for these ids with ``vectorization="auto"``.
"""

from gymnasium.envs.registration import register, registry

from pgrad.envs.acrobot_vector import AcrobotVectorEnv
from pgrad.envs.bandit import BanditEnv
from pgrad.envs.continuous_mountain_car_vector import ContinuousMountainCarVectorEnv
from pgrad.envs.mountain_car_vector import MountainCarVectorEnv
from pgrad.envs.pendulum_vector import PendulumVectorEnv
from pgrad.envs.pixel_grid import PixelGridEnv
from pgrad.envs.short_corridor import OPTIMAL_P_RIGHT, OPTIMAL_VALUE, ShortCorridorEnv
from pgrad.envs.tokens import (
    AdditionEnv,
    CopyEnv,
    ReverseEnv,
    SortEnv,
    TokenTask,
    TokenTaskVectorEnv,
)
from pgrad.envs.tsp import TSPEnv, TSPVectorEnv
from pgrad.envs.vector_base import ClassicControlVectorEnv

# Token tasks and TSP end by themselves (a token task at <eos> or the answer's length, TSP after
# n cities): no time limit.
_SPECS: dict[str, dict] = {
    "pgrad/ShortCorridor-v0": {
        "entry_point": "pgrad.envs.short_corridor:ShortCorridorEnv",
        "max_episode_steps": 200,
    },
    "pgrad/Bandit-v0": {"entry_point": "pgrad.envs.bandit:BanditEnv"},
    "pgrad/PixelGrid-v0": {
        "entry_point": "pgrad.envs.pixel_grid:PixelGridEnv",
        "max_episode_steps": 20,
    },
    "pgrad/Copy-v0": {
        "entry_point": "pgrad.envs.tokens:CopyEnv",
        "vector_entry_point": "pgrad.envs.tokens:copy_vector",
    },
    "pgrad/Reverse-v0": {
        "entry_point": "pgrad.envs.tokens:ReverseEnv",
        "vector_entry_point": "pgrad.envs.tokens:reverse_vector",
    },
    "pgrad/Sort-v0": {
        "entry_point": "pgrad.envs.tokens:SortEnv",
        "vector_entry_point": "pgrad.envs.tokens:sort_vector",
    },
    "pgrad/Addition-v0": {
        "entry_point": "pgrad.envs.tokens:AdditionEnv",
        "vector_entry_point": "pgrad.envs.tokens:addition_vector",
    },
    "pgrad/TSP-v0": {
        "entry_point": "pgrad.envs.tsp:TSPEnv",
        "vector_entry_point": "pgrad.envs.tsp:TSPVectorEnv",
    },
}
ENV_IDS = tuple(_SPECS)

VECTOR_ENVS: dict[str, type[ClassicControlVectorEnv]] = {
    "Acrobot-v1": AcrobotVectorEnv,
    "Pendulum-v1": PendulumVectorEnv,
    "MountainCar-v0": MountainCarVectorEnv,
    "MountainCarContinuous-v0": ContinuousMountainCarVectorEnv,
}

for _env_id, _spec in _SPECS.items():
    if _env_id not in registry:
        register(id=_env_id, **_spec)

__all__ = [
    "ENV_IDS",
    "OPTIMAL_P_RIGHT",
    "OPTIMAL_VALUE",
    "VECTOR_ENVS",
    "AcrobotVectorEnv",
    "AdditionEnv",
    "BanditEnv",
    "ClassicControlVectorEnv",
    "ContinuousMountainCarVectorEnv",
    "CopyEnv",
    "MountainCarVectorEnv",
    "PendulumVectorEnv",
    "PixelGridEnv",
    "ReverseEnv",
    "ShortCorridorEnv",
    "SortEnv",
    "TSPEnv",
    "TSPVectorEnv",
    "TokenTask",
    "TokenTaskVectorEnv",
]
