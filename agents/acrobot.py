"""Acrobot-v1: A2C with GAE."""

from gymnasium.spaces import Discrete

from pgrad.agent import A2C


class Acrobot(A2C):
    name = "acrobot"
    env_id = "Acrobot-v1"
    action_spaces = (Discrete,)
    defaults = {**A2C.defaults, "total_steps": 300_000, "ent_coef": 0.01}
