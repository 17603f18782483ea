"""Ready agents: one subclass per environment, each with tuned defaults.

``pgrad train ENV`` picks the preset registered for ``ENV`` here, else the generic ``a2c`` agent.
"""

from __future__ import annotations

from pgrad.agents.acrobot import Acrobot
from pgrad.agents.bandit import Bandit
from pgrad.agents.cartpole import CartPole
from pgrad.agents.lunar_lander import LunarLander
from pgrad.agents.pendulum import Pendulum
from pgrad.agents.short_corridor import ShortCorridor

from pgrad.agent import A2C, Agent, Reinforce

GENERIC: dict[str, type[Agent]] = {"reinforce": Reinforce, "a2c": A2C}
PRESETS: dict[str, type[Agent]] = {
    cls.env_id: cls  # type: ignore[misc]
    for cls in (CartPole, Acrobot, LunarLander, Pendulum, ShortCorridor, Bandit)
}
AGENTS: dict[str, type[Agent]] = {**GENERIC, **{cls.name: cls for cls in PRESETS.values()}}


def preset_for(env_id: str) -> type[Agent]:
    """The tuned agent for ``env_id``, or the generic A2C agent when there is none."""
    return PRESETS.get(env_id, A2C)


__all__ = ["AGENTS", "GENERIC", "PRESETS", "Acrobot", "Bandit", "CartPole", "LunarLander",
           "Pendulum", "ShortCorridor", "preset_for"]
