"""pgrad/Bandit-v0: REINFORCE with a moving-average baseline on a 10-armed bandit."""

from gymnasium.spaces import Discrete

from pgrad.agents.generic import Reinforce


class Bandit(Reinforce):
    name = "bandit"
    env_id = "pgrad/Bandit-v0"
    action_spaces = (Discrete,)
    defaults = {
        **Reinforce.defaults,
        "baseline": "ema",
        "hidden": (),
        "num_envs": 64,
        "total_steps": 30_000,
        "learning_rate": 5e-2,
        "normalize_advantages": False,
    }
