"""pgrad/PixelGrid-v0: A2C through the CNN encoder, on a grid world seen only as pixels.

16 environments x 8 steps per update, gamma 0.95 (an episode is a few steps), a small entropy
bonus; reaches the shortest paths (mean length 3.2) in about 6,000 steps.
"""

from gymnasium.spaces import Discrete

from pgrad.agents.generic import A2C


class PixelGrid(A2C):
    name = "pixelgrid"
    env_id = "pgrad/PixelGrid-v0"
    action_spaces = (Discrete,)
    defaults = {
        "total_steps": 10_000,
        "num_envs": 16,
        "num_steps": 8,
        "learning_rate": 2e-3,
        "hidden": (64,),
        "ent_coef": 0.01,
        "gamma": 0.95,
    }
