"""CartPole-v1: REINFORCE with a learned value baseline on the numpy-vectorised CartPole.

Whole episodes from 8 environments per update, Monte-Carlo returns minus V(s), normalised
advantages, and a learning rate decayed linearly to zero so the policy settles at 500.
"""

from gymnasium.spaces import Discrete

from pgrad.agent import Reinforce


class CartPole(Reinforce):
    name = "cartpole"
    env_id = "CartPole-v1"
    action_spaces = (Discrete,)
    defaults = {**Reinforce.defaults, "num_envs": 8, "total_steps": 150_000,
                "learning_rate": 1e-2, "learning_rate_final": 0.0}
