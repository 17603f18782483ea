"""MuJoCo locomotion (install the ``mujoco`` extra): PPO with the published continuous-control
settings, one preset per task.

The settings of the PPO paper's MuJoCo experiments as CleanRL's ``ppo_continuous_action``
reproduces them (Schulman et al. 2017; Huang et al. 2022, "The 37 Implementation Details of
PPO"): one environment x 2,048 steps per update, 10 epochs of 32 minibatches (64 samples),
Adam at 3e-4 annealed linearly to 0, GAE(0.95) with gamma 0.99, ratio and value clipping at
0.2, advantages normalised per minibatch, no entropy bonus, gradient norm clipped at 0.5, two
separate 64x64 tanh networks with orthogonal initialisation, a state-independent log-std
starting at 0, and the continuous-control details: observations standardised by running
statistics (clipped to +-10), rewards divided by a running std of the discounted return
(clipped to +-10), Gaussian samples clipped to the action bounds only at the environment.

Time limits (1,000 steps) truncate and bootstrap from the critic instead of counting as deaths.
The policy is an unsquashed Gaussian, as in the runs these settings were published with.
"""

from gymnasium.spaces import Box

from pgrad.agents.generic import PPO

MUJOCO_PPO = {
    **PPO.defaults,
    "total_steps": 1_000_000,
    "num_envs": 1,
    "num_steps": 2048,
    "update_epochs": 10,
    "num_minibatches": 32,
    "learning_rate": 3e-4,
    "learning_rate_final": 0.0,
    "gamma": 0.99,
    "gae_lambda": 0.95,
    "clip_coef": 0.2,
    "clip_value": 0.2,
    "ent_coef": 0.0,
    "vf_coef": 0.5,
    "max_grad_norm": 0.5,
    "normalize_obs": True,
    "normalize_reward": True,
    "log_std_init": 0.0,
    "checkpoint_every": 100_000,
}
"""The shared settings of the MuJoCo presets."""


class HalfCheetah(PPO):
    name = "halfcheetah"
    env_id = "HalfCheetah-v5"
    action_spaces = (Box,)
    defaults = MUJOCO_PPO


class Hopper(PPO):
    name = "hopper"
    env_id = "Hopper-v5"
    action_spaces = (Box,)
    defaults = MUJOCO_PPO


class Walker2d(PPO):
    name = "walker2d"
    env_id = "Walker2d-v5"
    action_spaces = (Box,)
    defaults = MUJOCO_PPO
