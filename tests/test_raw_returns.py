"""Raw episodic returns: logged and evaluated beside the training ones when wrappers change
rewards, absent from the logs when nothing does; the recorder against Gymnasium's."""

from __future__ import annotations

import json
import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode, SyncVectorEnv
from gymnasium.wrappers import ClipReward, TimeLimit
from gymnasium.wrappers.vector import RecordEpisodeStatistics, TransformReward

from pgrad import A2C, Reinforce
from pgrad.distributed import merge_rollouts
from pgrad.envs_util import make_vector_env
from pgrad.episode_stats import (
    RAW_KEY,
    VectorEpisodeStatistics,
    record_raw_returns,
    returns_differ,
)
from pgrad.logger import Logger
from pgrad.rollout import Collector, Rollout

from helpers import all_scalars, pgrad

RAW_TAG = "charts/episodic_return_raw"


class ScaledA2C(A2C):
    """CartPole with every reward times 10, by a vector wrapper over the default env."""

    def make_env(self, num_envs=None):
        return TransformReward(super().make_env(num_envs), lambda r: 10 * r)


class ScaledReinforce(Reinforce):
    """Whole episodes (``collect_episodes``) with every reward times 10."""

    def make_env(self, num_envs=None):
        return TransformReward(super().make_env(num_envs), lambda r: 10 * r)


class ClippedA2C(A2C):
    """A vector environment built here, each sub-environment's rewards clipped to 0.5: the
    recorder goes first in ``make_vec``'s wrappers."""

    def make_env(self, num_envs=None):
        return gym.make_vec(
            "CartPole-v1",
            num_envs or self.config.num_envs,
            vectorization_mode="sync",
            vector_kwargs={"autoreset_mode": AutoresetMode.NEXT_STEP},
            wrappers=[record_raw_returns, lambda env: ClipReward(env, max_reward=0.5)],
        )


def _random_policy_collector(envs, seed: int = 0) -> Collector:
    from pgrad.encoders import encoder_for
    from pgrad.policies import policy_for

    torch.manual_seed(seed)
    policy = policy_for(encoder_for(envs.single_observation_space), envs.single_action_space)
    return Collector(envs, policy, torch.device("cpu"), seed)


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_vector_recorder_reports_what_gymnasiums_reports(env_id):
    """Twin copies of a numpy-vectorised env, pgrad's recorder on one and Gymnasium's on the
    other, stepped with the same actions across many next-step autoresets."""
    ours = make_vector_env(env_id, 6, max_episode_steps=17)  # time limits end episodes too
    theirs = RecordEpisodeStatistics(make_vector_env(env_id, 6, max_episode_steps=17).env)
    assert isinstance(ours, VectorEpisodeStatistics)
    ours.reset(seed=3)
    theirs.reset(seed=3)
    ours.action_space.seed(0)
    ends = 0
    for _ in range(120):
        actions = ours.action_space.sample()
        *_, info_ours = ours.step(actions)
        *_, info_theirs = theirs.step(actions)
        assert ("_" + RAW_KEY in info_ours) == ("_episode" in info_theirs)
        if "_episode" in info_theirs:
            ended = info_theirs["_episode"]
            ends += int(ended.sum())
            np.testing.assert_array_equal(info_ours["_" + RAW_KEY], ended)
            for key in ("r", "l"):
                np.testing.assert_allclose(
                    info_ours[RAW_KEY][key], info_theirs["episode"][key], rtol=1e-12
                )
    assert ends >= 30


@pytest.mark.parametrize(
    ("agent_cls", "vectorization", "scale"),
    [
        (ScaledA2C, "auto", 10.0),  # numpy-vectorised CartPole, collect_steps
        (ScaledA2C, "sync", 10.0),  # a recorder per sub-environment
        (ScaledReinforce, "auto", 10.0),  # collect_episodes
        (ClippedA2C, "sync", 0.5),  # built in make_env, per-sub-environment reward wrapper
    ],
)
def test_wrapped_rewards_log_and_evaluate_the_raw_returns(
    tmp_path, agent_cls, vectorization, scale
):
    """CartPole pays 1 a step, so an episode's raw return is its length and its training
    return ``scale`` times that; the event files and ``evaluate`` must say both."""
    agent = agent_cls(
        env_id="CartPole-v1",
        num_envs=4,
        num_steps=32,
        total_steps=1_500,
        vectorization=vectorization,
        run_dir=tmp_path,
        quiet=True,
        seed=1,
    )
    agent.train()
    scalars = all_scalars(tmp_path)
    lengths = scalars["charts/episodic_length"]
    assert len(lengths) >= 5
    assert [step for step, _ in scalars[RAW_TAG]] == [step for step, _ in lengths]
    for (_, length), (_, raw), (_, trained) in zip(
        lengths, scalars[RAW_TAG], scalars["charts/episodic_return"], strict=True
    ):
        assert raw == pytest.approx(length, rel=1e-6)
        assert trained == pytest.approx(scale * length, rel=1e-6)
    result = agent.evaluate(3)
    assert result["raw_returns"] == [float(n) for n in result["lengths"]]
    assert result["returns"] == [scale * n for n in result["lengths"]]
    assert result["mean_raw_return"] == pytest.approx(result["mean_length"])
    assert result["mean_return"] == pytest.approx(scale * result["mean_length"])
    assert result["std_raw_return"] == pytest.approx(np.std(result["lengths"]))
    agent.envs.close()


def test_an_unwrapped_run_logs_no_raw_tag_and_evaluates_equal_returns(tmp_path):
    agent = A2C(env_id="Pendulum-v1", num_envs=4, num_steps=50, total_steps=1_600)
    agent.run_dir, agent.quiet = tmp_path, True
    agent.train()
    scalars = all_scalars(tmp_path)
    assert "charts/episodic_return" in scalars and RAW_TAG not in scalars
    result = agent.evaluate(2)
    np.testing.assert_allclose(result["raw_returns"], result["returns"], rtol=1e-6)
    assert not returns_differ(result["raw_returns"], result["returns"])
    agent.envs.close()


@pytest.mark.parametrize("vectorization", ["auto", "sync"])
def test_dead_steps_and_rollout_boundaries_add_no_episodes(vectorization):
    """Episodes that span rollouts, next-step reset steps: one raw return per episode the
    collector counts, equal to its training return."""
    collector = _random_policy_collector(make_vector_env("CartPole-v1", 5, vectorization))
    for _ in range(6):
        rollout = collector.collect_steps(13)
        assert rollout.raw_episode_returns == rollout.episode_returns
        assert rollout.episode_returns == [float(n) for n in rollout.episode_lengths]
    assert len(rollout.episode_returns) >= 1
    collector.envs.close()


def test_collect_episodes_skips_masked_ends_and_leaves_cut_episodes_unknown():
    envs = TransformReward(make_vector_env("CartPole-v1", 8), lambda r: 3 * r)
    collector = _random_policy_collector(envs)
    # environments that end early keep stepping (masked) and end more episodes meanwhile
    rollout = collector.collect_episodes(0, 500)
    lengths = rollout.episode_lengths
    assert len(lengths) == 8 and max(lengths) >= 2 * min(lengths)
    assert rollout.raw_episode_returns == [float(n) for n in lengths]
    assert rollout.episode_returns == [3.0 * n for n in lengths]
    # cut after 4 steps by max_steps: the environment reported no end, so the raw return is
    # unknown (NaN), not 0 and not the partial training sum
    cut = collector.collect_episodes(1, 4)
    assert cut.episode_lengths == [4] * 8
    assert all(math.isnan(r) for r in cut.raw_episode_returns)
    envs.close()


def test_an_end_the_recorder_did_not_see_has_an_unknown_raw_return():
    """Two CartPoles cut after 4 steps: environment 0 by its own time limit, inside the
    recorder, environment 1 by a ``TimeLimit`` outside it. Both end at the same steps, where
    only environment 0 reports; environment 1's raw return is unknown (NaN), not 0."""

    def seen():
        return record_raw_returns(gym.make("CartPole-v1", max_episode_steps=4))

    def unseen():
        return TimeLimit(record_raw_returns(gym.make("CartPole-v1")), 4)

    envs = SyncVectorEnv([seen, unseen], autoreset_mode=AutoresetMode.NEXT_STEP)
    collector = _random_policy_collector(envs)
    steps = collector.collect_steps(10)  # ends at steps 3 and 8; 4 and 9 reset
    assert steps.episode_lengths == [4, 4, 4, 4]
    assert steps.raw_episode_returns[0::2] == [4.0, 4.0]
    assert all(math.isnan(r) for r in steps.raw_episode_returns[1::2])
    episodes = collector.collect_episodes([1, 2], 50)
    assert episodes.episode_lengths == [4, 4]
    assert episodes.raw_episode_returns[0] == 4.0 and math.isnan(episodes.raw_episode_returns[1])
    envs.close()


def test_an_environment_without_recorder_reports_no_raw_returns():
    envs = gym.make_vec(
        "CartPole-v1", 3, "sync", vector_kwargs={"autoreset_mode": AutoresetMode.NEXT_STEP}
    )
    rollout = _random_policy_collector(envs).collect_steps(40)
    assert rollout.episode_returns and rollout.raw_episode_returns == []
    envs.close()


def test_logger_logs_raw_returns_from_the_first_difference_on(tmp_path, capsys):
    logger = Logger(tmp_path, total_steps=100, print_every=0.0)  # stdout is not a terminal
    logger.episodes([5.0], [5], 10, [5.0])  # equal: no raw tag
    logger.progress(10, 1.0)
    assert "raw" not in capsys.readouterr().out
    logger.episodes([5.0, 7.0], [5, 7], 20, [5.0, 3.5])  # differs
    logger.episodes([4.0], [4], 30, [4.0])  # equal again: logged all the same, no gap
    logger.episodes([4.0, 2.0], [4, 2], 40, [4.0, math.nan])  # the unknown one left out
    logger.progress(40, 1.0)
    assert "return     4.50  raw     4.30" in capsys.readouterr().out
    logger.close()
    assert all_scalars(tmp_path)[RAW_TAG] == [(20, 4.25), (30, 4.0), (40, 4.0)]


def test_raw_returns_travel_with_worker_rollouts():
    def rollout(returns, raw):
        empty = torch.zeros(2, 1)
        return Rollout(
            obs=torch.zeros(3, 1, 2),
            actions=empty.long(),
            rewards=empty,
            terminated=empty.bool(),
            truncated=empty.bool(),
            mask=empty.bool(),
            episode_returns=returns,
            episode_lengths=[1] * len(returns),
            raw_episode_returns=raw,
        )

    merged = merge_rollouts([rollout([10.0, 20.0], [1.0, 2.0]), rollout([30.0], [3.0])])
    assert merged.raw_episode_returns == [1.0, 2.0, 3.0]
    merged = merge_rollouts([rollout([10.0], []), rollout([30.0], [3.0])])
    assert math.isnan(merged.raw_episode_returns[0]) and merged.raw_episode_returns[1] == 3.0
    assert merge_rollouts([rollout([10.0], []), rollout([], [])]).raw_episode_returns == []


SCALED_AGENT = """
from gymnasium.wrappers.vector import TransformReward
import pgrad


class Scaled(pgrad.A2C):
    env_id = "CartPole-v1"
    defaults = {"num_envs": 4, "num_steps": 16, "eval_episodes": 2}

    def make_env(self, num_envs=None):
        return TransformReward(super().make_env(num_envs), lambda r: 10 * r)
"""


@pytest.mark.slow
def test_the_cli_prints_raw_returns_where_they_differ(tmp_path):
    (tmp_path / "scaled.py").write_text(SCALED_AGENT)
    train = pgrad(
        "train", "--agent", "scaled.py:Scaled", "--total-steps", "640", "--run-name", "s",
        cwd=tmp_path,
    )  # fmt: skip
    assert train.returncode == 0, train.stderr
    assert "raw return" in train.stdout
    result = pgrad("eval", "runs/s", "--agent", "scaled.py:Scaled", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["mean_raw_return"] == pytest.approx(summary["mean_length"])
    assert summary["mean_return"] == pytest.approx(10 * summary["mean_length"])
    text = pgrad("eval", "runs/s", "--agent", "scaled.py:Scaled", cwd=tmp_path).stdout
    assert f"raw return {summary['mean_raw_return']:.2f}" in text
