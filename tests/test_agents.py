"""Agents: every agent on every action space, persistence, hooks, diagnostics."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

from pgrad import A2C, Agent, Reinforce
from pgrad.checkpoint import CheckpointError
from pgrad.envs import ENV_IDS
from pgrad.envs.short_corridor import OPTIMAL_VALUE, expected_return

BASELINES = ["none", "ema", "value", "loo", "group"]
SPACE_ENVS = [
    "CartPole-v1",
    "pgradtest/BoxAction-v0",
    "pgradtest/MultiDiscrete-v0",
    "pgradtest/MultiBinary-v0",
    "pgradtest/DictObs-v0",
    "pgrad/ShortCorridor-v0",
    "FrozenLake-v1",
]


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_our_envs_pass_check_env(env_id):
    check_env(gym.make(env_id).unwrapped, skip_render_check=True)


def test_short_corridor_value_formula_matches_monte_carlo():
    env = gym.make("pgrad/ShortCorridor-v0", max_episode_steps=10_000)
    rng = np.random.default_rng(0)
    returns = []
    for _ in range(4000):
        env.reset()
        total, done = 0.0, False
        while not done:
            _, r, term, trunc, _ = env.step(int(rng.random() < 0.6))
            total += r
            done = term or trunc
        returns.append(total)
    se = np.std(returns) / math.sqrt(len(returns))
    assert abs(np.mean(returns) - expected_return(0.6)) < 4 * se
    assert pytest.approx(-11.657, abs=1e-3) == OPTIMAL_VALUE


@pytest.mark.parametrize("env_id", SPACE_ENVS)
@pytest.mark.parametrize(
    "agent_cls,baseline", [(Reinforce, b) for b in BASELINES] + [(A2C, "value")]
)
def test_every_agent_on_every_space(env_id, agent_cls, baseline, tmp_path):
    agent = agent_cls(
        env_id=env_id,
        baseline=baseline,
        num_envs=4,
        group_size=2,
        num_steps=8,
        total_steps=200,
        hidden=(16,),
        run_dir=tmp_path / "run",
        quiet=True,
        max_episode_steps=50,
        vectorization="sync",
        ent_coef=0.01,
    )
    before = [p.detach().clone() for p in agent.policy.parameters()]
    agent.train()
    assert agent.global_step >= 200 and agent.updates >= 1
    after = list(agent.policy.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, after)), "policy did not change"
    assert all(torch.isfinite(p).all() for p in after)
    action = agent.act(agent.envs.single_observation_space.sample(), deterministic=True)
    flat_space = agent.envs.single_action_space
    assert flat_space.contains(
        np.asarray(action, dtype=flat_space.dtype) if flat_space.shape else int(action)
    )
    result = agent.evaluate(3)
    assert result["episodes"] == 3 and math.isfinite(result["mean_return"])


def test_unsupported_action_space_names_it(tmp_path):
    from gymnasium import spaces

    from pgrad.envs_util import EnvError
    from pgrad.policies import policy_for

    with pytest.raises(TypeError, match="Tuple"):
        policy_for(4, spaces.Tuple((spaces.Discrete(2), spaces.Discrete(3))))
    with pytest.raises(EnvError, match="unknown environment"):
        A2C(env_id="NoSuchEnv-v9")


def test_save_load_roundtrip_and_same_actions(tmp_path):
    agent = A2C(env_id="CartPole-v1", total_steps=500, run_dir=tmp_path / "r", quiet=True)
    agent.train()
    path = agent.save(tmp_path / "agent.pt")
    loaded = A2C.load(path)
    obs = np.zeros((7, 4), dtype=np.float32) + np.linspace(-0.1, 0.1, 7)[:, None]
    assert np.array_equal(agent.act(obs, deterministic=True), loaded.act(obs, deterministic=True))
    assert loaded.global_step == agent.global_step
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError):
        A2C.load(tmp_path / "bad.pt")


def test_an_acting_only_agent_has_no_critic_or_optimizer_and_loads_the_policy(tmp_path):
    agent = A2C(
        env_id="CartPole-v1",
        total_steps=256,
        num_envs=2,
        num_steps=64,
        normalize_obs=True,
        run_dir=tmp_path / "r",
        quiet=True,
    ).train()
    path = agent.save(tmp_path / "agent.pt")
    actor = A2C.for_evaluation(torch.load(path, weights_only=True))
    assert actor.critic is None and actor.optimizer is None and not actor.learner
    obs = np.linspace(-0.2, 0.2, 20, dtype=np.float32).reshape(5, 4)
    assert np.array_equal(agent.act(obs, deterministic=True), actor.act(obs, deterministic=True))
    assert torch.equal(actor.obs_norm.mean, agent.obs_norm.mean)
    assert actor.evaluate(2)["episodes"] == 2
    with pytest.raises(RuntimeError, match="learner=False"):
        actor.train(64)
    with pytest.raises(RuntimeError, match="learner=False"):
        actor.update(agent.collect())
    assert actor.state_dict()["optimizer"] is None


def test_an_acting_only_agent_does_not_import_the_compiler():
    """Ray workers build acting-only agents: no optimizer, so no ``torch._dynamo`` import (about
    2 s of a worker's start-up); a learner's first optimizer does import it."""
    import subprocess
    import sys

    code = (
        "import sys; from pgrad import A2C; A2C(env_id='CartPole-v1', num_envs=2, "
        "quiet=True, learner={}); print('torch._dynamo' in sys.modules)"
    )
    seen = [
        subprocess.run(
            [sys.executable, "-c", code.format(flag)], capture_output=True, text=True, check=True
        ).stdout.strip()
        for flag in (False, True)
    ]
    assert seen == ["False", "True"]


def test_act_takes_raw_dict_observations_one_or_batched():
    agent = A2C(env_id="pgradtest/DictObs-v0", num_envs=2, quiet=True)
    vec = gym.make_vec("pgradtest/DictObs-v0", num_envs=3, vectorization_mode="sync")
    batch, _ = vec.reset(seed=1)
    actions = agent.act(batch, deterministic=True)
    assert actions.shape == (3,)
    for i in range(3):  # one observation, as a single environment returns it
        one = {k: v[i] if k == "target" else int(v[i]) for k, v in batch.items()}
        assert agent.act(one, deterministic=True) == actions[i]
    with pytest.raises(ValueError, match="does not fit"):
        A2C(env_id="CartPole-v1", num_envs=1, quiet=True).act({"x": np.zeros(4)})
    agent.envs.close()
    vec.close()


def test_subclass_hooks_one_level(tmp_path):
    class Small(Reinforce):
        name = "small"
        env_id = "CartPole-v1"
        defaults = {**Reinforce.defaults, "hidden": (8,), "num_envs": 2}

    agent = Small(total_steps=300, run_dir=tmp_path / "s", quiet=True)
    assert agent.config.hidden == (8,) and agent.config.env_id == "CartPole-v1"
    agent.train()
    assert isinstance(agent, Agent) and agent.global_step >= 300


def test_gradient_diagnostics_are_logged(tmp_path):
    from pgrad.plot import read_scalars

    agent = A2C(
        env_id="CartPole-v1",
        total_steps=1024,
        num_envs=8,
        grad_diagnostics=True,
        run_dir=tmp_path / "d",
        quiet=True,
    )
    agent.train()
    steps, variance = read_scalars(tmp_path / "d", "diagnostics/grad_variance")
    _, snr = read_scalars(tmp_path / "d", "diagnostics/grad_snr")
    assert len(steps) == agent.updates and (variance > 0).all() and (snr > 0).all()


def test_running_norm_matches_batch_statistics():
    from pgrad.normalizers import RunningNorm

    torch.manual_seed(0)
    data = torch.randn(5, 40, 3) * torch.tensor([1.0, 5.0, 0.1]) + torch.tensor([2.0, -1.0, 0.0])
    mask = torch.rand(5, 40) > 0.3
    norm = RunningNorm(3)
    for chunk in range(5):
        norm.update(data[chunk], mask[chunk])
    kept = data[mask]
    torch.testing.assert_close(norm.mean, kept.mean(0), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(norm.var, kept.var(0, correction=0), rtol=1e-4, atol=1e-5)
    standardised = norm(kept)
    torch.testing.assert_close(standardised.mean(0), torch.zeros(3), atol=1e-4, rtol=0)


@pytest.mark.parametrize("optimizer", ["adam", "rmsprop"])
def test_observation_normalisation_is_saved_with_the_weights(optimizer, tmp_path):
    agent = A2C(
        env_id="CartPole-v1",
        total_steps=2048,
        normalize_obs=True,
        optimizer=optimizer,
        run_dir=tmp_path / "r",
        quiet=True,
    ).train()
    assert agent.obs_norm is not None and agent.obs_norm.count > 0
    assert agent.policy.obs_norm is agent.critic.obs_norm is agent.obs_norm
    loaded = A2C.load(agent.save(tmp_path / "a.pt"))
    torch.testing.assert_close(loaded.obs_norm.mean, agent.obs_norm.mean, rtol=0, atol=0)
    obs = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    assert np.array_equal(agent.act(obs, deterministic=True), loaded.act(obs, deterministic=True))


@pytest.mark.parametrize("vectorization", ["auto", "sync", "async"])
@pytest.mark.parametrize("baseline", ["loo", "group"])
def test_grouped_baselines_share_starts_on_every_vectorisation(vectorization, baseline):
    agent = Reinforce(
        env_id="CartPole-v1",
        baseline=baseline,
        group_size=4,
        num_envs=8,
        vectorization=vectorization,
        quiet=True,
    )
    rollout = agent.collect()
    first = rollout.obs[0]
    for group in first.split(4):
        assert torch.equal(group, group[:1].expand_as(group)), group
    assert not torch.equal(first[0], first[4])
    agent.update(rollout)
    assert not torch.equal(first, agent.collect().obs[0])  # the next update: new starts
    agent.envs.close()


def test_grouped_baseline_refuses_a_vectorisation_that_cannot_share_starts():
    from pgrad.errors import EnvError

    with pytest.raises(EnvError, match="cannot seed each environment"):
        Reinforce(baseline="loo", vectorization="vector_entry_point", num_envs=8, quiet=True)


def test_advantage_statistics_are_logged_before_normalisation():
    agent = Reinforce(baseline="none", normalize_advantages=True, num_envs=4, quiet=True)
    rollout = agent.collect()
    batch = agent.prepare(rollout)
    returns = batch.returns[rollout.mask]
    assert batch.stats["diagnostics/advantage_mean"] == pytest.approx(float(returns.mean()))
    assert batch.stats["diagnostics/advantage_std"] == pytest.approx(float(returns.std()))
    assert float(batch.advantages[rollout.mask].mean()) == pytest.approx(0.0, abs=1e-5)
    agent.envs.close()
