"""Acrobot-v1: A2C with GAE, 16 environments x 16 steps per update, a small entropy bonus.

Solves the task (-100) in about 20,000 env steps; rl-zoo's A2C budget is 500,000 steps.
"""

from gymnasium.spaces import Discrete

from pgrad.agents.generic import A2C


class Acrobot(A2C):
    name = "acrobot"
    env_id = "Acrobot-v1"
    action_spaces = (Discrete,)
    defaults = {**A2C.defaults, "total_steps": 500_000, "ent_coef": 0.01}
