"""pgrad's own Gymnasium environments, registered under the ``pgrad/`` namespace, and
numpy-vectorised forms of Gymnasium's classic-control tasks.

| id                       | what it tests                                                        |
|--------------------------|----------------------------------------------------------------------|
| ``pgrad/ShortCorridor-v0`` | Sutton & Barto Example 13.1: the best policy is stochastic         |
| ``pgrad/Bandit-v0``        | a k-armed Gaussian bandit with a known best arm                    |

Importing ``pgrad`` registers them, so ``gymnasium.make("pgrad/ShortCorridor-v0")`` works after
``import pgrad``.

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
from pgrad.envs.short_corridor import OPTIMAL_P_RIGHT, OPTIMAL_VALUE, ShortCorridorEnv
from pgrad.envs.vector_base import ClassicControlVectorEnv

ENV_IDS = ("pgrad/ShortCorridor-v0", "pgrad/Bandit-v0")

VECTOR_ENVS: dict[str, type[ClassicControlVectorEnv]] = {
    "Acrobot-v1": AcrobotVectorEnv,
    "Pendulum-v1": PendulumVectorEnv,
    "MountainCar-v0": MountainCarVectorEnv,
    "MountainCarContinuous-v0": ContinuousMountainCarVectorEnv,
}

if "pgrad/ShortCorridor-v0" not in registry:
    register(
        id="pgrad/ShortCorridor-v0",
        entry_point="pgrad.envs.short_corridor:ShortCorridorEnv",
        max_episode_steps=200,
    )
if "pgrad/Bandit-v0" not in registry:
    register(id="pgrad/Bandit-v0", entry_point="pgrad.envs.bandit:BanditEnv")

__all__ = [
    "ENV_IDS",
    "OPTIMAL_P_RIGHT",
    "OPTIMAL_VALUE",
    "VECTOR_ENVS",
    "AcrobotVectorEnv",
    "BanditEnv",
    "ClassicControlVectorEnv",
    "ContinuousMountainCarVectorEnv",
    "MountainCarVectorEnv",
    "PendulumVectorEnv",
    "ShortCorridorEnv",
]
