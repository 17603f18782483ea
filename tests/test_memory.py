"""The memory estimate: a hand-computed case, what each size scales, and refusal past the limit."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from gymnasium import spaces

from pgrad import memory
from pgrad.config import Config
from pgrad.envs_util import make_vector_env, probe_env
from pgrad.memory import (
    EPISODE_STEP_CAP,
    UNLIMITED_EPISODE_STEPS,
    EnvFootprint,
    MemoryBudgetError,
    available_memory,
    check_memory,
    estimate_memory,
    format_bytes,
)

BOX4 = spaces.Box(-1.0, 1.0, (4,), np.float32)
MiB = 2**20


def footprint(
    limit: int | None = 500, vectorized: bool = False, env_bytes: int = 1000
) -> EnvFootprint:
    return EnvFootprint(BOX4, spaces.Discrete(2), limit, env_bytes, vectorized)


def small(**changes) -> Config:
    base = dict(num_envs=10, num_steps=7, rollout="steps", hidden=(3,), vectorization="sync")
    return Config(**{**base, **changes})


def test_estimate_worked_out_by_hand():
    estimate = estimate_memory(small(baseline="value"), footprint())
    # one sample: 160 + 6 x 4 obs floats + 8 (action) + 12 x 2 logits + 8 x 2 networks x 3 units
    assert estimate.rollout_bytes == 10 * (7 + 1) * (160 + 24 + 8 + 24 + 48)
    # policy 4x3+3 + 3x2+2 (+2 for a Gaussian's log-std) = 25, critic 4x3+3 + 3x1+1 = 19;
    # 16 bytes each (weight, gradient, two Adam moments) on top of the fixed 448 MiB
    assert estimate.network_bytes == 448 * MiB + (25 + 19) * 16
    # sync: 1 KiB per sub-environment plus 1.25 x the 1000 bytes measured
    assert estimate.env_bytes == 10 * (1024 + 1250)
    assert estimate.total == estimate.rollout_bytes + estimate.network_bytes + estimate.env_bytes
    assert (estimate.num_envs, estimate.steps, estimate.mode) == (10, 7, "sync")


def test_rollout_and_environments_scale_with_their_sizes():
    one = estimate_memory(small(), footprint())
    assert estimate_memory(small(num_envs=20), footprint()).rollout_bytes == 2 * one.rollout_bytes
    assert estimate_memory(small(num_envs=20), footprint()).env_bytes == 2 * one.env_bytes
    assert estimate_memory(small(num_steps=15), footprint()).rollout_bytes == 2 * one.rollout_bytes
    wider = estimate_memory(small(hidden=(300,)), footprint())
    assert wider.rollout_bytes > 15 * one.rollout_bytes  # 8 bytes x 2 networks x 300 units
    assert one.advice() == "lower num_envs"  # 10 sync envs outweigh 80 samples
    long = estimate_memory(small(num_steps=100), footprint())
    assert long.advice() == "lower num_envs, num_steps or max_episode_steps"
    assert estimate_memory(small(hidden=(10**4, 10**4)), footprint()).advice() == "lower hidden"
    # whole episodes of at most 7 steps: the same rollout length, with and without a critic
    critic = estimate_memory(small(rollout="episodes", max_episode_steps=7), footprint())
    no_critic = estimate_memory(
        small(baseline="none", rollout="episodes", max_episode_steps=7), footprint()
    )
    assert no_critic.rollout_bytes < critic.rollout_bytes  # one network's activations, not two
    assert no_critic.network_bytes < critic.network_bytes


def test_episode_rollouts_are_as_long_as_the_longest_episode_allowed():
    episodes = small(rollout="episodes")
    assert estimate_memory(episodes, footprint(limit=500)).steps == 500
    assert estimate_memory(episodes.replace(max_episode_steps=50), footprint()).steps == 50
    assert estimate_memory(episodes, footprint(limit=None)).steps == UNLIMITED_EPISODE_STEPS
    assert estimate_memory(episodes, footprint(limit=10**9)).steps == EPISODE_STEP_CAP
    # evaluation runs whole episodes whatever the training rollout is
    evaluation = estimate_memory(small(), footprint(), learner=False, num_envs=3)
    assert (evaluation.num_envs, evaluation.steps) == (3, 500)


def test_episode_cap_is_the_agents():
    from pgrad.envs_util import EPISODE_STEP_CAP as AGENT_CAP

    assert EPISODE_STEP_CAP == AGENT_CAP


def test_vectorisation_mode_prices_the_environments():
    numpy_env = estimate_memory(small(vectorization="auto"), footprint(vectorized=True))
    assert numpy_env.mode == "vector_entry_point"
    assert numpy_env.env_bytes == 10 * (32 + 16 * 4)  # a few floats per sub-environment
    sync = estimate_memory(small(vectorization="auto"), footprint(vectorized=False))
    assert sync.mode == "sync"
    process_each = estimate_memory(small(vectorization="async"), footprint())
    assert process_each.env_bytes >= 10 * 24 * MiB


def test_workers_multiply_the_rollout_and_stay_off_this_machine_when_remote():
    local = estimate_memory(small(workers=4), footprint())
    alone = estimate_memory(small(), footprint())
    assert local.num_envs == 40 and local.rollout_bytes == 4 * alone.rollout_bytes
    assert local.env_bytes >= 4 * alone.env_bytes + 4 * 256 * MiB  # worker processes too
    remote = estimate_memory(small(workers=4, ray_address="10.0.0.1:6379"), footprint())
    assert remote.env_bytes == 0 and remote.rollout_bytes == local.rollout_bytes


def test_check_memory_refuses_past_the_margin_and_names_both_sizes():
    estimate = estimate_memory(small(), footprint())
    check_memory(estimate, available=estimate.total * 2)
    check_memory(estimate)  # this machine has the 100 MiB it takes
    with pytest.raises(MemoryBudgetError) as caught:
        check_memory(estimate, available=int(estimate.total * 1.05))  # within the 10 % margin
    message = str(caught.value)
    assert format_bytes(estimate.total) in message
    assert format_bytes(int(estimate.total * 1.05)) in message
    assert "\n" not in message


def test_available_memory_respects_an_address_space_limit(monkeypatch):
    unlimited = available_memory()
    assert unlimited is not None and unlimited > 0
    limit = 8 * 2**40 if unlimited < 4 * 2**40 else 2 * unlimited  # above what the system says
    monkeypatch.setattr(resource, "getrlimit", lambda _: (limit, limit))
    assert available_memory() > unlimited / 2  # other processes move MemAvailable meanwhile
    small_limit = 2**31
    monkeypatch.setattr(resource, "getrlimit", lambda _: (small_limit, small_limit))
    assert available_memory() < small_limit


def test_probe_measures_one_environment():
    cartpole = probe_env("CartPole-v1")
    assert cartpole.observation_space.shape == (4,)
    assert cartpole.action_space == spaces.Discrete(2)
    assert cartpole.max_episode_steps == 500 and cartpole.vectorized
    assert 0 < cartpole.env_bytes < 64 * 1024
    assert probe_env("CartPole-v1", max_episode_steps=20).max_episode_steps == 20
    # Taxi keeps its transition table in every instance: a hundred times CartPole's size
    assert probe_env("Taxi-v4").env_bytes > 100 * cartpole.env_bytes


def test_make_vector_env_refuses_more_environments_than_memory_holds(monkeypatch):
    # a machine with 4 MiB to spare: 10,000 sync envs of over 1 KiB each cannot fit (and if the
    # check were gone, building them would take seconds, not the machine's memory)
    monkeypatch.setattr(memory, "available_memory", lambda: 4 * MiB)
    with pytest.raises(MemoryBudgetError, match="lower num_envs"):
        make_vector_env("CartPole-v1", 10_000, "sync")
    make_vector_env("CartPole-v1", 100, "sync").close()


MEASURE = """
import json, resource, tempfile, warnings
warnings.filterwarnings("ignore")
from pathlib import Path
from pgrad.agent import Agent
from pgrad.envs_util import probe_env
from pgrad.memory import estimate_memory

config = Agent.default_config(**CONFIG)
estimate = estimate_memory(config, probe_env(config.env_id))
before = int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize()
with tempfile.TemporaryDirectory() as run_dir:
    agent = Agent(config, run_dir=Path(run_dir), quiet=True)
    agent.train(1)  # one update
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"estimate": estimate.total, "measured": peak - before}))
"""


@pytest.mark.slow
def test_estimate_bounds_a_measured_update_without_crying_wolf():
    """One update of 2,000 sync CartPoles x 50 steps: the estimate covers it, within 3x."""
    config = {
        "env_id": "CartPole-v1",
        "num_envs": 2000,
        "num_steps": 50,
        "rollout": "steps",
        "vectorization": "sync",
        "device": "cpu",
        "eval_episodes": 0,
    }
    code = MEASURE.replace("CONFIG", repr(config))
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, check=True
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["measured"] <= result["estimate"] <= 3 * result["measured"], result
