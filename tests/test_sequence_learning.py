"""Learning checks for the sequence models, with pgrad's pure functions and nothing else.

* A :class:`~pgrad.transformer.CausalTransformer` learns ``pgrad/Reverse-v0`` from the end-of-answer
  reward alone (the fraction of positions right): groups of completions of one prompt (seeded resets), RLOO advantages, the
  ``seq_sum`` loss, sampling with the KV cache and one teacher-forced pass for the gradient.
* Kool et al.'s :class:`~pgrad.attention_model.AttentionModel` learns 10-city TSP with POMO's
  shared baseline: every instance is toured from each of its ``n`` start cities and each tour's
  advantage is its reward minus the mean of the ``n`` (``group_mean_advantage``).

Both drive Gymnasium environments in batch (a ``SyncVectorEnv`` of token tasks; the numpy-vectorised
TSP) and feed the models the environments' observations as tensors.
"""

from __future__ import annotations

import time

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import Tensor

from pgrad.attention_model import AttentionModel
from pgrad.baselines import group_mean_advantage, leave_one_out
from pgrad.envs.tsp import nearest_neighbour_tour, tour_length
from pgrad.losses import sequence_policy_loss
from pgrad.transformer import CausalTransformer, mask_logits


@pytest.fixture
def one_thread():
    """Run the test on one thread (what its time budget is for), then restore the setting."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def as_tensors(obs: dict[str, np.ndarray]) -> dict[str, Tensor]:
    return {key: torch.as_tensor(value) for key, value in obs.items()}


def token_rollout(
    model: CausalTransformer,
    envs: gym.vector.VectorEnv,
    seeds: list[int],
    greedy: bool = False,
    generator: torch.Generator | None = None,
) -> dict[str, Tensor]:
    """One episode in every environment: sample with the KV cache, keep what the loss needs.

    Environments that finish early (``<eos>``) are autoreset by the vector env on the next step;
    what they do after their end is ignored.
    """
    obs = as_tensors(envs.reset(seed=seeds)[0])
    num = len(seeds)
    prompt_lengths = obs["length"].clone()
    with torch.no_grad():
        logits, cache = model.prefill(obs["tokens"], prompt_lengths)
    done = torch.zeros(num, dtype=torch.bool)
    final_tokens, final_lengths = obs["tokens"].clone(), prompt_lengths.clone()
    rewards, exact = torch.zeros(num), torch.zeros(num, dtype=torch.bool)
    masks = []
    while not done.all():
        masks.append(obs["action_mask"])
        masked = mask_logits(logits, obs["action_mask"])
        if greedy:
            actions = masked.argmax(-1)
        else:
            actions = torch.multinomial(torch.softmax(masked, -1), 1, generator=generator)[:, 0]
        next_obs, reward, terminated, truncated, info = envs.step(actions.numpy())
        obs = as_tensors(next_obs)
        ended = torch.as_tensor(terminated | truncated) & ~done
        rewards[ended] = torch.as_tensor(reward, dtype=torch.float32)[ended]
        exact[ended] = torch.as_tensor(info.get("exact", np.zeros(num, bool)))[ended]
        final_tokens[ended], final_lengths[ended] = obs["tokens"][ended], obs["length"][ended]
        done |= ended
        if not done.all():
            with torch.no_grad():
                logits = model.decode(cache, actions)
    return {
        "tokens": final_tokens,
        "prompt_lengths": prompt_lengths,
        "lengths": final_lengths,
        "masks": torch.stack(masks, 1),  # [B, steps, V]
        "rewards": rewards,
        "exact": exact,
    }


def generated_log_probs(
    model: CausalTransformer, episodes: dict[str, Tensor]
) -> tuple[Tensor, Tensor]:
    """``([B, J], [B, J])``: log-probs of the generated tokens (one forward pass) and their mask."""
    tokens, starts = episodes["tokens"], episodes["prompt_lengths"]
    steps = episodes["masks"].shape[1]
    positions = starts[:, None] + torch.arange(steps)  # where generated token j sits
    rows = torch.arange(tokens.shape[0])[:, None]
    mask = positions < episodes["lengths"][:, None]
    positions = positions.clamp(max=tokens.shape[1] - 1)
    logits = model(tokens)[rows, positions - 1]  # the position before predicts it
    log_probs = torch.log_softmax(mask_logits(logits, episodes["masks"]), -1)
    return log_probs.gather(-1, tokens[rows, positions][..., None]).squeeze(-1), mask


@pytest.mark.slow
def test_transformer_learns_to_reverse(one_thread):
    torch.manual_seed(0)
    length, group_size, prompts_per_batch, num_updates = 3, 4, 64, 45

    def make() -> gym.Env:
        return gym.make("pgrad/Reverse-v0", length=length)

    envs = gym.vector.SyncVectorEnv([make] * (group_size * prompts_per_batch))
    eval_envs = gym.vector.SyncVectorEnv([make] * 200)
    vocab = envs.single_action_space.n
    model = CausalTransformer(vocab, 2 * length + 1, d_model=64, num_heads=4, num_layers=2)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    generator = torch.Generator().manual_seed(0)
    eval_seeds = list(range(10**6, 10**6 + 200))

    def exact_match() -> float:
        return float(
            token_rollout(model, eval_envs, eval_seeds, greedy=True)["exact"].float().mean()
        )

    before = exact_match()
    start = time.perf_counter()
    for update in range(num_updates):
        seeds = [update * prompts_per_batch + i for i in range(prompts_per_batch)]
        episodes = token_rollout(
            model, envs, [s for s in seeds for _ in range(group_size)], generator=generator
        )
        returns = episodes["rewards"]
        advantages = returns - leave_one_out(returns, group_size)
        log_probs, mask = generated_log_probs(model, episodes)
        loss = sequence_policy_loss(log_probs, advantages, mask, "seq_sum")
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = exact_match()
    print(
        f"Reverse-{length}: greedy exact match {before:.3f} -> {after:.3f} after {num_updates} "
        f"updates, {time.perf_counter() - start:.1f} s"
    )
    # Chance of an exact answer is 11^-3 < 0.1% (ten symbols and <eos> are legal).
    assert before < 0.02
    assert after > 0.5


def tsp_rollout(
    model: AttentionModel,
    envs: gym.vector.VectorEnv,
    seed: int,
    greedy: bool = False,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor, np.ndarray]:
    """POMO rollouts: every instance toured from each of its ``n`` cities.

    ``envs`` has ``n`` environments per instance (``group_size=n``); environment ``j`` of a
    group is sent to city ``j`` first, a forced action without a log-probability. The encoder
    runs once per instance.

    Returns:
        ``(log_probs [N, n - 1], rewards [N], coords [N // n, n, 2])``.
    """
    n = envs.unwrapped.n
    obs, _ = envs.reset(seed=seed)
    coords = obs["coords"][::n]
    instances = coords.shape[0]
    encoding = model.encode(torch.as_tensor(coords)).index(
        torch.arange(instances).repeat_interleave(n)
    )
    obs, *_ = envs.step(np.tile(np.arange(n), instances))
    log_probs = []
    for _ in range(n - 1):
        obs = as_tensors(obs)
        logits = model.decode(encoding, obs["current"], obs["first"], obs["action_mask"])
        if greedy:
            actions = logits.argmax(-1)
        else:
            probs = torch.softmax(logits.detach(), -1)
            actions = torch.multinomial(probs, 1, generator=generator)[:, 0]
        log_probs.append(torch.log_softmax(logits, -1).gather(-1, actions[:, None])[:, 0])
        obs, rewards, terminated, _, _ = envs.step(actions.numpy())
    assert terminated.all()
    return torch.stack(log_probs, 1), torch.as_tensor(rewards, dtype=torch.float32), coords


@pytest.mark.slow
def test_attention_model_beats_nearest_neighbour_on_tsp10(one_thread):
    torch.manual_seed(0)
    n, instances, num_updates = 10, 32, 150

    def make(num_instances: int) -> gym.vector.VectorEnv:
        return gym.make_vec(
            "pgrad/TSP-v0",
            num_envs=num_instances * n,
            vectorization_mode="vector_entry_point",
            n=n,
            group_size=n,
        )

    envs, eval_envs = make(instances), make(200)
    model = AttentionModel(d_model=32, num_heads=4, num_layers=2, ff_hidden=128)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    generator = torch.Generator().manual_seed(0)

    def greedy_lengths() -> tuple[np.ndarray, np.ndarray]:
        """Greedy tour lengths of the model and nearest neighbour, [200, n], by start city."""
        with torch.no_grad():
            _, rewards, coords = tsp_rollout(model, eval_envs, seed=10**6, greedy=True)
        neighbour = [
            [tour_length(c, nearest_neighbour_tour(c, s)) for s in range(n)] for c in coords
        ]
        return -rewards.numpy().reshape(-1, n), np.array(neighbour)

    before, neighbour = greedy_lengths()
    start = time.perf_counter()
    for update in range(num_updates):
        log_probs, rewards, _ = tsp_rollout(model, envs, seed=update, generator=generator)
        # POMO's shared baseline: the mean reward of the instance's n tours.
        advantages = group_mean_advantage(rewards, n)
        loss = sequence_policy_loss(log_probs, advantages, None, "seq_sum")
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after, _ = greedy_lengths()
    print(
        f"TSP{n} greedy tour length from each start: nearest neighbour {neighbour.mean():.3f}, "
        f"model {before.mean():.3f} -> {after.mean():.3f} after {num_updates} updates, "
        f"{time.perf_counter() - start:.1f} s; best of {n} starts: nearest neighbour "
        f"{neighbour.min(1).mean():.3f}, model {after.min(1).mean():.3f}"
    )
    # The untrained model is far worse than nearest neighbour; trained, it is clearly better,
    # start city for start city.
    assert before.mean() > 1.1 * neighbour.mean()
    assert after.mean() < 0.97 * neighbour.mean()
    differences = (neighbour - after).mean(1)  # per instance: independent
    assert differences.mean() > 4 * differences.std() / np.sqrt(len(differences))
