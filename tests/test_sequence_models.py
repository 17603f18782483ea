"""The causal transformer (full pass against the KV cache) and the attention model for TSP."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from pgrad.attention_model import AttentionModel
from pgrad.transformer import CausalTransformer, generate, mask_logits


def batched_obs(env_id: str, num: int, steps: list[int] | None = None, **kwargs) -> dict:
    """A batch of real observations as tensors, after ``steps`` actions (the same in each env)."""
    envs = gym.vector.SyncVectorEnv([lambda: gym.make(env_id, **kwargs)] * num)
    obs, _ = envs.reset(seed=list(range(num)))
    for action in steps or []:
        obs, *_ = envs.step(np.full(num, action))
    return {key: torch.as_tensor(value) for key, value in obs.items()}


@pytest.fixture
def transformer() -> CausalTransformer:
    torch.manual_seed(0)
    return CausalTransformer(vocab_size=13, max_length=12, d_model=32, num_heads=4).eval()


# --- CausalTransformer --------------------------------------------------------------------------


def test_forward_shape_and_causality(transformer):
    tokens = torch.randint(0, 13, (3, 9))
    logits = transformer(tokens)
    assert logits.shape == (3, 9, 13)
    changed = tokens.clone()
    changed[:, 5:] = (changed[:, 5:] + 1) % 13
    # Positions before the change see nothing of it; position 5 does.
    torch.testing.assert_close(transformer(changed)[:, :5], logits[:, :5])
    assert not torch.allclose(transformer(changed)[:, 5], logits[:, 5])


def test_cached_decoding_matches_the_full_pass(transformer):
    torch.manual_seed(1)
    tokens = torch.randint(3, 13, (5, 12))
    lengths = torch.tensor([3, 5, 1, 4, 6])  # prompts of different lengths in one batch
    rows = torch.arange(5)
    with torch.no_grad():
        full = transformer(tokens)
        logits, cache = transformer.prefill(tokens[:, :6], lengths)
        torch.testing.assert_close(logits, full[rows, lengths - 1], atol=1e-5, rtol=1e-5)
        positions = lengths.clone()
        for _ in range(6):
            logits = transformer.decode(cache, tokens[rows, positions])
            torch.testing.assert_close(logits, full[rows, positions], atol=1e-5, rtol=1e-5)
            positions += 1
        assert cache.positions.tolist() == positions.tolist()


def test_generate_with_and_without_cache_agree_and_respect_the_mask(transformer):
    prompts = torch.randint(3, 13, (8, 4))
    lengths = torch.tensor([4, 2, 3, 1, 4, 4, 2, 3])
    mask = torch.ones(13, dtype=torch.int8)
    mask[[0, 1, 5, 6]] = 0
    cached = generate(transformer, prompts, lengths, 6, greedy=True, action_mask=mask)
    full = generate(
        transformer, prompts, lengths, 6, greedy=True, action_mask=mask, use_cache=False
    )
    assert cached.shape == (8, 6) and torch.equal(cached, full)
    sampled = generate(
        transformer,
        prompts,
        lengths,
        6,
        action_mask=mask,
        generator=torch.Generator().manual_seed(0),
    )
    assert not torch.isin(sampled, torch.tensor([0, 1, 5, 6])).any()


def test_policy_logits_read_token_env_observations(transformer):
    obs = batched_obs("pgrad/Reverse-v0", 4, steps=[3, 4], length=4)  # [4, 9] tokens, length 7
    assert obs["tokens"].shape == (4, 9) and obs["length"].tolist() == [7] * 4
    logits = transformer.policy_logits(obs)
    assert logits.shape == (4, 13)
    probs = torch.softmax(logits, -1)
    assert (probs[:, [0, 1]] == 0).all()  # <pad> and <sep> are masked: probability exactly 0
    expected = transformer(obs["tokens"])[:, 6]
    torch.testing.assert_close(logits[:, 2:], expected[:, 2:])


def test_mask_logits():
    logits = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    masked = mask_logits(logits, torch.tensor([[1, 0, 1], [0, 0, 0]]))
    probs = torch.softmax(masked, -1)
    assert probs[0, 1] == 0 and torch.isfinite(masked).all()
    torch.testing.assert_close(probs[1], torch.full((3,), 1 / 3))  # nothing legal: no nan


def test_transformer_validation(transformer):
    with pytest.raises(ValueError, match="max_length=12"):
        transformer(torch.zeros(1, 13, dtype=torch.long))
    _, cache = transformer.prefill(torch.zeros(1, 12, dtype=torch.long), torch.tensor([12]))
    with pytest.raises(ValueError, match="exceed max_length=12"):
        transformer.decode(cache, torch.zeros(1, dtype=torch.long))
    with pytest.raises(ValueError, match="vocab_size must be an integer >= 1"):
        CausalTransformer(0, 4)
    with pytest.raises(ValueError, match="d_model=30 must be a multiple of num_heads=4"):
        CausalTransformer(5, 4, d_model=30)


# --- AttentionModel -----------------------------------------------------------------------------


@pytest.fixture
def attention_model() -> AttentionModel:
    torch.manual_seed(0)
    return AttentionModel(d_model=32, num_heads=4, num_layers=2, ff_hidden=64)


def tsp_obs(num: int, n: int, steps: int) -> dict:
    envs = gym.make_vec("pgrad/TSP-v0", num_envs=num, vectorization_mode="vector_entry_point", n=n)
    obs, _ = envs.reset(seed=0)
    rng = np.random.default_rng(0)
    tours = np.array([rng.permutation(n) for _ in range(num)])
    for t in range(steps):
        obs, *_ = envs.step(tours[:, t])
    return {key: torch.as_tensor(value) for key, value in obs.items()}


def test_attention_model_masks_visited_cities(attention_model):
    obs = tsp_obs(num=6, n=7, steps=3)
    logits = attention_model(obs)
    assert logits.shape == (6, 7)
    probs = torch.softmax(logits, -1)
    visited = obs["action_mask"] == 0
    assert visited.sum() == 18 and (probs[visited] == 0).all()
    torch.testing.assert_close(probs.sum(-1), torch.ones(6))
    # Logits of legal cities are clipped by C * tanh.
    assert logits[~visited].abs().max() <= attention_model.clip
    samples = torch.multinomial(
        probs, 500, replacement=True, generator=torch.Generator().manual_seed(0)
    )
    assert not visited.gather(1, samples).any()


def test_attention_model_first_step_uses_placeholders(attention_model):
    obs = tsp_obs(num=3, n=5, steps=0)
    assert obs["action_mask"].all()
    logits = attention_model(obs)
    # current and first mean nothing before the first city: changing them changes nothing.
    moved = {**obs, "current": torch.tensor([4, 2, 1]), "first": torch.tensor([3, 3, 0])}
    torch.testing.assert_close(attention_model(moved), logits)
    # After the first city they matter.
    later = tsp_obs(num=3, n=5, steps=2)
    swapped = {**later, "first": later["current"], "current": later["first"]}
    assert not torch.allclose(attention_model(swapped), attention_model(later))


def test_encode_once_decode_per_step_equals_forward(attention_model):
    obs = tsp_obs(num=4, n=6, steps=2)
    encoding = attention_model.encode(obs["coords"][[0, 2]]).index(torch.tensor([0, 0, 1, 1]))
    rows = torch.tensor([0, 0, 2, 2])
    decoded = attention_model.decode(
        encoding, obs["current"][rows], obs["first"][rows], obs["action_mask"][rows]
    )
    torch.testing.assert_close(decoded, attention_model({k: v[rows] for k, v in obs.items()}))


def test_attention_model_gradient_flows_and_validation(attention_model):
    obs = tsp_obs(num=2, n=4, steps=1)
    torch.log_softmax(attention_model(obs), -1)[:, 0].sum().backward()
    assert all(p.grad is not None for p in attention_model.parameters())
    # A finished tour (every city visited) still gives finite logits, not nan.
    assert torch.isfinite(attention_model(tsp_obs(num=2, n=4, steps=4))).all()
    with pytest.raises(ValueError, match=r"coords must be \[B, n, 2\]"):
        attention_model.encode(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="must be a multiple of num_heads"):
        AttentionModel(d_model=30, num_heads=4)
    with pytest.raises(ValueError, match="clip must be > 0"):
        AttentionModel(clip=0.0)


def test_glimpse_ignores_visited_cities_and_logits_are_clipped(attention_model):
    obs = tsp_obs(num=4, n=6, steps=3)
    encoding = attention_model.encode(obs["coords"])
    logits = attention_model.decode(encoding, obs["current"], obs["first"], obs["action_mask"])
    # What a visited city offers the glimpse (its keys and values) cannot matter.
    visited = (obs["action_mask"] == 0).nonzero()
    for name in ("glimpse_keys", "glimpse_values"):
        tensor = getattr(encoding, name).clone()
        tensor[visited[:, 0], :, visited[:, 1]] = 100.0 * torch.randn(len(visited), 4, 8)
        changed = attention_model.decode(
            type(encoding)(**{**encoding.__dict__, name: tensor}),
            obs["current"],
            obs["first"],
            obs["action_mask"],
        )
        torch.testing.assert_close(changed, logits)
    # Huge compatibilities still give logits within +-C.
    encoding.logit_keys = 1e4 * encoding.logit_keys
    huge = attention_model.decode(encoding, obs["current"], obs["first"], obs["action_mask"])
    legal = obs["action_mask"] == 1
    assert huge[legal].abs().max() <= attention_model.clip
    assert huge[legal].abs().max() > 0.9 * attention_model.clip
