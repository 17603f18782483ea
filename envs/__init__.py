"""pgrad's own Gymnasium environments, registered under the ``pgrad/`` namespace.

| id                       | what it tests                                                        |
|--------------------------|----------------------------------------------------------------------|
| ``pgrad/ShortCorridor-v0`` | Sutton & Barto Example 13.1: the best policy is stochastic         |
| ``pgrad/Bandit-v0``        | a k-armed Gaussian bandit with a known best arm                    |
| ``pgrad/PixelGrid-v0``     | a grid world seen only as a 16 x 16 image: the CNN encoder's task  |

Importing ``pgrad`` registers them, so ``gymnasium.make("pgrad/ShortCorridor-v0")`` works after
``import pgrad``.
"""

from gymnasium.envs.registration import register, registry

from pgrad.envs.bandit import BanditEnv
from pgrad.envs.pixel_grid import PixelGridEnv
from pgrad.envs.short_corridor import OPTIMAL_P_RIGHT, OPTIMAL_VALUE, ShortCorridorEnv

ENV_IDS = ("pgrad/ShortCorridor-v0", "pgrad/Bandit-v0", "pgrad/PixelGrid-v0")

if "pgrad/ShortCorridor-v0" not in registry:
    register(
        id="pgrad/ShortCorridor-v0",
        entry_point="pgrad.envs.short_corridor:ShortCorridorEnv",
        max_episode_steps=200,
    )
if "pgrad/Bandit-v0" not in registry:
    register(id="pgrad/Bandit-v0", entry_point="pgrad.envs.bandit:BanditEnv")

if "pgrad/PixelGrid-v0" not in registry:
    register(
        id="pgrad/PixelGrid-v0",
        entry_point="pgrad.envs.pixel_grid:PixelGridEnv",
        max_episode_steps=20,
    )

__all__ = [
    "ENV_IDS",
    "OPTIMAL_P_RIGHT",
    "OPTIMAL_VALUE",
    "BanditEnv",
    "PixelGridEnv",
    "ShortCorridorEnv",
]
