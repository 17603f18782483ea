"""Pendulum-v1 (continuous actions): A2C with a diagonal Gaussian policy.

16 environments x 8 steps per update, gamma 0.9, GAE(0.9), a learning rate of 3e-3 decayed
linearly to zero over rl-zoo's 1,000,000-step budget, and no gradient clipping: the critic's
gradient (returns near -100 with unscaled rewards) would dominate the clipped norm and shrink
the policy's steps.
"""

from gymnasium.spaces import Box

from pgrad.agent import A2C


class Pendulum(A2C):
    name = "pendulum"
    env_id = "Pendulum-v1"
    action_spaces = (Box,)
    defaults = {**A2C.defaults, "total_steps": 1_000_000, "num_envs": 16, "num_steps": 8,
                "gamma": 0.9, "gae_lambda": 0.9, "learning_rate": 3e-3,
                "learning_rate_final": 0.0, "max_grad_norm": 0.0, "log_std_init": -0.5}
