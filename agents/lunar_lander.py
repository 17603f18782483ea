"""LunarLander-v3 (Box2D, install the ``box2d`` extra): A2C with GAE."""

from gymnasium.spaces import Discrete

from pgrad.agent import A2C


class LunarLander(A2C):
    name = "lunarlander"
    env_id = "LunarLander-v3"
    action_spaces = (Discrete,)
    defaults = {**A2C.defaults, "total_steps": 1_000_000, "ent_coef": 0.01, "gamma": 0.99}
