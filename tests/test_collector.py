"""The collector: dead transitions, whole episodes, grouped resets, batched bookkeeping, and the
policies' fast sampler against plain references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pgrad import A2C, Reinforce
from pgrad.policies import MASKED_LOGIT, GumbelCategorical
from pgrad.rollout import Collector, Rollout


@pytest.mark.parametrize("batch", [(), (3,), (2, 5)])
def test_gumbel_categorical_samples_the_categorical_distribution(batch):
    torch.manual_seed(0)
    logits = torch.randn(*batch, 4) * 2
    logits[..., 3] = -1e30  # an action with probability 0 is never drawn
    dist = GumbelCategorical(logits=logits)
    assert dist.sample().shape == batch
    draws = 40_000
    samples = dist.sample((draws,))
    assert samples.shape == (draws, *batch) and samples.dtype == torch.int64
    freq = torch.nn.functional.one_hot(samples, 4).double().mean(0)
    probs = dist.probs.double()
    se = (probs * (1 - probs) / draws).sqrt()
    assert ((freq - probs).abs() <= 5 * se + 1e-12).all(), (freq, probs)
    assert (samples != 3).all()


@pytest.mark.parametrize(
    "shape",
    [
        (6, 5),  # a small batch: torch.log_softmax
        (16, 512, 2),  # an update's batch with few actions: normalised across the batch
        (2048, 7),
        (512, 20),  # many actions: torch.log_softmax
    ],
)
@pytest.mark.parametrize("masked", [False, True])
def test_gumbel_categorical_has_categoricals_log_prob_entropy_and_gradients(shape, masked):
    """Values and gradients against ``Categorical``, in float32 and (the truth) float64."""
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(*shape, generator=gen) * 3
    logits.view(-1, shape[-1])[::7] += 100.0  # exp(100) overflows a float32 without the shift
    if masked:
        rows = logits.view(-1, shape[-1])
        rows.masked_fill_(torch.rand(rows.shape, generator=gen) < 0.4, MASKED_LOGIT)
        rows[::5, 1:] = MASKED_LOGIT  # all but one action masked
        rows[1::11] = MASKED_LOGIT  # nothing allowed: uniform, as Categorical gives
        rows[2::9, :2] = torch.tensor([-math.inf, 0.5])  # a user's -inf: probability 0 too
    actions = torch.distributions.Categorical(logits=logits).sample()
    samples = torch.distributions.Categorical(logits=logits).sample((3,))
    weights = torch.randn(shape[:-1], generator=gen)

    def evaluate(dist_cls: type, dtype: torch.dtype) -> dict[str, torch.Tensor]:
        x = logits.to(dtype).requires_grad_()
        dist = dist_cls(logits=x)
        assert dist.batch_shape == shape[:-1] and dist.event_shape == ()
        out = {
            "logits": dist.logits,
            "probs": dist.probs,
            "entropy": dist.entropy(),
            "log_prob": dist.log_prob(actions),
            # sample-shaped actions take Categorical's broadcasting path
            "log_prob_samples": dist.log_prob(samples),
        }
        objective = (out["log_prob"] * weights.to(dtype) + out["entropy"]).sum()
        (out["grad"],) = torch.autograd.grad(objective, x)
        return {name: value.detach().double() for name, value in out.items()}

    truth = evaluate(torch.distributions.Categorical, torch.float64)
    fast = evaluate(GumbelCategorical, torch.float32)
    plain = evaluate(torch.distributions.Categorical, torch.float32)
    # a row that allows nothing is uniform here; Categorical's logits there are 0, not
    # log(1 / K) (logsumexp loses log K against -3.4e38), so it is checked on its own below
    some = (logits != MASKED_LOGIT).any(-1)
    for name, expected in truth.items():
        rows = some if expected.shape[-len(some.shape) :] == some.shape else some.unsqueeze(-1)
        keep = rows.expand_as(expected) & (expected > MASKED_LOGIT / 2)  # not a masked log-p
        for got in (fast[name], plain[name]):  # the tolerance is float32 Categorical's own
            assert name == "logits" or torch.isfinite(got).all(), name
            torch.testing.assert_close(got[keep], expected[keep], rtol=1e-5, atol=2e-5, msg=name)
    if masked:  # a masked action gets probability 0 and its logit no gradient
        masked_out = (logits < MASKED_LOGIT / 2) & some.unsqueeze(-1).expand_as(logits)
        assert masked_out.any()
        assert (fast["probs"][masked_out] == 0).all()
        assert (fast["grad"][masked_out] == 0).all()
        uniform = math.log(shape[-1])  # a row that allows nothing: the uniform distribution
        for name, expected in (("logits", -uniform), ("entropy", uniform)):
            got = fast[name][~some]
            torch.testing.assert_close(got, torch.full_like(got, expected), rtol=1e-6, atol=1e-6)


def _reference_episodes(rewards, done, mask, running_return, running_length):
    """The step-by-step bookkeeping: accumulate live rewards, record and reset at each end."""
    returns, lengths = [], []
    for t in range(rewards.shape[0]):
        for n in range(rewards.shape[1]):
            if mask[t, n]:
                running_return[n] += rewards[t, n]
                running_length[n] += 1
                if done[t, n]:
                    returns.append(running_return[n])
                    lengths.append(running_length[n])
                    running_return[n], running_length[n] = 0.0, 0
    return returns, lengths


def test_episode_statistics_match_a_step_by_step_loop():
    rng = np.random.default_rng(0)
    collector = Collector.__new__(Collector)
    T, N = 9, 5
    collector._running_return = np.zeros(N)
    collector._running_length = np.zeros(N, dtype=np.int64)
    ref_return, ref_length = np.zeros(N), np.zeros(N, dtype=np.int64)
    for _ in range(6):  # episodes spanning several rollouts, several ends per env in one
        rewards = rng.normal(size=(T, N)).astype(np.float32)
        done = rng.random((T, N)) < 0.3
        mask = rng.random((T, N)) < 0.8
        rollout = Rollout(*(torch.zeros(1),) * 6)
        collector._track_episodes(rewards, done, mask, rollout)
        returns, lengths = _reference_episodes(rewards, done, mask, ref_return, ref_length)
        assert rollout.episode_lengths == lengths
        assert np.allclose(rollout.episode_returns, returns, rtol=0, atol=1e-9)
        assert np.allclose(collector._running_return, ref_return, rtol=0, atol=1e-9)
        assert np.array_equal(collector._running_length, ref_length)


def test_non_finite_reward_names_env_and_step():
    agent = A2C(env_id="CartPole-v1", num_envs=3, num_steps=4, quiet=True)
    rewards = np.ones((4, 3), dtype=np.float32)
    rewards[2, 1] = math.nan
    with pytest.raises(ValueError, match="reward nan from environment 1 at step 106"):
        agent.collector._check_rewards(rewards, step_offset=100)


def test_collector_masks_dead_transition_and_keeps_final_observation():
    """Next-step autoreset: the step after an episode ends is dead; obs[t+1] is the final obs."""
    agent = A2C(
        env_id="CartPole-v1",
        num_envs=3,
        num_steps=200,
        quiet=True,
        max_episode_steps=20,
        vectorization="sync",
    )
    rollout = agent.collect()
    done = rollout.terminated | rollout.truncated
    assert done.any()
    t_idx, n_idx = torch.nonzero(done[:-1], as_tuple=True)
    # the transition after every ended episode is masked out, and carries no reward
    assert not rollout.mask[t_idx + 1, n_idx].any()
    assert (rollout.rewards[t_idx + 1, n_idx] == 0).all()
    # time-limit episodes last exactly 20 real steps
    trunc_t, trunc_n = torch.nonzero(rollout.truncated, as_tuple=True)
    assert len(trunc_t) > 0
    for t, n in zip(trunc_t.tolist(), trunc_n.tolist()):
        start = t
        while start > 0 and not done[start - 1, n]:
            start -= 1
        # from a reset (start 0) or a dead step (masked), 20 real steps reach the time limit
        assert rollout.mask[start : t + 1, n].sum() == 20
    # the stored final observation differs from the reset observation that follows it
    assert not torch.equal(rollout.obs[t_idx + 1, n_idx], rollout.obs[t_idx + 2, n_idx])
    assert rollout.mask.sum() < rollout.mask.numel()
    assert sum(rollout.episode_lengths) <= int(rollout.mask.sum())


def test_episode_rollouts_hold_one_whole_episode_per_env():
    agent = Reinforce(env_id="CartPole-v1", num_envs=5, quiet=True, vectorization="sync")
    rollout = agent.collect()
    assert len(rollout.episode_returns) == 5
    per_env_len = rollout.mask.sum(0)
    assert sorted(per_env_len.tolist()) == sorted(rollout.episode_lengths)
    # CartPole pays 1 per step: each return equals its episode's length
    assert sorted(rollout.episode_returns) == sorted(float(x) for x in rollout.episode_lengths)


def test_groups_start_from_identical_resets():
    agent = Reinforce(
        env_id="pgradtest/BoxAction-v0",
        num_envs=4,
        group_size=2,
        baseline="loo",
        quiet=True,
        vectorization="sync",
    )
    rollout = agent.collect()
    first = rollout.obs[0]
    assert torch.equal(first[0], first[1]) and torch.equal(first[2], first[3])
    assert not torch.equal(first[0], first[2])
