"""Acrobot-v1: A2C with GAE, 64 environments x 8 steps per update, a small entropy bonus.

Solves the task (-100) in about 20,000 env steps; rl-zoo's A2C budget is 500,000 steps. The 64
environments step as numpy arrays (``pgrad.envs.AcrobotVectorEnv``), where one more copy costs
little: against 16 x 16 (the A2C defaults, which also solve in about 20,000 steps and end at
-82.6 +- 4.1 after 500,000), 64 x 8 takes half as many updates per env step and a cheaper step
per copy, solving in about a third of the training time (``bench/README.md``), and ends at
-83.4 +- 2.5 (5 seeds).
"""

from gymnasium.spaces import Discrete

from pgrad.agents.generic import A2C


class Acrobot(A2C):
    name = "acrobot"
    env_id = "Acrobot-v1"
    action_spaces = (Discrete,)
    defaults = {
        **A2C.defaults,
        "total_steps": 500_000,
        "ent_coef": 0.01,
        "num_envs": 64,
        "num_steps": 8,
    }
