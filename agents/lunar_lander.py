"""LunarLander-v3 (Box2D, install the ``box2d`` extra): A2C with n-step returns.

rl-zoo's A2C settings for the task: 8 environments x 5 steps per update, gamma 0.995,
5-step returns (``gae_lambda=1``), unnormalised advantages, a learning rate decayed linearly to
zero over its 200,000-step budget; plus running observation standardisation and (with Adam
rather than rl-zoo's RMSprop) a learning rate of 5e-4 instead of 8.3e-4. Without the
observation standardisation, or with GAE(0.95), normalised advantages and 16 x 8 rollouts, runs
mostly end hovering (final returns near 0).
"""

from gymnasium.spaces import Discrete

from pgrad.agents.generic import A2C


class LunarLander(A2C):
    name = "lunarlander"
    env_id = "LunarLander-v3"
    action_spaces = (Discrete,)
    defaults = {
        **A2C.defaults,
        "total_steps": 200_000,
        "num_envs": 8,
        "num_steps": 5,
        "gamma": 0.995,
        "gae_lambda": 1.0,
        "learning_rate": 5e-4,
        "learning_rate_final": 0.0,
        "ent_coef": 1e-5,
        "normalize_advantages": False,
        "normalize_obs": True,
    }
