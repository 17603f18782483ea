"""PPO: the clipped objective and value clipping by hand, the gradient at theta = theta_old,
early stopping on the target KL, reward scaling, and training on every kind of task."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from pgrad import PPO
from pgrad.agents import Hopper
from pgrad.algos import PPOAlgorithm, ReinforceAlgorithm
from pgrad.losses import LossParts, clipped_surrogate_loss, clipped_value_loss
from pgrad.normalizers import RewardScaler

from helpers import ROOT, all_scalars, assert_clean_error

PPO_TAGS = (
    "diagnostics/approx_kl",
    "diagnostics/clip_fraction",
    "diagnostics/ratio_mean",
    "diagnostics/ratio_max",
    "diagnostics/epochs",
)


# -- the clipped surrogate, by hand ---------------------------------------------------------------
RATIOS = [0.5, 0.9, 1.1, 1.5]


@pytest.mark.parametrize(
    "advantage,objective,active",
    [
        # A > 0: min(r A, clip(r) A) caps the gain at r = 1.2; below 1 - eps nothing is clipped
        (2.0, [1.0, 1.8, 2.2, 2.4], [True, True, True, False]),
        # A < 0: the loss is capped at r = 0.8; above 1 + eps the full (worse) term is kept
        (-2.0, [-1.6, -1.8, -2.2, -3.0], [False, True, True, True]),
    ],
)
def test_clipped_surrogate_by_hand_on_both_sides_of_the_clip(advantage, objective, active):
    log_prob = torch.log(torch.tensor(RATIOS)).requires_grad_()
    old_log_prob = torch.zeros(4)
    advantages = torch.full((4,), advantage)
    loss = clipped_surrogate_loss(log_prob, old_log_prob, advantages, clip_coef=0.2)
    assert loss.item() == pytest.approx(-np.mean(objective), abs=1e-6)
    loss.backward()
    # d loss / d log pi = -A r / n where the unclipped term is the minimum, else 0
    expected = [-advantage * r / 4 if on else 0.0 for r, on in zip(RATIOS, active)]
    assert log_prob.grad.tolist() == pytest.approx(expected, abs=1e-6)


def test_clipped_surrogate_mask_keeps_nan_out_and_shapes_must_match():
    log_prob = torch.tensor([[0.0, float("nan")]], requires_grad=True)
    loss = clipped_surrogate_loss(
        log_prob, torch.zeros(1, 2), torch.tensor([[1.0, 1.0]]), 0.2, torch.tensor([[1, 0]])
    )
    assert loss.item() == -1.0
    loss.backward()
    assert torch.isfinite(log_prob.grad).all()
    with pytest.raises(ValueError, match="shapes must match"):
        clipped_surrogate_loss(torch.zeros(3), torch.zeros(3, 1), torch.zeros(3), 0.2)
    with pytest.raises(ValueError, match="clip_coef"):
        clipped_surrogate_loss(torch.zeros(3), torch.zeros(3), torch.zeros(3), 0.0)


def test_value_clipping_by_hand():
    # V_old = 1, clip 0.5: V_clip = 1 + clip(V - 1, -0.5, 0.5)
    values = torch.tensor([1.2, 1.8, 0.0, 2.5], requires_grad=True)
    old_values = torch.ones(4)
    targets = torch.tensor([2.0, 3.0, 2.0, 2.0])
    # V=1.2: inside the clip, (1.2-2)^2 = 0.64 both ways
    # V=1.8: V_clip=1.5, max((1.8-3)^2, (1.5-3)^2) = max(1.44, 2.25) = 2.25, clipped: no grad
    # V=0.0: V_clip=0.5, max(4, 2.25) = 4: the unclipped term, gradient V - R = -2
    # V=2.5: V_clip=1.5, max(0.25, 0.25) = 0.25
    loss = clipped_value_loss(values, old_values, targets, clip=0.5)
    assert loss.item() == pytest.approx(0.5 * (0.64 + 2.25 + 4.0 + 0.25) / 4, abs=1e-6)
    loss.backward()
    # 0.5 * d/dV (V - R)^2 / n = (V - R) / n on the unclipped branch; a tie at V=2.5 splits
    # torch.maximum's gradient between the branches: half of (2.5 - 2) / 4 from the unclipped
    assert values.grad.tolist() == pytest.approx([-0.8 / 4, 0.0, -2.0 / 4, 0.5 / 8], abs=1e-6)


# -- PPO at theta = theta_old is REINFORCE -------------------------------------------------------
def _grads(loss: torch.Tensor, params: list[torch.nn.Parameter]) -> torch.Tensor:
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return torch.cat(
        [(g if g is not None else torch.zeros_like(p)).flatten() for g, p in zip(grads, params)]
    )


@pytest.mark.parametrize("num_minibatches", [1, 4])
def test_gradient_at_theta_old_equals_reinforce(num_minibatches, tmp_path):
    """Ratio 1 and nothing clipped: the first minibatch's gradient (policy, critic, entropy,
    clipped value loss included) is REINFORCE's / A2C's on the same samples."""
    agent = PPO(
        env_id="CartPole-v1",
        num_envs=4,
        num_steps=64,
        num_minibatches=num_minibatches,
        ent_coef=0.01,
        clip_value=0.2,
        # one minibatch: normalised over the whole batch by both; several: PPO normalises per
        # minibatch, REINFORCE per batch, so compare the unnormalised estimates
        normalize_advantages=num_minibatches == 1,
        quiet=True,
        run_dir=tmp_path / "run",
    )
    rollout = agent.collect()
    assert not rollout.mask.all(), "the rollout should hold dead steps for this test"
    ppo = agent.algorithm
    reinforce = ReinforceAlgorithm(agent.policy, agent.critic, agent.config)
    batch = ppo.prepare(rollout)
    shuffle = torch.Generator().manual_seed(0)
    minibatch = next(batch.minibatches(num_minibatches, shuffle))
    parts = ppo.loss(minibatch, 0.01)
    if num_minibatches == 1:
        reference = reinforce.loss(reinforce.prepare(rollout), 0.01)
        assert len(minibatch) == int(rollout.mask.sum())
    else:
        reference = reinforce.loss(minibatch, 0.01)
    params = [*agent.policy.parameters(), *agent.critic.parameters()]
    ours, theirs = _grads(parts.total, params), _grads(reference.total, params)
    assert theirs.norm() > 0
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-7)
    assert parts.extras["diagnostics/approx_kl"].abs().item() < 1e-6
    assert parts.extras["diagnostics/clip_fraction"].item() == 0.0
    agent.envs.close()


# -- early stopping on the target KL ------------------------------------------------------------
def _parts(*kls: float) -> list[LossParts]:
    zero = torch.zeros(())
    return [
        LossParts(zero, zero, zero, extras={"diagnostics/approx_kl": torch.tensor(kl)})
        for kl in kls
    ]


def test_extras_are_logged_by_tag_as_means_and_maxima():
    def parts(policy: float, kl: float, ratio_max: float) -> LossParts:
        t = torch.tensor
        extras = {"diagnostics/approx_kl": t(kl), "diagnostics/ratio_max": t(ratio_max)}
        return LossParts(t(policy), t(policy), t(0.5), extras=extras)

    logged = LossParts.mean_scalars([(parts(1.0, 0.1, 1.5), 2.0), (parts(3.0, 0.3, 1.2), 4.0)])
    assert logged == pytest.approx(
        {
            "losses/total_loss": 2.0,
            "losses/policy_loss": 2.0,
            "losses/entropy": 0.5,
            "diagnostics/approx_kl": 0.2,
            "diagnostics/ratio_max": 1.5,
            "diagnostics/grad_norm": 3.0,
        }
    )


def test_stop_epochs_compares_the_epochs_mean_kl_with_the_target():
    config = PPO.default_config(target_kl=0.015)
    algorithm = PPOAlgorithm(torch.nn.Identity(), None, config)
    assert algorithm.stop_epochs(_parts(0.01, 0.03))  # mean 0.02 > 0.015
    assert not algorithm.stop_epochs(_parts(0.01, 0.015))  # mean 0.0125
    off = PPOAlgorithm(torch.nn.Identity(), None, PPO.default_config())
    assert not off.stop_epochs(_parts(10.0))


@pytest.mark.parametrize("target_kl,epochs", [(1e-4, 1), (None, 8)])
def test_target_kl_ends_the_update_early(target_kl, epochs, tmp_path):
    """A learning rate of 0.05 moves the policy far in one epoch: a target of 1e-4 stops after
    it; without a target all 8 epochs run. The loop logs how many ran."""
    agent = PPO(
        env_id="CartPole-v1",
        num_envs=4,
        num_steps=32,
        update_epochs=8,
        num_minibatches=2,
        learning_rate=0.05,
        target_kl=target_kl,
        quiet=True,
        run_dir=tmp_path / "run",
    )
    metrics = agent.update(agent.collect())
    assert metrics["diagnostics/epochs"] == epochs
    assert metrics["diagnostics/approx_kl"] > 1e-4
    agent.envs.close()


# -- reward scaling -------------------------------------------------------------------------------
def test_reward_scaler_by_hand():
    """gamma 0.5; env 0 ends at t=0, so t=1 is its dead step; env 1 runs on."""
    scaler = RewardScaler(gamma=0.5)
    rewards = torch.tensor([[1.0, 2.0], [0.0, 4.0], [5.0, 6.0]])
    terminated = torch.tensor([[True, False], [False, False], [False, False]])
    truncated = torch.zeros(3, 2, dtype=torch.bool)
    mask = torch.tensor([[True, True], [False, True], [True, True]])
    scaled = scaler(rewards, terminated, truncated, mask)
    # discounted returns of the episodes in progress: env 0: 1 (then a new episode), 5;
    # env 1: 2, 4 + 0.5 * 2 = 5, 6 + 0.5 * 5 = 8.5
    seen = [1.0, 2.0, 5.0, 5.0, 8.5]
    std = math.sqrt(np.var(seen) + 1e-8)
    expected = [[1 / std, 2 / std], [0.0, 4 / std], [5 / std, 6 / std]]
    torch.testing.assert_close(scaled, torch.tensor(expected))
    # the next rollout continues both episodes: 1 + 0.5 * 5 = 3.5 and 1 + 0.5 * 8.5 = 5.25
    again = scaler(torch.ones(1, 2), torch.zeros(1, 2, dtype=torch.bool), truncated[:1], mask[:1])
    std = math.sqrt(np.var([*seen, 3.5, 5.25]) + 1e-8)
    torch.testing.assert_close(again, torch.full((1, 2), 1 / std))
    assert scaler.std == pytest.approx(std)
    # a rollout whose next episode starts right after the end (no dead step between them, as
    # from same-step autoreset) starts its discounted return from 0 as well
    direct = RewardScaler(gamma=0.5)
    direct(torch.tensor([[1.0], [2.0]]), terminated[:2, :1], truncated[:2, :1], mask[:2, 1:])
    assert direct.mean == pytest.approx((1.0 + 2.0) / 2)  # not (1 + 2.5) / 2
    fresh = RewardScaler(gamma=0.5)
    fresh.load_state_dict(scaler.state_dict())
    assert fresh.std == scaler.std and fresh.count == 7
    # statistics of a million unit-variance returns: 50 is 50 standard deviations, clipped to 10
    fresh.load_state_dict({"mean": 0.0, "var": 1.0, "count": 10**6})
    big = fresh(torch.tensor([[50.0, -50.0]]), terminated[:1], truncated[:1], mask[:1])
    assert big.tolist() == [[10.0, -10.0]]


def test_reward_scaling_leaves_logged_and_evaluated_returns_raw(tmp_path):
    """CartPole pays 1 a step: every raw return equals its episode's length. The learner sees
    scaled rewards; TensorBoard and evaluation must not."""
    run_dir = tmp_path / "run"
    agent = PPO(
        env_id="CartPole-v1",
        num_envs=4,
        num_steps=64,
        update_epochs=2,
        num_minibatches=2,
        total_steps=1024,
        normalize_reward=True,
        eval_episodes=0,
        quiet=True,
        run_dir=run_dir,
    ).train()
    scalars = all_scalars(run_dir)
    returns = [v for _, v in scalars["charts/episodic_return"]]
    lengths = [v for _, v in scalars["charts/episodic_length"]]
    assert returns == lengths and max(returns) > 10
    scales = [v for _, v in scalars["diagnostics/reward_scale"]]
    assert all(s > 1.5 for s in scales), scales  # returns of 10+ steps: a std well above 1
    result = agent.evaluate(episodes=5)
    assert result["returns"] == result["lengths"]
    loaded = PPO.load(run_dir / "checkpoints" / f"step_{agent.global_step:012d}.pt")
    assert loaded.reward_scaler.state_dict() == agent.reward_scaler.state_dict()
    agent.envs.close()
    loaded.envs.close()


# -- training ---------------------------------------------------------------------------------------
@pytest.mark.slow
def test_ppo_learns_cartpole(tmp_path):
    """20k steps, three fixed seeds: the median solves (>= 475), none stays near the start. An
    untrained policy's samples last about 20 steps (its argmax, nearly a linear policy, can
    balance for a while, so the check before training samples). One seed alone is too fragile a
    witness: a last-bit change in the update moves a single run between 440 and 500."""
    finals = []
    for seed in (0, 1, 2):
        run_dir = tmp_path / f"run{seed}"
        agent = PPO(
            env_id="CartPole-v1",
            seed=seed,
            num_envs=8,
            num_steps=64,
            update_epochs=4,
            num_minibatches=4,
            learning_rate=2.5e-3,
            total_steps=20_480,
            eval_episodes=0,
            checkpoint_every=0,
            quiet=True,
            run_dir=run_dir,
        )
        untrained = agent.evaluate(episodes=10, deterministic=False)["mean_return"]
        assert untrained < 100, untrained
        agent.train()
        finals.append(agent.evaluate(episodes=10)["mean_return"])
        agent.envs.close()
    assert sorted(finals)[1] >= 475 and min(finals) >= 300, finals
    tags = set(all_scalars(run_dir))
    assert set(PPO_TAGS) <= tags, sorted(tags)


SPACE_ENVS = [
    "CartPole-v1",
    "pgradtest/MultiDiscrete-v0",
    "pgradtest/MultiBinary-v0",
    "pgradtest/BoxAction-v0",
    "pgradtest/DictObs-v0",
]


@pytest.mark.parametrize("env_id", SPACE_ENVS)
def test_ppo_on_every_action_space(env_id, tmp_path):
    agent = PPO(
        env_id=env_id,
        num_envs=4,
        num_steps=16,
        num_minibatches=4,
        update_epochs=2,
        total_steps=128,
        hidden=(16,),
        vectorization="sync",
        normalize_obs=True,
        normalize_reward=True,
        quiet=True,
        run_dir=tmp_path / "run",
    )
    before = [p.detach().clone() for p in agent.policy.parameters()]
    agent.train()
    after = list(agent.policy.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, after)), "policy did not change"
    assert all(torch.isfinite(p).all() for p in after)
    assert math.isfinite(agent.evaluate(3)["mean_return"])
    agent.envs.close()


def test_ppo_without_a_critic_on_whole_episodes(tmp_path):
    """Any baseline works: leave-one-out over groups of whole episodes, no critic, no value loss."""
    agent = PPO(
        env_id="CartPole-v1",
        rollout="episodes",
        baseline="loo",
        group_size=4,
        num_envs=8,
        num_minibatches=4,
        update_epochs=2,
        total_steps=500,
        quiet=True,
        run_dir=tmp_path / "run",
    ).train()
    assert agent.critic is None and agent.updates >= 1
    assert "losses/value_loss" not in all_scalars(tmp_path / "run")
    agent.envs.close()


def test_gaussian_actions_are_clipped_at_the_environment_only(tmp_path):
    """The environment checks that every action lies in Box(-2, 2); with std e^2 most samples
    do not. The learner keeps the unclipped samples, whose log-probabilities the policy gave."""
    agent = PPO(
        env_id="pgradtest/BoxAction-v0",
        num_envs=4,
        num_steps=16,
        log_std_init=2.0,
        vectorization="sync",
        quiet=True,
        run_dir=tmp_path / "run",
    )
    rollout = agent.collect()  # an action outside the bounds would fail the env's assertion
    assert rollout.actions.abs().max() > 2.5
    batch = agent.prepare(rollout)
    dist = agent.policy(batch.obs)
    torch.testing.assert_close(dist.log_prob(batch.actions), batch.old_log_probs)
    agent.envs.close()


def test_ppo_never_takes_a_masked_action(tmp_path):
    from test_masks import FatalMaskEnv  # noqa: F401  (registers pgradtest/MaskFatal-v0)

    agent = PPO(
        env_id="pgradtest/MaskFatal-v0",
        num_envs=8,
        num_steps=32,
        num_minibatches=4,
        update_epochs=4,
        learning_rate=3e-3,
        total_steps=4096,
        vectorization="sync",
        eval_episodes=0,
        quiet=True,
        run_dir=tmp_path / "run",
    )
    before = agent.evaluate(episodes=20, deterministic=False)["mean_return"]
    agent.train()  # an illegal action would raise inside the environment
    after = agent.evaluate(episodes=20)["mean_return"]
    agent.envs.close()
    assert after > before, (before, after)


def test_hopper_smoke(tmp_path):
    pytest.importorskip("mujoco")
    run_dir = tmp_path / "run"
    agent = Hopper(
        num_steps=256, num_minibatches=4, update_epochs=2, quiet=True, run_dir=run_dir
    ).train(512)
    assert agent.updates == 2
    scalars = all_scalars(run_dir)
    assert set(PPO_TAGS) - {"diagnostics/epochs"} <= set(scalars)
    assert all(math.isfinite(v) for points in scalars.values() for _, v in points)
    result = agent.evaluate(episodes=2)
    assert math.isfinite(result["mean_return"]) and result["mean_length"] >= 1
    agent.envs.close()


# -- command line -------------------------------------------------------------------------------
BLOCK_MUJOCO = textwrap.dedent(
    """
    import sys

    class BlockMuJoCo:
        def find_spec(self, name, path=None, target=None):
            if name == "mujoco" or name.startswith("mujoco."):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, BlockMuJoCo())
    """
)


def test_a_mujoco_task_without_mujoco_names_the_extra(tmp_path):
    (tmp_path / "block").mkdir()
    (tmp_path / "block" / "sitecustomize.py").write_text(BLOCK_MUJOCO)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path / "block"), str(ROOT)]),
        "PYTHONWARNINGS": "ignore",
    }
    result = subprocess.run(
        [sys.executable, "-m", "pgrad.cli", "train", "Hopper-v5", "--total-steps", "100"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert_clean_error(result, "pip install 'pgrad[mujoco]'")
    assert "Hopper-v5" in result.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


@pytest.mark.slow
def test_cli_trains_ppo_with_two_ray_workers(tmp_path):
    pytest.importorskip("ray")
    from helpers import pgrad

    result = pgrad(
        "train",
        "CartPole-v1",
        "--agent",
        "ppo",
        "--workers",
        "2",
        "--num-envs",
        "2",
        "--total-steps",
        "2048",
        "--set",
        "num_steps=256",
        "--quiet",
        cwd=tmp_path,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr
    run_dir = tmp_path / result.stdout.strip().splitlines()[-1].removeprefix("run directory: ")
    scalars = all_scalars(run_dir)
    assert set(PPO_TAGS) <= set(scalars)
    assert scalars["diagnostics/epochs"][-1][1] == 10
