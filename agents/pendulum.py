"""Pendulum-v1 (continuous actions): PPO, and the A2C preset it replaced.

``pendulum`` (the default) is PPO laid out as rl-zoo's PPO for the task: 4 environments x
1,024 steps per update, 10 epochs, gamma 0.9, GAE(0.95), Adam at 1e-3 (annealed linearly to 0
over 600,000 steps here), but minibatches of 256 rather than 64: with 64 (640 steps per
update) the ratio was clipped on a fifth of the samples, the policy's std collapsed and a run
stalled near -700; with 256 (160 steps per update, a quarter of the compute) runs kept
exploring and ended near -165 after 200,000 steps. rl-zoo explores with state-dependent noise
(gSDE) instead; here the Gaussian is the plain state-independent one, started wide
(``log_std_init=0.5``, std 1.65), and observations and rewards are normalised (running
statistics; rewards divided by the discounted return's running std). Started at std 1 and
trained 300,000 steps, one seed in five stalled near -580 (it never learned to swing up from
some starts); started wide, that seed ended at -162, and the weakest seed went from -187 at
300,000 steps to -168 at 600,000.

``pendulum-a2c`` is A2C: 64 environments x 4 steps per update, gamma 0.9, GAE(0.9), a learning rate of 3e-3 decayed
linearly to zero over rl-zoo's 1,000,000-step budget, no gradient clipping (the critic's
gradient, with returns near -100 from unscaled rewards, would dominate the clipped norm),
running observation standardisation, and a wide initial policy (``log_std_init=0.5``, std 1.65).
The width matters most: actions are clipped to [-2, 2], and with a narrow Gaussian
(``log_std_init`` -0.5 or -1.5) the policy's mean drifts to +-4 or more within the first 50,000
steps, where every sampled action is clipped to the bound and the policy gradient carries no
signal, so runs stay near -1,200 for most of the budget.

The 64 environments step as numpy arrays (``pgrad.envs.PendulumVectorEnv``), where one more copy
costs little. Against 16 x 8, 64 x 4 reached -200 in fewer env steps (410,000-470,000 against
530,000-610,000 on seeds 1 and 2) at about a third of the training CPU time, and ended the
1,000,000 steps at -182.4 +- 33.0 (5 seeds; 16 x 8: -183.6 +- 34.3). 64 x 8 (half as many
updates) did not reach -200 within the 1,000,000 steps on either seed.
"""

from gymnasium.spaces import Box

from pgrad.agents.generic import A2C, PPO


class Pendulum(PPO):
    name = "pendulum"
    env_id = "Pendulum-v1"
    action_spaces = (Box,)
    defaults = {
        **PPO.defaults,
        "total_steps": 600_000,
        "num_envs": 4,
        "num_steps": 1024,
        "update_epochs": 10,
        "num_minibatches": 16,
        "gamma": 0.9,
        "gae_lambda": 0.95,
        "learning_rate": 1e-3,
        "learning_rate_final": 0.0,
        "normalize_obs": True,
        "normalize_reward": True,
        "log_std_init": 0.5,
        "checkpoint_every": 100_000,
    }


class PendulumA2C(A2C):
    name = "pendulum-a2c"
    env_id = "Pendulum-v1"
    action_spaces = (Box,)
    defaults = {
        **A2C.defaults,
        "total_steps": 1_000_000,
        "num_envs": 64,
        "num_steps": 4,
        "gamma": 0.9,
        "gae_lambda": 0.9,
        "learning_rate": 3e-3,
        "learning_rate_final": 0.0,
        "max_grad_norm": 0.0,
        "log_std_init": 0.5,
        "normalize_obs": True,
    }
