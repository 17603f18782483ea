"""LunarLander-v3 (Box2D, install the ``box2d`` extra): A2C with n-step returns.

rl-zoo's A2C settings for the task: 8 environments x 5 steps per update, gamma 0.995,
5-step returns (``gae_lambda=1``), unnormalised advantages, a learning rate of 8.3e-4 decayed
linearly to zero over its 200,000-step budget.
"""

from gymnasium.spaces import Discrete

from pgrad.agent import A2C


class LunarLander(A2C):
    name = "lunarlander"
    env_id = "LunarLander-v3"
    action_spaces = (Discrete,)
    defaults = {**A2C.defaults, "total_steps": 200_000, "num_envs": 8, "num_steps": 5,
                "gamma": 0.995, "gae_lambda": 1.0, "learning_rate": 8.3e-4,
                "learning_rate_final": 0.0, "ent_coef": 1e-5, "normalize_advantages": False}
