"""Pendulum-v1 (continuous actions): A2C with a diagonal Gaussian policy."""

from gymnasium.spaces import Box

from pgrad.agent import A2C


class Pendulum(A2C):
    name = "pendulum"
    env_id = "Pendulum-v1"
    action_spaces = (Box,)
    defaults = {**A2C.defaults, "total_steps": 1_000_000, "gamma": 0.9, "log_std_init": -0.5}
