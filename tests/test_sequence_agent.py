"""Sequences through the one agent loop: token and tour policies (caches included), the sequence
estimators against hand computations, the KL to a reference, episode-end infos, learning."""

from __future__ import annotations

import copy

import gymnasium as gym
import numpy as np
import pytest
import torch

from pgrad import Reinforce, Sequence
from pgrad.agents import TSP, Reverse
from pgrad.algos.sequence import SequenceAlgorithm, SequenceBatch
from pgrad.envs.tsp import nearest_neighbour_tour, tour_length
from pgrad.obs import map_obs, to_tensor
from pgrad.rollout import Collector
from pgrad.sequence_policies import TokenPolicy, TourPolicy

from helpers import all_scalars


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class Recorder(torch.nn.Module):
    """Wraps a policy and keeps every observation and logits it was called with."""

    def __init__(self, policy: torch.nn.Module) -> None:
        super().__init__()
        self.policy = policy
        self.calls: list[tuple[dict, torch.Tensor]] = []

    def forward(self, obs):
        dist = self.policy(obs)
        with torch.inference_mode(False):  # normal tensors, which autograd may use later
            self.calls.append((map_obs(lambda x: x.clone(), obs), dist.logits.clone()))
        return dist

    def mode(self, dist):
        return self.policy.mode(dist)

    def to_env(self, actions):
        return self.policy.to_env(actions)


def uncached_logits(policy: torch.nn.Module, obs: dict) -> torch.Tensor:
    """The policy's logits by its full forward (no cache): with gradients enabled."""
    with torch.enable_grad():
        return policy(obs).logits.detach()


# --- the policies ------------------------------------------------------------------------------


def test_sequence_policies_are_picked_by_observation_keys():
    token = Sequence(env_id="pgrad/Copy-v0", num_envs=4, quiet=True)
    tour = Sequence(env_id="pgrad/TSP-v0", env_kwargs="n=5", num_envs=4, quiet=True)
    control = Reinforce(env_id="CartPole-v1", num_envs=2, quiet=True)
    assert isinstance(token.policy, TokenPolicy)
    assert isinstance(tour.policy, TourPolicy)
    assert not isinstance(control.policy, TokenPolicy | TourPolicy)


def test_cached_and_uncached_token_distributions_are_equal_along_a_rollout():
    """Copy with prompts of 1 to 4 symbols and an untrained policy that often emits <eos>
    early: rows continue, end and restart (autoreset) at different steps, and the cache must
    match the full forward at every step, also after the weights change between rollouts."""
    torch.manual_seed(0)
    agent = Sequence(env_id="pgrad/Copy-v0", env_kwargs="length=4,min_length=1", num_envs=8)
    policy = agent.policy
    recorder = Recorder(policy)
    collector = Collector(agent.envs, recorder, agent.device, seed=3)
    collector.collect_steps(12)
    restarts = sum(
        int((now["length"] <= before["length"]).sum())
        for (before, _), (now, _) in zip(recorder.calls, recorder.calls[1:])
    )
    assert restarts >= 4  # the rollout did exercise rows that restart
    with torch.no_grad():  # an optimizer-like in-place change: the cache must be dropped
        for parameter in policy.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    collector.collect_steps(12)  # continues the same episodes with the new weights
    assert len(recorder.calls) == 24
    for obs, logits in recorder.calls[-12:]:
        torch.testing.assert_close(logits, uncached_logits(policy, obs), atol=1e-5, rtol=1e-5)


def test_cached_first_rollout_matches_the_full_forward():
    torch.manual_seed(1)
    agent = Sequence(env_id="pgrad/Copy-v0", env_kwargs="length=4,min_length=1", num_envs=8)
    recorder = Recorder(agent.policy)
    Collector(agent.envs, recorder, agent.device, seed=3).collect_steps(15)
    for obs, logits in recorder.calls:
        torch.testing.assert_close(logits, uncached_logits(agent.policy, obs), atol=1e-5, rtol=1e-5)


def test_update_log_probs_equal_the_model_at_each_observation():
    """The chain trick (one forward per sequence in an update) against the model itself: the
    logits at position ``length - 1`` of each observation's own tokens."""
    agent = Sequence(env_id="pgrad/Copy-v0", env_kwargs="length=3,min_length=1", num_envs=8)
    rollout = agent.collect()
    obs = map_obs(lambda x: x[:-1], rollout.obs)
    chained = agent.policy(obs).log_prob(rollout.actions)
    tokens, lengths = obs["tokens"].flatten(0, 1), obs["length"].flatten()
    logits = agent.policy.model(tokens)[torch.arange(len(tokens)), lengths - 1]
    logits = logits.masked_fill(obs["action_mask"].flatten(0, 1) == 0, -1e30)
    expected = logits.log_softmax(-1).gather(-1, rollout.actions.flatten()[:, None])[:, 0]
    torch.testing.assert_close(chained.flatten(), expected, atol=1e-5, rtol=1e-5)


def test_tour_policy_shares_encodings_and_matches_the_attention_model():
    torch.manual_seed(0)
    agent = TSP(env_kwargs="n=6", group_size=6, num_envs=12, d_model=32, num_heads=4)
    recorder = Recorder(agent.policy)
    collector = Collector(agent.envs, recorder, agent.device, seed=5)
    collector.collect_episodes(6, 10)
    rollout = collector.collect_episodes(7, 10)  # new instances, same weights
    model = agent.policy.model
    for obs, logits in recorder.calls:  # cached encodings while collecting
        torch.testing.assert_close(logits, model(obs).log_softmax(-1), atol=1e-5, rtol=1e-5)
    obs = map_obs(lambda x: x[:-1], rollout.obs)  # [T, N] in an update: one encoding a group
    flat = map_obs(lambda x: x.flatten(0, 1), obs)
    expected = model(flat).unflatten(0, rollout.mask.shape)
    torch.testing.assert_close(
        agent.policy(obs).logits, expected.log_softmax(-1), atol=1e-5, rtol=1e-5
    )


def test_pomo_training_envs_start_each_tour_of_a_group_at_another_city():
    agent = TSP(env_kwargs="n=5", group_size=5, num_envs=10, d_model=16, num_heads=2)
    rollout = agent.collect()
    first = rollout.actions[0].tolist()
    assert first == [0, 1, 2, 3, 4] * 2
    coords = rollout.obs["coords"][0]
    assert torch.equal(coords[0], coords[4]) and not torch.equal(coords[0], coords[5])
    # evaluation environments are independent, with free starts
    envs = agent.make_env(3)
    obs, _ = envs.reset(seed=0)
    assert obs["action_mask"].all() and not np.array_equal(obs["coords"][0], obs["coords"][1])


# --- the estimators, by hand -----------------------------------------------------------------

HAND = {
    "none": lambda r: r,
    "loo": lambda r: r - (r.view(-1, 2).sum(1, keepdim=True) - r.view(-1, 2)).flatten(),
    "drgrpo": lambda r: (r.view(-1, 2) - r.view(-1, 2).mean(1, keepdim=True)).flatten(),
    "pomo": lambda r: (r.view(-1, 2) - r.view(-1, 2).mean(1, keepdim=True)).flatten(),
    "group": lambda r: (
        (r.view(-1, 2) - r.view(-1, 2).mean(1, keepdim=True))
        / (r.view(-1, 2).std(1, correction=0, keepdim=True) + 1e-8)
    ).flatten(),
    "rpp": lambda r: (
        (c := r.view(-1, 2) - r.view(-1, 2).mean(1, keepdim=True)) / (c.std(correction=0) + 1e-8)
    ).flatten(),
}


@pytest.mark.parametrize("baseline", list(HAND))
def test_estimators_through_the_agent_match_a_hand_computation(baseline):
    """Six sequences in three groups of two: the prepared advantages and the seq_sum loss."""
    torch.manual_seed(2)
    agent = Sequence(
        env_id="pgrad/Reverse-v0",
        env_kwargs="length=2,num_symbols=2",
        num_envs=6,
        group_size=2,
        baseline=baseline,
        seed=4,
    )
    rollout = agent.collect()
    prompts = rollout.obs["tokens"][0]
    if agent.config.grouped:  # the two sequences of a group answer one prompt
        assert all(torch.equal(prompts[i], prompts[i + 1]) for i in (0, 2, 4))
    rewards = (rollout.rewards * rollout.mask).sum(0)
    assert len(set(rewards.tolist())) > 1  # the rewards differ: advantages are not all 0
    batch = agent.prepare(rollout)
    expected = HAND[baseline](rewards)
    torch.testing.assert_close(batch.advantages[0], expected)
    assert torch.equal(batch.advantages, expected.expand_as(batch.advantages))
    parts = agent.loss(batch, entropy_coef=0.0)
    log_probs = agent.policy(batch.obs).log_prob(batch.actions)
    per_sequence = (log_probs * batch.mask).sum(0)  # log pi(o_i)
    torch.testing.assert_close(parts.policy, -(expected * per_sequence).sum() / 6)


def test_ema_baseline_uses_past_batches_only():
    agent = Sequence(env_id="pgrad/Reverse-v0", env_kwargs="length=2", num_envs=8, baseline="ema")
    first = agent.prepare(agent.collect())
    rewards_1 = first.returns[0]
    torch.testing.assert_close(first.advantages[0], rewards_1)  # nothing learned yet: b = 0
    agent.algorithm.after_update(first)
    second = agent.prepare(agent.collect())
    torch.testing.assert_close(
        second.advantages[0], second.returns[0] - rewards_1.mean(), atol=1e-6, rtol=0
    )


@pytest.mark.parametrize("aggregation", ["seq_mean", "token_mean", "token_sum_norm"])
def test_token_aggregation_is_the_configured_one(aggregation):
    agent = Sequence(
        env_id="pgrad/Copy-v0",
        env_kwargs="length=3,min_length=1",
        num_envs=32,
        aggregation=aggregation,
        baseline="none",  # advantages = rewards: not all zero
        seed=3,
    )
    batch = agent.prepare(agent.collect())
    parts = agent.loss(batch, 0.0)
    token_terms = agent.policy(batch.obs).log_prob(batch.actions) * batch.mask
    advantages = batch.advantages[0]
    assert advantages.abs().sum() > 0
    lengths = batch.mask.sum(0)
    assert len(set(lengths.tolist())) > 1  # sequences of different lengths tell them apart
    weighted = advantages * token_terms.sum(0)
    expected = {
        "seq_mean": -(weighted / lengths).mean(),
        "token_mean": -weighted.sum() / lengths.sum(),
        "token_sum_norm": -weighted.sum() / (32 * batch.mask.shape[0]),
    }[aggregation]
    torch.testing.assert_close(parts.policy, expected)


# --- PPO's clipped ratio (seq_clip) ------------------------------------------------------------


def _plain_twin(agent: Sequence) -> SequenceAlgorithm:
    """The same policy and config without seq_clip: the plain sequence loss."""
    return SequenceAlgorithm(agent.policy, None, agent.config.replace(seq_clip=False))


def _policy_grads(agent: Sequence, loss: torch.Tensor) -> list[torch.Tensor]:
    return list(torch.autograd.grad(loss, [p for p in agent.policy.parameters()]))


@pytest.mark.parametrize("aggregation", ["seq_sum", "seq_mean", "token_mean", "token_sum_norm"])
def test_clipped_gradient_at_the_collecting_policy_is_the_plain_one(aggregation):
    """At theta = theta_old every ratio is 1: the clipped loss's gradient is the plain loss's,
    for each aggregation, on sequences of unequal lengths."""
    torch.manual_seed(0)
    agent = Sequence(
        env_id="pgrad/Copy-v0",
        env_kwargs="length=3,min_length=1",
        num_envs=32,
        aggregation=aggregation,
        seq_clip=True,
        update_epochs=4,
        seed=3,
    )
    batch = agent.prepare(agent.collect())
    assert batch.old_log_probs is not None and batch.old_log_probs.grad_fn is None
    lengths = batch.mask.sum(0)
    assert len(set(lengths.tolist())) > 1
    assert batch.advantages[0].abs().sum() > 0
    clipped = agent.loss(batch, 0.0)
    plain = _plain_twin(agent).loss(batch, 0.0)
    assert float(clipped.extras["diagnostics/approx_kl"]) == 0.0
    assert float(clipped.extras["diagnostics/clip_fraction"]) == 0.0
    wanted = _policy_grads(agent, plain.policy)
    assert any(float(g.abs().max()) > 1e-4 for g in wanted)
    for got, want in zip(_policy_grads(agent, clipped.policy), wanted):
        torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)


def test_clipped_minibatches_are_whole_sequences():
    """Each minibatch is [T, M] columns of the batch, whole and in order; together a partition."""
    horizon, n = 4, 10
    ids = torch.arange(n, dtype=torch.float32)
    lengths = torch.tensor([4, 1, 3, 2, 4, 2, 1, 3, 4, 2])
    mask = torch.arange(horizon)[:, None] < lengths  # [T, N]
    batch = SequenceBatch(
        obs={"tokens": torch.arange(horizon * n * 2).reshape(horizon, n, 2)},
        actions=torch.arange(horizon * n).reshape(horizon, n),
        mask=mask,
        advantages=ids.expand(horizon, -1),  # the column's id on each of its tokens
        old_log_probs=-torch.rand(horizon, n),
        ref_log_probs=-torch.rand(horizon, n),
    )
    minibatches = list(batch.minibatches(3, torch.Generator().manual_seed(0)))
    assert sorted(m.mask.shape[1] for m in minibatches) == [3, 3, 4]
    seen = []
    for minibatch in minibatches:
        assert minibatch.mask.shape[0] == horizon  # every position of a sequence: [T, M]
        for j in range(minibatch.mask.shape[1]):
            i = int(minibatch.advantages[0, j])
            seen.append(i)
            for name in ("actions", "mask", "advantages", "old_log_probs", "ref_log_probs"):
                assert torch.equal(getattr(minibatch, name)[:, j], getattr(batch, name)[:, i])
            assert torch.equal(minibatch.obs["tokens"][:, j], batch.obs["tokens"][:, i])
    assert sorted(seen) == list(range(n))
    assert seen != list(range(n))  # shuffled
    assert list(batch.minibatches(1)) == [batch]  # one minibatch: the batch, in order


def test_seq_clip_logs_ppo_diagnostics_and_stops_on_target_kl(tmp_path):
    common = dict(env_id="pgrad/Reverse-v0", env_kwargs="length=2", num_envs=16, seed=1)
    agent = Sequence(
        run_dir=tmp_path / "run", seq_clip=True, update_epochs=3, num_minibatches=2, **common
    )
    agent.train(total_steps=96)
    scalars = all_scalars(tmp_path / "run")
    for tag in ("diagnostics/approx_kl", "diagnostics/clip_fraction", "diagnostics/epochs"):
        assert tag in scalars, tag
    assert max(v for _, v in scalars["diagnostics/approx_kl"]) > 0  # later steps moved pi
    # one epoch of one step measures nothing moved (approx_kl 0); the second measures > 0
    stopping = Sequence(seq_clip=True, update_epochs=4, target_kl=1e-12, **common)
    assert stopping.update(stopping.collect())["diagnostics/epochs"] == 2.0
    running = Sequence(seq_clip=True, update_epochs=4, **common)
    assert running.update(running.collect())["diagnostics/epochs"] == 4.0
    # the default keeps no old log-probs and logs no ratio
    plain = Sequence(**common)
    batch = plain.prepare(plain.collect())
    assert batch.old_log_probs is None
    assert "diagnostics/approx_kl" not in plain.loss(batch, 0.0).extras


def test_greedy_rollout_baseline_is_the_frozen_policy_greedy_reward():
    torch.manual_seed(0)
    agent = Sequence(
        env_id="pgrad/Reverse-v0",
        env_kwargs="length=3",
        num_envs=8,
        baseline="greedy",
        greedy_test_every=1,
    )
    frozen = copy.deepcopy(agent.policy)
    rollout = agent.collect()
    batch = agent.prepare(rollout)
    # the greedy decode of the same prompts by the starting policy, by hand
    envs = agent.make_env()
    obs, _ = envs.reset(seed=rollout.reset_seeds)
    greedy_rewards = np.zeros(8)
    done = np.zeros(8, dtype=bool)
    with torch.no_grad():
        while not done.all():
            actions = frozen(to_tensor(obs, "cpu")).logits.argmax(-1).numpy()
            obs, reward, terminated, truncated, _ = envs.step(actions)
            greedy_rewards += np.where(done, 0.0, reward)
            done |= terminated | truncated
    rewards = (rollout.rewards * rollout.mask).sum(0)
    expected = rewards - torch.as_tensor(greedy_rewards, dtype=torch.float32)
    torch.testing.assert_close(batch.advantages[0], expected)
    agent.algorithm.after_update(batch)  # the paired t-test ran
    assert "diagnostics/greedy_test_p_value" in agent.prepare(agent.collect()).stats


# --- the KL to the reference -------------------------------------------------------------------


@pytest.mark.parametrize("estimator", ["k1", "k3"])
def test_kl_to_the_starting_policy(estimator):
    torch.manual_seed(0)
    agent = Sequence(
        env_id="pgrad/Reverse-v0",
        env_kwargs="length=3",
        num_envs=16,
        kl_coef=0.5,
        kl_estimator=estimator,
        learning_rate=1e-2,
    )
    batch = agent.prepare(agent.collect())
    assert batch.stats["diagnostics/kl_ref"] == pytest.approx(0.0, abs=1e-6)  # pi = pi_ref
    no_kl = Sequence(env_id="pgrad/Reverse-v0", env_kwargs="length=3", num_envs=16)
    no_kl.policy.load_state_dict(agent.policy.state_dict())
    torch.testing.assert_close(
        agent.loss(batch, 0.0).total, no_kl.loss(batch, 0.0).total
    )  # both penalties vanish at pi = pi_ref
    agent.update(batch_rollout := agent.collect())
    batch = agent.prepare(agent.collect())
    kl = batch.stats["diagnostics/kl_ref"]
    assert kl > 1e-4  # one step of lr 1e-2 moved the policy away
    rewards = (batch_rollout.rewards * batch_rollout.mask).sum(0)
    assert rewards.numel() == 16
    # the reference stays the starting weights: it is saved and restored with the run
    state = agent.algorithm.state_dict()
    assert "reference" in state
    for name, value in state["reference"].items():
        torch.testing.assert_close(value, no_kl.policy.state_dict()[name])


def test_k1_is_folded_into_the_sequence_reward():
    torch.manual_seed(0)
    agent = Sequence(
        env_id="pgrad/Reverse-v0",
        env_kwargs="length=3",
        num_envs=8,
        kl_coef=2.0,
        baseline="none",
    )
    with torch.no_grad():
        for parameter in agent.policy.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    rollout = agent.collect()
    batch = agent.prepare(rollout)
    obs = map_obs(lambda x: x[:-1], rollout.obs)
    with torch.no_grad():
        log_ratio = agent.policy(obs).log_prob(rollout.actions) - agent.algorithm.reference(
            obs
        ).log_prob(rollout.actions)
    kl = (log_ratio * rollout.mask).sum(0)
    rewards = (rollout.rewards * rollout.mask).sum(0)
    torch.testing.assert_close(batch.advantages[0], rewards - 2.0 * kl, atol=1e-5, rtol=1e-5)
    assert batch.stats["diagnostics/kl_ref"] == pytest.approx(float(kl.mean()), abs=1e-5)


# --- configuration and logging -----------------------------------------------------------------


@pytest.mark.parametrize(
    "changes,fragment",
    [
        ({"baseline": "value"}, "use --agent a2c"),
        ({"rollout": "steps"}, "rollout=episodes"),
        ({"num_minibatches": 2}, "num_minibatches=1"),
        ({"num_minibatches": 5, "seq_clip": True}, "at most num_envs"),
    ],
)
def test_sequence_agent_refuses_what_it_cannot_do(changes, fragment):
    with pytest.raises(ValueError, match=fragment):
        Sequence(env_id="pgrad/Reverse-v0", num_envs=4, **changes)


def test_reinforce_refuses_sequence_baselines():
    with pytest.raises(ValueError, match="--agent sequence"):
        Reinforce(env_id="pgrad/Reverse-v0", num_envs=4, baseline="drgrpo")


def test_episode_infos_reach_tensorboard_and_evaluation(tmp_path):
    agent = Reverse(env_kwargs="length=2", num_envs=16, group_size=4, run_dir=tmp_path / "run")
    agent.train(total_steps=96)
    scalars = all_scalars(tmp_path / "run")
    assert "charts/exact" in scalars and "charts/tokens_per_second" in scalars
    assert all(0.0 <= value <= 1.0 for _, value in scalars["charts/exact"])
    result = agent.evaluate(episodes=20)
    assert 0.0 <= result["mean_exact"] <= 1.0
    assert result["mean_exact"] == np.mean(np.asarray(result["returns"]) == 1.0)


def test_one_info_per_episode_even_when_finished_environments_run_on():
    """Answers of 1 to 4 tokens: environments that finish early are autoreset and their next
    episodes may end while others still run; only the first episode of each counts."""
    agent = Sequence(env_id="pgrad/Copy-v0", env_kwargs="length=4,min_length=1", num_envs=32)
    rollout = agent.collect()
    assert len(rollout.episode_returns) == 32
    assert len(rollout.episode_infos["exact"]) == 32
    assert rollout.episode_infos["exact"] == [float(r == 1.0) for r in rollout.episode_returns]


def test_episode_infos_named_in_the_config_are_kept(tmp_path):
    agent = Reinforce(
        env_id="pgrad/Copy-v0",
        env_kwargs="length=2",
        num_envs=4,
        log_info_keys="exact,missing",
        baseline="none",
    )
    result = agent.evaluate(episodes=4)
    assert "mean_exact" in result and "mean_missing" not in result


# --- learning through the agent ----------------------------------------------------------------


def assert_reverse_3_is_learned(run_dir, **settings) -> None:
    """Reverse-3 with RLOO advantages, fixed seed: greedy exact match from ~0 (chance 11^-3)
    to > 0.9 on 200 held-out prompts."""
    agent = Reverse(
        env_kwargs="length=3",
        group_size=4,
        learning_rate=2e-3,
        seed=1,
        quiet=True,
        run_dir=run_dir,
        **settings,
    )
    before = agent.evaluate(episodes=200)["mean_exact"]
    agent.train()
    after = agent.evaluate(episodes=200)["mean_exact"]
    print(f"Reverse-3 {settings}: greedy exact match {before:.3f} -> {after:.3f}")
    assert before < 0.02
    assert after > 0.9


@pytest.mark.slow
def test_reverse_is_learned_through_the_agent(one_thread, tmp_path):
    """The plain whole-sequence loss, 36,000 steps."""
    assert_reverse_3_is_learned(tmp_path / "run", total_steps=36_000)


@pytest.mark.slow
def test_reverse_is_learned_with_the_clipped_ratio(one_thread, tmp_path):
    """seq_clip with 4 epochs x 4 minibatches: learned in 12 updates (the plain loss stays near
    0 with these)."""
    assert_reverse_3_is_learned(
        tmp_path / "run", seq_clip=True, update_epochs=4, num_minibatches=4, total_steps=9216
    )


@pytest.mark.slow
def test_tsp_is_learned_through_the_agent_with_pomo(one_thread, tmp_path):
    """TSP10, POMO (10 starts per instance, shared mean): greedy tours shorter than nearest
    neighbour's on 200 fixed instances; the untrained policy is far longer."""
    n = 10
    agent = TSP(
        env_kwargs=f"n={n}",
        group_size=n,
        num_envs=32 * n,
        d_model=32,
        num_heads=4,
        num_layers=2,
        learning_rate=2e-3,
        total_steps=32 * n * n * 120,
        seed=0,
        quiet=True,
        run_dir=tmp_path / "run",
    )

    def lengths() -> tuple[float, float]:
        result = agent.evaluate(episodes=200, seed=123)
        envs = agent.make_env(200)
        coords = envs.reset(seed=123)[0]["coords"]
        neighbour = np.mean([tour_length(c, nearest_neighbour_tour(c)) for c in coords])
        return result["mean_tour_length"], float(neighbour)

    before, neighbour = lengths()
    agent.train()
    after, _ = lengths()
    print(f"TSP{n}: greedy {before:.3f} -> {after:.3f}; nearest neighbour {neighbour:.3f}")
    assert before > 1.2 * neighbour
    assert after < 0.98 * neighbour  # measured: 0.963


def test_pomo_groups_share_instances_in_gym_make_vec():
    envs = gym.make_vec(
        "pgrad/TSP-v0", num_envs=4, vectorization_mode="vector_entry_point", n=4, group_size=2
    )
    obs, _ = envs.reset(seed=0)
    assert np.array_equal(obs["coords"][0], obs["coords"][1])


def test_worker_rollouts_merge_their_episode_infos():
    from pgrad.distributed import merge_rollouts

    agent = Sequence(env_id="pgrad/Reverse-v0", env_kwargs="length=2", num_envs=4)
    first, second = agent.collect(), agent.collect()
    merged = merge_rollouts([first, second])
    assert (
        merged.episode_infos["exact"]
        == first.episode_infos["exact"] + second.episode_infos["exact"]
    )
    assert len(merged.episode_infos["exact"]) == 8
