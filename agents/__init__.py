"""Ready agents: one subclass per environment, each with tuned defaults.

``pgrad train ENV`` picks the preset registered for ``ENV`` here, else the generic ``a2c`` agent.
"""

from __future__ import annotations

from pgrad.agent import Agent
from pgrad.agents.acrobot import Acrobot
from pgrad.agents.bandit import Bandit
from pgrad.agents.cartpole import CartPole, CartPoleFast
from pgrad.agents.generic import A2C, PPO, Reinforce
from pgrad.agents.lunar_lander import LunarLander, LunarLanderA2C
from pgrad.agents.mujoco import HalfCheetah, Hopper, Walker2d
from pgrad.agents.pendulum import Pendulum, PendulumA2C
from pgrad.agents.pixel_grid import PixelGrid
from pgrad.agents.sequence import TSP, Addition, Copy, Reverse, Sequence, Sort
from pgrad.agents.short_corridor import ShortCorridor

GENERIC: dict[str, type[Agent]] = {
    "reinforce": Reinforce,
    "a2c": A2C,
    "ppo": PPO,
    "sequence": Sequence,
}
PRESETS: dict[str, type[Agent]] = {
    cls.env_id: cls  # type: ignore[misc]
    for cls in (
        CartPole,
        Acrobot,
        LunarLander,
        Pendulum,
        HalfCheetah,
        Hopper,
        Walker2d,
        ShortCorridor,
        Bandit,
        PixelGrid,
    )
}
PRESETS.update({cls.env_id: cls for cls in (Copy, Reverse, Sort, Addition, TSP)})  # type: ignore[misc]
# presets that are not their environment's default, chosen by name (pgrad train --agent NAME)
VARIANTS: dict[str, type[Agent]] = {
    cls.name: cls for cls in (CartPoleFast, LunarLanderA2C, PendulumA2C)
}
AGENTS: dict[str, type[Agent]] = {
    **GENERIC,
    **{cls.name: cls for cls in PRESETS.values()},
    **VARIANTS,
}


def preset_for(env_id: str) -> type[Agent]:
    """The tuned agent for ``env_id``, or the generic A2C agent when there is none."""
    return PRESETS.get(env_id, A2C)


__all__ = [
    "AGENTS",
    "GENERIC",
    "PRESETS",
    "VARIANTS",
    "Acrobot",
    "Bandit",
    "CartPole",
    "CartPoleFast",
    "HalfCheetah",
    "Hopper",
    "LunarLander",
    "LunarLanderA2C",
    "Pendulum",
    "PendulumA2C",
    "PixelGrid",
    "ShortCorridor",
    "Sequence",
    "Sort",
    "TSP",
    "Addition",
    "Copy",
    "Reverse",
    "Walker2d",
    "preset_for",
]
