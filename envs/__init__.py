"""pgrad's own Gymnasium environments, registered under the ``pgrad/`` namespace.

| id                         | what it tests                                                      |
|----------------------------|--------------------------------------------------------------------|
| ``pgrad/ShortCorridor-v0`` | Sutton & Barto Example 13.1: the best policy is stochastic         |
| ``pgrad/Bandit-v0``        | a k-armed Gaussian bandit with a known best arm                    |
| ``pgrad/Copy-v0``          | token generation: repeat the prompt (one token per step)           |
| ``pgrad/Reverse-v0``       | token generation: the prompt backwards                             |
| ``pgrad/Sort-v0``          | token generation: the prompt's symbols sorted                      |
| ``pgrad/Addition-v0``      | token generation: the sum of two numbers                           |

Importing ``pgrad`` registers them, so ``gymnasium.make("pgrad/ShortCorridor-v0")`` works after
``import pgrad``. Sizes are ``gymnasium.make`` keyword arguments, e.g.
``gymnasium.make("pgrad/Reverse-v0", length=4)``.
"""

from gymnasium.envs.registration import register, registry

from pgrad.envs.bandit import BanditEnv
from pgrad.envs.short_corridor import OPTIMAL_P_RIGHT, OPTIMAL_VALUE, ShortCorridorEnv
from pgrad.envs.tokens import AdditionEnv, CopyEnv, ReverseEnv, SortEnv, TokenTask

_ENTRY_POINTS = {
    "pgrad/ShortCorridor-v0": ("pgrad.envs.short_corridor:ShortCorridorEnv", 200),
    "pgrad/Bandit-v0": ("pgrad.envs.bandit:BanditEnv", None),
    # Token tasks end by themselves (at <eos> or the answer's length): no time limit.
    "pgrad/Copy-v0": ("pgrad.envs.tokens:CopyEnv", None),
    "pgrad/Reverse-v0": ("pgrad.envs.tokens:ReverseEnv", None),
    "pgrad/Sort-v0": ("pgrad.envs.tokens:SortEnv", None),
    "pgrad/Addition-v0": ("pgrad.envs.tokens:AdditionEnv", None),
}
ENV_IDS = tuple(_ENTRY_POINTS)

for _env_id, (_entry_point, _max_steps) in _ENTRY_POINTS.items():
    if _env_id not in registry:
        register(id=_env_id, entry_point=_entry_point, max_episode_steps=_max_steps)

__all__ = [
    "ENV_IDS",
    "OPTIMAL_P_RIGHT",
    "OPTIMAL_VALUE",
    "AdditionEnv",
    "BanditEnv",
    "CopyEnv",
    "ReverseEnv",
    "ShortCorridorEnv",
    "SortEnv",
    "TokenTask",
]
