"""Reproducibility, resume, crash safety, interrupts, non-finite numbers and hostile checkpoints."""

from __future__ import annotations

import dataclasses
import math
import re
import shutil
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from pgrad import A2C, Reinforce, TrainingError
from pgrad.agents import CartPole
from pgrad.checkpoint import CheckpointError, latest_loadable, list_checkpoints, load

from helpers import all_scalars, assert_clean_error, pgrad, popen_pgrad, wait_for


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
        device="cpu",
        quiet=True,
    )
    a = agent_cls(run_dir=tmp_path / "a", **kwargs).train()
    b = agent_cls(run_dir=tmp_path / "b", **kwargs).train()
    assert_bitwise_equal(a, b, tmp_path / "a", tmp_path / "b")
    c = agent_cls(run_dir=tmp_path / "c", **{**kwargs, "seed": 6}).train()
    assert not all(torch.equal(x, y) for x, y in zip(weights(a), weights(c), strict=True))


def test_stopped_and_resumed_equals_uninterrupted(tmp_path):
    """Whole-episode batches from seeded resets: resuming reproduces the uninterrupted run."""
    kwargs = dict(total_steps=12_000, seed=3, quiet=True, checkpoint_every=0, device="cpu")
    full = CartPole(run_dir=tmp_path / "full", **kwargs).train()
    part = CartPole(run_dir=tmp_path / "part", **kwargs).train(total_steps=5_000)
    assert part.global_step < full.global_step
    resumed = CartPole.resume(tmp_path / "part").train()
    assert resumed.global_step == full.global_step and resumed.updates == full.updates
    assert_bitwise_equal(full, resumed, tmp_path / "full", tmp_path / "part")


def test_two_resumes_from_one_checkpoint_are_identical(tmp_path):
    A2C(
        env_id="CartPole-v1", total_steps=4000, device="cpu", run_dir=tmp_path / "r", quiet=True
    ).train(2000)
    shutil.copytree(tmp_path / "r", tmp_path / "r2")
    one = A2C.resume(tmp_path / "r").train()
    two = A2C.resume(tmp_path / "r2").train()
    assert_bitwise_equal(one, two, tmp_path / "r", tmp_path / "r2")
    steps = [s for s, _ in all_scalars(tmp_path / "r")["losses/policy_loss"]]
    assert steps == sorted(set(steps)), "resumed curve must not repeat steps"


class Crash(Exception):
    """Raised by a callback: a run that dies between two checkpoints."""


# per-update tags; episode tags are logged only by updates in which an episode ended
PER_UPDATE_TAGS = (
    "losses/policy_loss",
    "losses/value_loss",
    "losses/entropy",
    "charts/learning_rate",
    "diagnostics/grad_norm",
)


def test_resume_purges_what_a_crashed_run_logged_after_its_checkpoint(tmp_path):
    run_dir = tmp_path / "r"
    kwargs = dict(num_envs=4, num_steps=32, checkpoint_every=512, device="cpu", eval_episodes=0)

    def crash(agent, metrics):
        if agent.global_step == 896:  # three updates past the checkpoint at 512
            raise Crash

    with pytest.raises(Crash):
        A2C(env_id="CartPole-v1", run_dir=run_dir, quiet=True, **kwargs).train(4096, crash)
    assert max(step for step, _ in all_scalars(run_dir)["losses/policy_loss"]) == 896
    _, state = latest_loadable(run_dir / "checkpoints")
    assert state["global_step"] == 512

    A2C.resume(run_dir).train(2048)
    scalars = all_scalars(run_dir)
    every_update = list(range(128, 2048 + 1, 128))
    for tag in PER_UPDATE_TAGS:
        assert [step for step, _ in scalars[tag]] == every_update, tag
    for tag, points in scalars.items():
        steps = [step for step, _ in points]
        assert steps == sorted(set(steps)) and steps[-1] <= 2048, (tag, steps)


class NaNGradient(A2C):
    """A2C whose policy gradient is NaN on chosen backward passes, through a parameter hook:
    the loss stays finite, only the gradient is not."""

    bad_backwards: frozenset[int] = frozenset()

    def make_policy(self, obs_dim, action_space):
        policy = super().make_policy(obs_dim, action_space)
        self.backwards = 0

        def poison(grad):
            self.backwards += 1
            return grad * math.nan if self.backwards in self.bad_backwards else grad

        next(policy.parameters()).register_hook(poison)
        return policy


def test_nonfinite_gradient_with_a_finite_loss_skips_the_update(tmp_path):
    NaNGradient.bad_backwards = frozenset({2, 3})
    seen = []

    def record(agent, metrics):
        seen.append(([p.detach().clone() for p in agent.policy.parameters()], set(metrics)))

    agent = NaNGradient(
        env_id="CartPole-v1",
        num_envs=4,
        num_steps=32,
        total_steps=6 * 128,
        device="cpu",
        eval_episodes=0,
        run_dir=tmp_path / "g",
        quiet=True,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        agent.train(callback=record)
    assert sum("non-finite loss or gradient" in str(w.message) for w in caught) == 2
    assert agent.backwards == 6 and agent.updates == 4
    for skipped in (1, 2):  # the second and third updates: no step, no loss logged
        assert all(torch.equal(a, b) for a, b in zip(seen[skipped][0], seen[skipped - 1][0]))
        assert "losses/policy_loss" not in seen[skipped][1]
    assert not all(torch.equal(a, b) for a, b in zip(seen[3][0], seen[2][0])), "training stopped"
    assert all(torch.isfinite(p).all() for p in agent.policy.parameters())


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
        "checkpoint_every=2048",
        cwd=tmp_path,
    )
    run_dir = tmp_path / "runs" / "int"
    try:
        # the first checkpoint: training is under way
        wait_for(lambda: list_checkpoints(run_dir / "checkpoints"), "a checkpoint", 120, proc)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert f"pgrad train --resume {Path('runs') / 'int'}" in err
    assert out.strip().splitlines()[-1] == f"run directory: {Path('runs') / 'int'}"
    stopped_at = int(re.search(r"interrupted at step ([\d,]+)", err)[1].replace(",", ""))
    _, state = latest_loadable(run_dir / "checkpoints")
    assert state["global_step"] == stopped_at >= 2048
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


SLOW_ENV = '''
from pathlib import Path
import time

import gymnasium as gym
import numpy as np

import pgrad


class Slow(gym.Env):
    """20 ms a step, never ending; counts its steps in steps.txt (in the working directory)."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.count = 0
        return np.zeros(1, np.float32), {}

    def step(self, action):
        time.sleep(0.02)
        self.count += 1
        Path("steps.txt").write_text(str(self.count))
        return np.zeros(1, np.float32), 0.0, False, False, {}


gym.register(id="pgradtest/Slow-v0", entry_point=Slow)


class Agent(pgrad.A2C):
    name = "slow"
    env_id = "pgradtest/Slow-v0"
    # one update is 10,000 steps, over 200 s: finishing it is what a second Ctrl-C skips
    defaults = {
        **pgrad.A2C.defaults,
        "num_envs": 1,
        "num_steps": 10_000,
        "vectorization": "sync",
        "checkpoint_every": 0,
    }
'''


def test_a_second_ctrl_c_stops_at_once(tmp_path):
    (tmp_path / "slow_env.py").write_text(SLOW_ENV)
    counter = tmp_path / "steps.txt"

    def steps() -> int:
        try:
            return int(counter.read_text())
        except (FileNotFoundError, ValueError):  # not yet written, or caught mid-write
            return 0

    proc = popen_pgrad("train", "--agent", "slow_env.py:Agent", "--run-name", "s", cwd=tmp_path)
    try:
        wait_for(lambda: steps() >= 3, "the first steps", 120, proc)
        proc.send_signal(signal.SIGINT)
        first = steps()
        # Python runs a signal's handler before the main thread's next bytecodes: once two more
        # steps are taken, the first Ctrl-C has been handled (training now ends after the update).
        wait_for(lambda: steps() >= first + 2, "two steps after the first Ctrl-C", 30, proc)
        at_second = steps()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "pgrad: interrupted", err
    # at once: no more than the step in flight, the update unfinished and nothing checkpointed
    assert steps() - at_second <= 1, (at_second, steps())
    assert not list_checkpoints(tmp_path / "runs" / "s" / "checkpoints")


KILL_DRIVER = """
import io
import os
import sys
import time
from pathlib import Path

import torch

import pgrad.checkpoint as checkpoint
from pgrad import A2C

stage = sys.argv[1]
saves = 0
real_save, real_replace, real_fsync_dir = torch.save, os.replace, checkpoint._fsync_dir


def inside_the_save():
    Path("inside-save").write_text(stage)
    time.sleep(600)  # until SIGKILL


def save(obj, f, *args, **kwargs):
    global saves
    saves += 1
    if stage == "writing" and saves == 3:
        buffer = io.BytesIO()
        real_save(obj, buffer, *args, **kwargs)
        f.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
        f.flush()
        inside_the_save()
    real_save(obj, f, *args, **kwargs)


def replace(src, dst, *args, **kwargs):
    if stage == "renaming" and saves == 3:
        inside_the_save()
    real_replace(src, dst, *args, **kwargs)


def fsync_dir(folder):
    if stage == "pruning" and saves == 3:
        inside_the_save()
    real_fsync_dir(folder)


torch.save, os.replace, checkpoint._fsync_dir = save, replace, fsync_dir
A2C(
    env_id="CartPole-v1",
    num_envs=2,
    num_steps=16,
    checkpoint_every=32,
    keep_checkpoints=2,
    total_steps=10**6,
    device="cpu",
    run_dir="run",
    quiet=True,
).train()
"""

# Where the third save is when the kill lands, and the newest checkpoint that must then load:
# half of the temporary file written; the temporary file whole but not yet renamed; renamed,
# but the folder not yet synced and the oldest checkpoint not yet pruned.
KILL_STAGES = {"writing": 64, "renaming": 64, "pruning": 96}


@pytest.mark.slow
def test_sigkill_in_the_middle_of_a_save_leaves_a_loadable_checkpoint(tmp_path):
    procs = {}
    for stage in KILL_STAGES:
        (tmp_path / stage).mkdir()
        (tmp_path / stage / "driver.py").write_text(KILL_DRIVER)
        procs[stage] = subprocess.Popen(
            [sys.executable, "driver.py", stage],
            cwd=tmp_path / stage,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    try:
        for stage, proc in procs.items():
            marker = tmp_path / stage / "inside-save"
            wait_for(marker.exists, f"the {stage} stage of the third save", 120, proc)
            proc.kill()
            proc.wait(timeout=30)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
    for stage, newest in KILL_STAGES.items():
        run_dir = tmp_path / stage / "run"
        folder = run_dir / "checkpoints"
        leftovers = list(folder.glob(".step_*.tmp"))
        assert len(leftovers) == (0 if stage == "pruning" else 1), (stage, leftovers)
        path, state = latest_loadable(folder)
        assert path == list_checkpoints(folder)[-1], f"{stage}: the newest checkpoint is damaged"
        assert state["global_step"] == newest, (stage, state["global_step"])
        assert all(torch.isfinite(t).all() for t in state["policy"].values())
        agent = A2C.resume(run_dir)
        assert agent.global_step == newest
        agent.train(newest + 64)
        assert agent.global_step == newest + 64


BAD_NUMBERS_ENV = '''
import gymnasium as gym
import numpy as np

import pgrad

WHAT, VALUE = {what!r}, float({value!r})


class Counting(gym.Env):
    """Never ends; if ``bad``, its 30th step returns VALUE as its WHAT (reward or observation)."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, bad=False):
        self.bad = bad

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self.np_random.uniform(-1, 1, 2).astype(np.float32), {{}}

    def step(self, action):
        self.t += 1
        obs = self.np_random.uniform(-1, 1, 2).astype(np.float32)
        reward = float(action == 1)
        if self.bad and self.t == 30:
            if WHAT == "observation":
                obs[1] = VALUE
            else:
                reward = VALUE
        return obs, reward, False, False, {{}}


gym.register(id="pgradtest/Counting-v0", entry_point=Counting)


class Agent(pgrad.A2C):
    name = "counting"
    env_id = "pgradtest/Counting-v0"
    defaults = {{
        **pgrad.A2C.defaults,
        "num_envs": 3,
        "num_steps": 8,
        "checkpoint_every": 0,
        "total_steps": 10_000,
        "eval_episodes": 0,
    }}

    def make_env(self, num_envs=None):
        # environment 1 of 3 goes bad, so the message must name the right one
        n = num_envs or self.config.num_envs
        return gym.vector.SyncVectorEnv([lambda i=i: Counting(bad=i == 1) for i in range(n)])
'''


@pytest.mark.parametrize(
    "what,value,message",
    [
        ("observation", "nan", "non-finite observation from environment 1 at step 87"),
        ("observation", "-inf", "non-finite observation from environment 1 at step 87"),
        ("reward", "inf", "non-finite reward inf from environment 1 at step 87"),
        ("reward", "nan", "non-finite reward nan from environment 1 at step 87"),
    ],
)
def test_bad_numbers_stop_training_naming_env_and_step_after_a_checkpoint(
    tmp_path, what, value, message
):
    # 3 environments x 8 steps an update: environment 1's 30th step is step 29 x 3 = 87 of the
    # run, in the fourth rollout; the three updates before it (72 steps) are the last good ones.
    (tmp_path / "bad_env.py").write_text(BAD_NUMBERS_ENV.format(what=what, value=value))
    result = pgrad(
        "train", "--agent", "bad_env.py:Agent", "--run-name", "bad", "--quiet", cwd=tmp_path
    )
    assert_clean_error(result, message, code=1)
    _, state = latest_loadable(tmp_path / "runs" / "bad" / "checkpoints")
    assert state["global_step"] == 72 and state["updates"] == 3
    assert all(torch.isfinite(t).all() for t in state["policy"].values())
    assert all(torch.isfinite(t).all() for t in state["critic"].values())


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
