"""Reproducibility, resume, crash safety, interrupts, non-finite numbers and hostile checkpoints."""

from __future__ import annotations

import dataclasses
import math
import shutil
import signal
import time
import warnings
from pathlib import Path

import pytest
import torch

from pgrad import A2C, Reinforce, TrainingError
from pgrad.agents import CartPole
from pgrad.checkpoint import CheckpointError, latest_loadable, list_checkpoints, load

from helpers import all_scalars, assert_clean_error, pgrad, popen_pgrad


def weights(agent) -> list[torch.Tensor]:
    params = [*agent.policy.state_dict().values()]
    if agent.critic is not None:
        params += [*agent.critic.state_dict().values()]
    return params


def assert_bitwise_equal(a, b, dir_a: Path, dir_b: Path) -> None:
    assert all(torch.equal(x, y) for x, y in zip(weights(a), weights(b), strict=True))
    scalars_a, scalars_b = all_scalars(dir_a), all_scalars(dir_b)
    assert scalars_a.keys() == scalars_b.keys()
    for tag in scalars_a:
        assert scalars_a[tag] == scalars_b[tag], tag


@pytest.mark.parametrize(
    "agent_cls,vectorization",
    [
        (A2C, "sync"),
        (A2C, "vector_entry_point"),
        (A2C, "async"),
        (Reinforce, "sync"),
        (Reinforce, "vector_entry_point"),
    ],
)
def test_same_seed_gives_bitwise_identical_runs(agent_cls, vectorization, tmp_path):
    kwargs = dict(
        env_id="CartPole-v1",
        total_steps=3000,
        num_envs=4,
        seed=5,
        vectorization=vectorization,
        quiet=True,
    )
    a = agent_cls(run_dir=tmp_path / "a", **kwargs).train()
    b = agent_cls(run_dir=tmp_path / "b", **kwargs).train()
    assert_bitwise_equal(a, b, tmp_path / "a", tmp_path / "b")
    c = agent_cls(run_dir=tmp_path / "c", **{**kwargs, "seed": 6}).train()
    assert not all(torch.equal(x, y) for x, y in zip(weights(a), weights(c), strict=True))


def test_stopped_and_resumed_equals_uninterrupted(tmp_path):
    """Whole-episode batches from seeded resets: resuming reproduces the uninterrupted run."""
    kwargs = dict(total_steps=12_000, seed=3, quiet=True, checkpoint_every=0)
    full = CartPole(run_dir=tmp_path / "full", **kwargs).train()
    part = CartPole(run_dir=tmp_path / "part", **kwargs).train(total_steps=5_000)
    assert part.global_step < full.global_step
    resumed = CartPole.resume(tmp_path / "part").train()
    assert resumed.global_step == full.global_step and resumed.updates == full.updates
    assert_bitwise_equal(full, resumed, tmp_path / "full", tmp_path / "part")


def test_two_resumes_from_one_checkpoint_are_identical(tmp_path):
    A2C(env_id="CartPole-v1", total_steps=4000, run_dir=tmp_path / "r", quiet=True).train(2000)
    shutil.copytree(tmp_path / "r", tmp_path / "r2")
    one = A2C.resume(tmp_path / "r").train()
    two = A2C.resume(tmp_path / "r2").train()
    assert_bitwise_equal(one, two, tmp_path / "r", tmp_path / "r2")
    steps = [s for s, _ in all_scalars(tmp_path / "r")["losses/policy_loss"]]
    assert steps == sorted(set(steps)), "resumed curve must not repeat steps"


def test_checkpoint_holds_everything_and_keeps_last_k(tmp_path):
    agent = A2C(
        env_id="CartPole-v1",
        total_steps=3000,
        checkpoint_every=500,
        keep_checkpoints=2,
        run_dir=tmp_path / "r",
        quiet=True,
        learning_rate_final=0.0,
    ).train()
    kept = list_checkpoints(tmp_path / "r" / "checkpoints")
    assert len(kept) == 2
    state = load(kept[-1])
    for key in (
        "policy",
        "critic",
        "optimizer",
        "global_step",
        "updates",
        "rng",
        "config",
        "algorithm",
    ):
        assert key in state
    assert state["global_step"] == agent.global_step
    assert state["config"]["learning_rate_final"] == 0.0


def test_sigint_checkpoints_and_resume_continues_the_curve(tmp_path):
    proc = popen_pgrad(
        "train",
        "CartPole-v1",
        "--agent",
        "a2c",
        "--total-steps",
        "50000000",
        "--run-name",
        "int",
        "--set",
        "checkpoint_every=0",
        cwd=tmp_path,
    )
    run_dir = tmp_path / "runs" / "int"
    deadline = time.time() + 60
    while time.time() < deadline and not list(run_dir.glob("events.*")):
        time.sleep(0.2)
    time.sleep(2.0)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert f"pgrad train --resume {Path('runs') / 'int'}" in err
    assert out.strip().splitlines()[-1] == f"run directory: {Path('runs') / 'int'}"
    _, state = latest_loadable(run_dir / "checkpoints")
    stopped_at = state["global_step"]
    assert stopped_at > 0
    result = pgrad(
        "train",
        "--resume",
        str(Path("runs") / "int"),
        "--total-steps",
        str(stopped_at + 4096),
        "--quiet",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    steps = [s for s, _ in all_scalars(run_dir)["losses/policy_loss"]]
    assert steps == sorted(set(steps)) and steps[-1] >= stopped_at + 4096
    assert min(s for s in steps if s > stopped_at) - stopped_at <= 2048


@pytest.mark.slow
def test_sigkill_at_any_moment_leaves_a_loadable_checkpoint(tmp_path):
    # checkpoint after every update, so kills land during saves too
    proc = None
    for trial, delay in enumerate([0.0, 0.13, 0.37, 0.61, 1.1]):
        run = f"kill{trial}"
        proc = popen_pgrad(
            "train",
            "CartPole-v1",
            "--agent",
            "a2c",
            "--total-steps",
            "90000000",
            "--run-name",
            run,
            "--set",
            "checkpoint_every=1",
            "--quiet",
            cwd=tmp_path,
        )
        folder = tmp_path / "runs" / run / "checkpoints"
        deadline = time.time() + 60
        while time.time() < deadline and not list_checkpoints(folder):
            time.sleep(0.05)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        path, state = latest_loadable(folder)
        assert path == list_checkpoints(folder)[-1], "the newest checkpoint must be whole"
        assert all(torch.isfinite(t).all() for t in state["policy"].values())
        agent = A2C.resume(tmp_path / "runs" / run)
        assert agent.global_step == state["global_step"] > 0


NAN_ENV = '''
import gymnasium as gym
import numpy as np
import pgrad


class NaNReward(gym.Wrapper):
    """CartPole whose reward turns NaN at its 300th step."""

    def __init__(self, env):
        super().__init__(env)
        self.count = 0

    def step(self, action):
        obs, reward, term, trunc, info = self.env.step(action)
        self.count += 1
        return obs, (float("nan") if self.count == 300 else reward), term, trunc, info


gym.register(id="NaNCartPole-v0", entry_point=lambda: NaNReward(gym.make("CartPole-v1")))


class Agent(pgrad.A2C):
    name = "nan"
    env_id = "NaNCartPole-v0"
    defaults = {**pgrad.A2C.defaults, "num_envs": 2, "num_steps": 16, "checkpoint_every": 0}
'''


def test_nan_reward_stops_with_env_and_step_after_checkpoint(tmp_path):
    (tmp_path / "nan_env.py").write_text(NAN_ENV)
    result = pgrad(
        "train", "--agent", "nan_env.py:Agent", "--run-name", "nan", "--quiet", cwd=tmp_path
    )
    assert_clean_error(result, "non-finite reward nan from environment 0 at step", code=1)
    _, state = latest_loadable(tmp_path / "runs" / "nan" / "checkpoints")
    assert all(torch.isfinite(t).all() for t in state["policy"].values())
    assert 0 < state["global_step"] <= 2 * 300 + 32  # 2 envs; the update before the NaN


class FlakyLoss(A2C):
    """A2C whose loss is NaN on chosen updates (counted by calls)."""

    bad_calls: set[int] = set()

    def loss(self, batch, entropy_coef):
        parts = super().loss(batch, entropy_coef)
        self.calls = getattr(self, "calls", 0) + 1
        if self.calls in self.bad_calls:
            parts = dataclasses.replace(parts, total=parts.total * float("nan"))
        return parts


def test_nonfinite_loss_skips_update_and_stops_after_a_streak(tmp_path):
    FlakyLoss.bad_calls = {2, 3}
    agent = FlakyLoss(
        env_id="CartPole-v1",
        total_steps=1024,
        num_envs=4,
        num_steps=32,
        run_dir=tmp_path / "a",
        quiet=True,
        max_nonfinite_updates=3,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        agent.train()
    assert sum("non-finite" in str(w.message) for w in caught) == 2
    assert agent.updates == agent.global_step // 128 - 2
    assert all(torch.isfinite(p).all() for p in agent.policy.parameters())

    FlakyLoss.bad_calls = set(range(3, 100))
    agent = FlakyLoss(
        env_id="CartPole-v1",
        total_steps=100_000,
        num_envs=4,
        num_steps=32,
        run_dir=tmp_path / "b",
        quiet=True,
        max_nonfinite_updates=3,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(TrainingError, match="3 updates in a row"):
            agent.train()
    assert agent.updates == 2
    assert all(torch.isfinite(p).all() for p in agent.policy.parameters())


def test_hostile_checkpoint_is_refused_and_its_code_never_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    class Hostile:
        def __reduce__(self):
            return (exec, ("open('PWNED', 'w').write('code ran')",))

    agent = A2C(env_id="CartPole-v1", quiet=True)
    state = agent.state_dict()
    state["policy"]["evil"] = Hostile()
    torch.save({"format": "pgrad-checkpoint-1", **state}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="refused unsafe pickle"):
        A2C.load(tmp_path / "evil.pt")
    assert not (tmp_path / "PWNED").exists()


def test_truncated_newest_checkpoint_falls_back_to_the_previous(tmp_path):
    A2C(
        env_id="CartPole-v1",
        total_steps=2048,
        checkpoint_every=512,
        run_dir=tmp_path / "r",
        quiet=True,
    ).train()
    paths = list_checkpoints(tmp_path / "r" / "checkpoints")
    data = paths[-1].read_bytes()
    paths[-1].write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError):
        load(paths[-1])
    path, _ = latest_loadable(tmp_path / "r" / "checkpoints")
    assert path == paths[-2]
    result = pgrad("eval", str(paths[-1]), cwd=tmp_path)
    assert_clean_error(result, "cannot load checkpoint")
    assert math.isfinite(A2C.resume(tmp_path / "r").global_step)


def test_skipped_update_leaves_the_moving_average_baseline_alone(tmp_path):
    FlakyLoss.bad_calls = {2}
    agent = FlakyLoss(
        env_id="CartPole-v1",
        baseline="ema",
        rollout="episodes",
        num_envs=4,
        total_steps=10**6,
        run_dir=tmp_path / "e",
        quiet=True,
    )
    agent.update(agent.collect())
    value, count = agent.algorithm.ema.value, agent.algorithm.ema.num_updates
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        agent.update(agent.collect())  # the second call's loss is NaN: skipped
    assert (agent.algorithm.ema.value, agent.algorithm.ema.num_updates) == (value, count)
    agent.update(agent.collect())
    assert agent.algorithm.ema.num_updates == count + 1
