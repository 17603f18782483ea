"""LunarLander-v3 (Box2D, install the ``box2d`` extra): PPO, and the A2C preset it replaced.

``lunarlander`` (the default) is PPO with rl-zoo's settings for the task, the ones behind its
published PPO score (242 at 1M steps): 16 environments x 1,024 steps per update (16,384
samples), 4 epochs of minibatches of 64, GAE(0.98) with gamma 0.999, an entropy bonus of 0.01,
Adam at 3e-4, 64x64 tanh networks.

``lunarlander-a2c`` is A2C with n-step returns at rl-zoo's A2C settings: 8 environments x 5
steps per update, gamma 0.995, 5-step returns (``gae_lambda=1``), unnormalised advantages, a
learning rate decayed linearly to zero over its 200,000-step budget; plus running observation
standardisation and (with Adam rather than rl-zoo's RMSprop) a learning rate of 5e-4 instead of
8.3e-4. Without the observation standardisation, or with GAE(0.95), normalised advantages and
16 x 8 rollouts, runs mostly end hovering (final returns near 0).
"""

from gymnasium.spaces import Discrete

from pgrad.agents.generic import A2C, PPO


class LunarLander(PPO):
    name = "lunarlander"
    env_id = "LunarLander-v3"
    action_spaces = (Discrete,)
    defaults = {
        **PPO.defaults,
        "total_steps": 1_000_000,
        "num_envs": 16,
        "num_steps": 1024,
        "update_epochs": 4,
        "num_minibatches": 256,
        "gamma": 0.999,
        "gae_lambda": 0.98,
        "learning_rate": 3e-4,
        "learning_rate_final": None,
        "ent_coef": 0.01,
        "checkpoint_every": 100_000,
    }


class LunarLanderA2C(A2C):
    name = "lunarlander-a2c"
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
