"""pgrad's numpy-vectorised classic control against Gymnasium's own single environments.

Each vectorised environment is driven side by side with N copies of ``gymnasium.make(id)``
given the same seeds and the same actions, the copies reset the way next-step autoreset does.
The actions mix random ones with a simple controller that pumps energy in, so that episodes
end by termination (Acrobot, both mountain cars) as well as by truncation.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import data_equivalence
from gymnasium.utils.passive_env_checker import check_obs
from gymnasium.vector import AutoresetMode, SyncVectorEnv
from gymnasium.vector.utils import batch_space

import pgrad
from pgrad.envs import (
    VECTOR_ENVS,
    AcrobotVectorEnv,
    ClassicControlVectorEnv,
    ContinuousMountainCarVectorEnv,
    MountainCarVectorEnv,
    PendulumVectorEnv,
)
from pgrad.envs_util import accepts_seed_list, make_vector_env
from pgrad.episode_stats import RAW_KEY

N = 8
IDS = list(VECTOR_ENVS)


class NextStepCopies:
    """N Gymnasium environments stepped one by one, with next-step autoreset done by hand: the
    step after a copy's episode ended resets it (no seed, so its generator carries on) and
    reports its first observation, reward 0, not terminated, not truncated."""

    def __init__(self, env_id: str, seeds: list[int], max_episode_steps: int) -> None:
        self.envs = [gym.make(env_id, max_episode_steps=max_episode_steps) for _ in seeds]
        self.seeds = seeds
        self.ended = np.zeros(len(seeds), dtype=bool)

    def reset(self) -> np.ndarray:
        self.ended[:] = False
        return np.stack([env.reset(seed=s)[0] for env, s in zip(self.envs, self.seeds)])

    def states(self) -> np.ndarray:
        """The copies' physical states ``[D, N]`` in float64 (Gymnasium keeps some in float32)."""
        return np.stack([np.asarray(env.unwrapped.state, dtype=np.float64) for env in self.envs], 1)

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, ...]:
        obs, rewards, terminated, truncated = [], [], [], []
        for i, env in enumerate(self.envs):
            if self.ended[i]:
                o, r, te, tr = env.reset()[0], 0.0, False, False
            else:
                o, r, te, tr, _ = env.step(actions[i])
            self.ended[i] = te or tr
            obs.append(o)
            rewards.append(r)
            terminated.append(te)
            truncated.append(tr)
        return np.stack(obs), np.array(rewards), np.array(terminated), np.array(truncated)


def controller(
    env_id: str, obs: np.ndarray, rng: np.random.Generator, dtype: type = np.float32
) -> np.ndarray:
    """Actions ``[N, ...]`` that reach the goal in about 100 steps, with some randomness;
    continuous ones in ``dtype``."""
    n = obs.shape[0]
    if env_id == "Acrobot-v1":  # torque against the first joint's velocity
        pumped = np.where(obs[:, 4] > 0, 0, 2)
        return np.where(rng.random(n) < 0.3, rng.integers(0, 3, n), pumped)
    if env_id == "MountainCar-v0":  # push along the velocity
        pumped = np.where(obs[:, 1] > 0, 2, 0)
        return np.where(rng.random(n) < 0.1, rng.integers(0, 3, n), pumped)
    if env_id == "MountainCarContinuous-v0":  # push along the velocity, often beyond the bound
        force = np.where(obs[:, 1] > 0, 1.0, -1.0) + rng.normal(0.0, 0.6, n)
        return force[:, None].astype(dtype)
    return rng.uniform(-3.0, 3.0, (n, 1)).astype(dtype)  # Pendulum: past the [-2, 2] clip


def run_side_by_side(
    env_id: str, max_steps: int, num_steps: int, dtype: type = np.float32
) -> dict[str, int]:
    """Step the vectorised environment and N single ones together, compare every step (see
    ``test_steps_match_gymnasium...``); returns how many episodes ended each way."""
    seeds = [11, 12, 13, 14, 15, 16, 17, 11]  # the last copy repeats the first one's seed
    envs = make_vector_env(env_id, N, max_episode_steps=max_steps)
    assert type(envs.unwrapped) is VECTOR_ENVS[env_id]
    copies = NextStepCopies(env_id, seeds, max_steps)
    obs, _ = envs.reset(seed=seeds)
    np.testing.assert_array_equal(obs, copies.reset())
    rng = np.random.default_rng(0)
    ends = {"terminated": 0, "truncated": 0}
    for t in range(num_steps):
        actions = controller(env_id, obs, rng, dtype)
        obs, rewards, terminated, truncated, info = envs.step(actions)
        want_obs, want_rewards, want_terminated, want_truncated = copies.step(actions)
        np.testing.assert_array_equal(obs, want_obs, err_msg=f"observations at step {t}")
        np.testing.assert_array_equal(envs.unwrapped.state, copies.states(), f"state at step {t}")
        np.testing.assert_array_equal(terminated, want_terminated, err_msg=f"step {t}")
        np.testing.assert_array_equal(truncated, want_truncated, err_msg=f"step {t}")
        if env_id == "Pendulum-v1":
            np.testing.assert_allclose(rewards, want_rewards, rtol=0, atol=1e-9)
        else:
            np.testing.assert_array_equal(rewards, want_rewards, err_msg=f"rewards at step {t}")
        # nothing but the raw-return recorder that make_vector_env puts on top
        assert set(info) <= {RAW_KEY, "_" + RAW_KEY}, info
        ends["terminated"] += int(terminated.sum())
        ends["truncated"] += int(truncated.sum())
    envs.close()
    return ends


# (time limit, steps): limits shorter than the registered ones reach many truncations
RUNS = {
    "Acrobot-v1": (110, 1500),
    "Pendulum-v1": (60, 1500),
    "MountainCar-v0": (130, 2000),
    "MountainCarContinuous-v0": (150, 2000),
}


@pytest.mark.parametrize("env_id", IDS)
def test_steps_match_gymnasium_through_terminations_truncations_and_resets(env_id):
    """Observations, the physical state (float64, where a last-bit difference shows long before
    it reaches a float32 observation), terminated and truncated are compared exactly at every
    step, and so are the rewards except Pendulum's, compared to 1e-9.

    No tolerance is needed for Acrobot although it integrates with RK4: the vectorised
    integrator performs the same float64 operations in the same order as Gymnasium's scalar
    one (squares through the C library's ``pow``, as numpy's scalar ``**``), and its
    observations after a reset take cos and sin in float32, as Gymnasium's do. A tolerance
    would not help either, Acrobot being chaotic: with ``x * x`` in place of ``pow`` (a last-bit
    difference once in a thousand) the states differed after 3 steps, the float32 observations
    after about 600 and by more than 0.1 after about 750. Pendulum's reward squares its float32
    torque with the C library's ``powf`` in Gymnasium and with ``u * u`` here, which differ in the
    last bit of a float32 about once in a thousand (at most 0.001 x 4.8e-7 in the reward); its
    state and observations are exact. Both mountain cars are exact, the continuous one
    including Gymnasium's mix of float32 and float64 arithmetic.
    """
    ends = run_side_by_side(env_id, *RUNS[env_id])
    assert ends["truncated"] >= 5, ends  # every run resets copies many times
    if env_id != "Pendulum-v1":  # Pendulum never terminates
        assert ends["terminated"] >= 20, ends


@pytest.mark.parametrize("env_id", ["Pendulum-v1", "MountainCarContinuous-v0"])
def test_float64_actions_match_gymnasium_too(env_id):
    """A float64 action changes the precision of Gymnasium's arithmetic (numpy's promotion
    rules); the vectorised step follows it."""
    max_steps, _ = RUNS[env_id]
    ends = run_side_by_side(env_id, max_steps, 600, np.float64)
    assert ends["truncated"] + ends["terminated"] >= 10, ends


def mountain_car_edges(
    rng: np.random.Generator, goal: float, left_push: float
) -> tuple[np.ndarray, np.ndarray]:
    """States ``[2, M]`` (float32 values) and forces ``[M]`` at the edges of the mountain car's
    step: the goal, the speed limit and the left wall, where comparisons in float32 and float64
    can disagree. ``left_push``: the velocity change from force -1 alone."""

    def around(x: float, ulps: int) -> np.ndarray:
        """The float32 numbers within ``ulps`` steps of ``x``."""
        x32 = np.float32(x)
        below = [x32]
        above = [x32]
        for _ in range(ulps):
            below.append(np.nextafter(below[-1], np.float32(-np.inf)))
            above.append(np.nextafter(above[-1], np.float32(np.inf)))
        return np.unique(np.array(below + above, dtype=np.float32))

    states, forces = [], []
    # at the goal, with a velocity that gravity brings to about 0 in this step
    stop = 0.0025 * np.cos(3 * goal)
    for position in around(goal, 2):
        for velocity in around(stop, 40):
            for force in (0.0, 1e-7):
                states.append((position, velocity))
                forces.append(force)
    # at the speed limit, pushed past it (an in-range and a clipped force), anywhere
    for _ in range(1500):
        sign = rng.choice([-1.0, 1.0])
        states.append((rng.uniform(-1.15, 0.4), sign * rng.choice(around(0.07, 3))))
        forces.append(sign * rng.choice([1.0, 1.5]))
    # at the left wall, pushed left, moving left fast or so slowly that it stays put
    creep = 0.0025 * np.cos(3 * -1.2) - left_push
    for position in around(-1.2, 3)[3:]:
        for velocity in (-1e-3, 0.0, *around(creep, 40)):
            states.append((position, velocity))
            forces.append(-1.0)
    return np.array(states, dtype=np.float32).T.astype(np.float64), np.array(forces)


@pytest.mark.parametrize("env_id", ["MountainCar-v0", "MountainCarContinuous-v0"])
def test_mountain_car_edges_match_gymnasium(env_id):
    """One step from states placed at the edges, where Gymnasium's float32 state makes its
    comparisons float32 ones (Continuous: position 0.45 in float32 is below 0.45)."""
    cls = VECTOR_ENVS[env_id]
    left_push = -cls.force if env_id == "MountainCar-v0" else -cls.power
    states, forces = mountain_car_edges(np.random.default_rng(0), cls.goal_position, left_push)
    m = states.shape[1]
    if env_id == "MountainCar-v0":
        actions = np.sign(forces).astype(np.int64) + 1
    else:
        actions = forces[:, None].astype(np.float32)
    envs = VECTOR_ENVS[env_id](num_envs=m)
    envs.reset(seed=0)
    envs.step(envs.action_space.sample() * 0)  # past the first step, which runs in float64
    envs.state[:] = states
    obs, rewards, terminated, truncated, _ = envs.step(actions)
    single = gym.make(env_id).unwrapped
    single.reset(seed=0)
    dtype = np.float32 if env_id == "MountainCarContinuous-v0" else np.float64
    for i in range(m):
        single.state = states[:, i].astype(dtype)
        want = single.step(actions[i])
        np.testing.assert_array_equal(obs[i], want[0], err_msg=f"copy {i}, state {states[:, i]}")
        assert (rewards[i], terminated[i]) == (want[1], want[2]), (i, states[:, i])
    assert terminated.sum() >= 10  # the goal edge is reached
    assert ((obs[:, 0] == np.float32(-1.2)) & (obs[:, 1] == 0)).sum() >= 10  # and the wall


@pytest.mark.parametrize("env_id", IDS)
def test_starts_match_gymnasium_for_many_seeds(env_id):
    """Every start state and first observation, for 2,000 seeds (Acrobot's first observation
    takes cos and sin in float32, which differ from float64's rounded in about one in a
    thousand: a few seeds show a mistake there)."""
    seeds = list(range(2000))
    envs = VECTOR_ENVS[env_id](num_envs=len(seeds))
    obs, _ = envs.reset(seed=seeds)
    single = gym.make(env_id)
    want = np.stack([single.reset(seed=s)[0] for s in seeds])
    np.testing.assert_array_equal(obs, want)


@pytest.mark.parametrize("env_id", IDS)
def test_int_seed_seeds_copy_i_with_seed_plus_i_as_sync_does(env_id):
    ours = VECTOR_ENVS[env_id](num_envs=4)
    sync = gym.make_vec(env_id, num_envs=4, vectorization_mode="sync")
    obs, _ = ours.reset(seed=5)
    np.testing.assert_array_equal(obs, sync.reset(seed=5)[0])
    np.testing.assert_array_equal(obs, ours.reset(seed=[5, 6, 7, 8])[0])
    # unseeded resets carry each copy's generator on, as a single environment's do
    single = gym.make(env_id)
    single.reset(seed=7)
    np.testing.assert_array_equal(ours.reset()[0][2], single.reset()[0])
    sync.close()


@pytest.mark.parametrize("env_id", IDS)
def test_equal_seeds_start_equal_and_stay_equal_under_equal_actions(env_id):
    """Copies given one seed share every episode's start: what grouped baselines rely on."""
    seeds = [3, 3, 3, 9, 9, 4, 5, 6]
    envs = VECTOR_ENVS[env_id](num_envs=N, max_episode_steps=20)
    obs, _ = envs.reset(seed=seeds)
    groups = [[0, 1, 2], [3, 4]]
    rng = np.random.default_rng(1)
    for _ in range(70):  # three truncations, so three more starts per copy
        for group in groups:
            np.testing.assert_array_equal(obs[group], obs[group[:1]].repeat(len(group), 0))
        assert not np.array_equal(obs[0], obs[3]) and not np.array_equal(obs[5], obs[6])
        actions = envs.action_space.sample()
        one = controller(env_id, obs, rng)
        for group in groups:
            actions[group] = one[group[0]]
        obs, *_ = envs.step(actions)


@pytest.mark.parametrize("env_id", IDS)
def test_reset_options_apply_to_that_reset_as_in_gymnasium(env_id):
    options = (
        {"x_init": 0.5, "y_init": 0.2} if env_id == "Pendulum-v1" else {"low": -0.2, "high": -0.1}
    )
    envs = VECTOR_ENVS[env_id](num_envs=3)
    obs, _ = envs.reset(seed=[1, 2, 3], options=options)
    for i, seed in enumerate([1, 2, 3]):
        np.testing.assert_array_equal(obs[i], gym.make(env_id).reset(seed=seed, options=options)[0])


@pytest.mark.parametrize("env_id", IDS)
def test_spaces_dtypes_determinism_and_returned_arrays_as_env_checker_asks(env_id):
    envs = VECTOR_ENVS[env_id](num_envs=N)
    single = gym.make(env_id)
    assert envs.single_observation_space == single.observation_space
    assert envs.single_action_space == single.action_space
    assert envs.observation_space == batch_space(single.observation_space, N)
    assert envs.action_space == batch_space(single.action_space, N)
    assert envs.metadata["autoreset_mode"] is AutoresetMode.NEXT_STEP

    envs.action_space.seed(0)
    actions = [envs.action_space.sample() for _ in range(30)]

    def run() -> list:
        out = [envs.reset(seed=42)]
        out += [envs.step(a) for a in actions]
        return out

    first, second = run(), run()
    assert data_equivalence(first, second, exact=True)  # the same seed, the same run
    obs, rewards, terminated, truncated, _ = first[-1]
    assert obs.dtype == np.float32 and obs.shape == (N, *single.observation_space.shape)
    assert rewards.dtype == np.float64 and rewards.shape == (N,)
    assert terminated.dtype == truncated.dtype == np.bool_
    for step in first[1:]:
        assert envs.observation_space.contains(step[0])
        for row in step[0]:
            check_obs(row, envs.single_observation_space, "step")
    # every call returns new arrays: a caller may keep them
    assert not np.shares_memory(first[-1][0], first[-2][0])
    assert not np.shares_memory(first[-1][1], first[-2][1])
    assert not np.array_equal(envs.reset(seed=1)[0], envs.reset(seed=2)[0])


def test_bad_calls_raise_clear_errors():
    envs = MountainCarVectorEnv(num_envs=3)
    with pytest.raises(RuntimeError, match="reset"):
        envs.step(np.zeros(3, dtype=np.int64))
    envs.reset(seed=0)
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        envs.step(np.zeros(4, dtype=np.int64))
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        envs.step(np.array([0, 1, 3]))
    with pytest.raises(ValueError, match="integers"):
        envs.step(np.zeros(3))
    with pytest.raises(ValueError, match="3 entries"):
        envs.reset(seed=[1, 2])
    with pytest.raises(TypeError, match="seed"):
        envs.reset(seed="1")
    pendulum = PendulumVectorEnv(num_envs=2)
    pendulum.reset(seed=0)
    with pytest.raises(ValueError, match=r"shape \(2, 1\)"):
        pendulum.step(np.zeros(2, dtype=np.float32))
    with pytest.raises(ValueError, match="num_envs"):
        AcrobotVectorEnv(num_envs=0)
    with pytest.raises(ValueError, match="render"):
        ContinuousMountainCarVectorEnv(render_mode="human")


def test_make_vector_env_picks_ours_for_auto_and_vector_entry_point_and_keeps_sync():
    for env_id, cls in VECTOR_ENVS.items():
        for mode in ("auto", "vector_entry_point"):
            envs = make_vector_env(env_id, 4, mode, max_episode_steps=7)
            assert type(envs.unwrapped) is cls and envs.num_envs == 4
            assert envs.unwrapped.max_episode_steps == envs.spec.max_episode_steps == 7
            assert accepts_seed_list(envs)
        assert (
            make_vector_env(env_id, 2).unwrapped.max_episode_steps
            == gym.spec(env_id).max_episode_steps
        )
        sync = make_vector_env(env_id, 2, "sync")
        assert type(sync.unwrapped) is SyncVectorEnv and accepts_seed_list(sync)
    cartpole = make_vector_env("CartPole-v1", 2)  # Gymnasium's own, one shared generator
    assert not isinstance(cartpole.unwrapped, ClassicControlVectorEnv)
    assert not accepts_seed_list(cartpole)


def test_pgrad_list_names_the_numpy_vectorised_environments(capsys):
    from pgrad.cli import main

    assert main(["list"]) == 0
    out = capsys.readouterr().out
    section = out[out.index("numpy-vectorised") :].splitlines()[1:]
    listed = {line.split()[0]: line.split()[1] for line in section}
    assert listed["CartPole-v1"] == "gymnasium"
    assert {env_id: listed[env_id] for env_id in VECTOR_ENVS} == dict.fromkeys(VECTOR_ENVS, "pgrad")
    assert not any(env_id.startswith("phys2d/") for env_id in listed)


def test_a2c_on_acrobot_uses_ours_and_is_reproducible(tmp_path):
    def train(seed: int, name: str) -> tuple[dict, type]:
        agent = pgrad.A2C(
            env_id="Acrobot-v1",
            seed=seed,
            total_steps=8 * 8 * 6,
            num_envs=8,
            num_steps=8,
            quiet=True,
            run_dir=tmp_path / name,
        )
        agent.train()
        return agent.policy.state_dict(), type(agent.envs.unwrapped)

    first, cls = train(1, "a")
    second, _ = train(1, "b")
    other, _ = train(2, "c")
    assert cls is AcrobotVectorEnv
    assert first.keys() == second.keys()
    for key in first:
        assert torch.equal(first[key], second[key]), key
    assert not all(torch.equal(first[key], other[key]) for key in first)
