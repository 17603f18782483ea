"""CartPole-v1 presets: REINFORCE with a learned baseline, and A2C at the machine's speed.

``cartpole`` (the default for CartPole-v1) is Monte-Carlo REINFORCE on whole episodes.
``cartpole-fast`` is A2C over 512 numpy-vectorised environments: it solves the task in about
150,000 env steps, about a second of training on one CPU core (see ``bench/README.md``).
"""

from gymnasium.spaces import Discrete

from pgrad.agents.generic import A2C, Reinforce


class CartPole(Reinforce):
    """REINFORCE with a learned value baseline: whole episodes from 8 environments per update.

    Monte-Carlo returns minus V(s), normalised advantages, and a learning rate decayed linearly
    to zero so the policy settles at 500.
    """

    name = "cartpole"
    env_id = "CartPole-v1"
    action_spaces = (Discrete,)
    defaults = {
        **Reinforce.defaults,
        "num_envs": 8,
        "total_steps": 150_000,
        "learning_rate": 1e-2,
        "learning_rate_final": 0.0,
    }


class CartPoleFast(A2C):
    """A2C over 512 numpy-vectorised CartPoles: 16 steps of each per update (8,192 samples).

    Batches that large estimate the gradient well enough for a learning rate of 0.02, decayed
    linearly to zero over rl-zoo's 500,000-step budget. Advantages are left unnormalised, so
    updates shrink as the critic's errors do once the pole stays up (normalised, they keep full
    size and the policy drifts away from 500 more often). A run takes seconds, so it
    checkpoints only at the end.
    """

    name = "cartpole-fast"
    env_id = "CartPole-v1"
    action_spaces = (Discrete,)
    defaults = {
        **A2C.defaults,
        "num_envs": 512,
        "num_steps": 16,
        "total_steps": 500_000,
        "learning_rate": 2e-2,
        "learning_rate_final": 0.0,
        "normalize_advantages": False,
        "checkpoint_every": 0,
    }
