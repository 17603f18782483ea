"""pgrad/ShortCorridor-v0: REINFORCE with a linear (tabular) policy, as in Sutton & Barto 13.1."""

from gymnasium.spaces import Discrete

from pgrad.agents.generic import Reinforce


class ShortCorridor(Reinforce):
    name = "shortcorridor"
    env_id = "pgrad/ShortCorridor-v0"
    action_spaces = (Discrete,)
    defaults = {
        **Reinforce.defaults,
        "baseline": "ema",
        "hidden": (),
        "gamma": 1.0,
        "num_envs": 16,
        "total_steps": 60_000,
        "learning_rate": 1e-2,
        "normalize_advantages": False,
        "vectorization": "sync",
        "eval_deterministic": False,  # the optimum is stochastic: p(right) = 2 - sqrt(2)
    }
