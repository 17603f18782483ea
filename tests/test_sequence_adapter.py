"""Bring your own model: a Hugging Face causal LM as the policy of a token task, through
``pgrad.TokenPolicy``. A tiny GPT-2 is built from a config (random weights) and its tokenizer
from a local vocabulary whose ids differ from the environment's; nothing comes from a hub."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before transformers is imported: never reach a hub

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from pgrad import Sequence, TokenPolicy  # noqa: E402
from pgrad.obs import to_tensor  # noqa: E402

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

ENV_KWARGS = {"length": 2, "num_symbols": 4}


def word_level_tokenizer(words: list[str]) -> tokenizers.Tokenizer:
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import WhitespaceSplit

    tokenizer = tokenizers.Tokenizer(
        WordLevel({word: i for i, word in enumerate(words)}, unk_token="<unk>")
    )
    tokenizer.pre_tokenizer = WhitespaceSplit()
    return tokenizer


def tiny_gpt2(vocab_size: int, positions: int) -> torch.nn.Module:
    config = transformers.GPT2Config(
        vocab_size=vocab_size,
        n_positions=positions,
        n_embd=32,
        n_layer=2,
        n_head=4,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=0,
        eos_token_id=0,
    )
    return transformers.GPT2LMHeadModel(config)


def env_vocabulary() -> tuple[str, ...]:
    return gym.make("pgrad/Reverse-v0", **ENV_KWARGS).unwrapped.vocabulary


class GPT2Reverse(Sequence):
    """The user's side: an agent whose policy is their own language model."""

    name = "gpt2-reverse"
    env_id = "pgrad/Reverse-v0"
    defaults = {
        "env_kwargs": "length=2,num_symbols=4",
        "num_envs": 128,
        "group_size": 8,
        "learning_rate": 3e-3,
    }

    def make_policy(self, obs_space, action_space):
        # the model's vocabulary: extra words and another order than the environment's
        words = ["<unk>", "<bos>", *reversed(env_vocabulary())]
        tokenizer = word_level_tokenizer(words)
        ids = [tokenizer.token_to_id(token) for token in env_vocabulary()]
        model = tiny_gpt2(len(words), obs_space["tokens"].shape[0])
        return TokenPolicy(model, token_ids=ids)


def test_the_adapter_reads_the_models_logits_at_the_environments_tokens():
    torch.manual_seed(0)
    agent = GPT2Reverse(num_envs=8, group_size=2)
    policy = agent.policy
    assert not policy.model.training  # kept in eval mode: no dropout between sample and score
    policy.train()
    assert not policy.model.training
    envs = agent.make_env()
    obs, _ = envs.reset(seed=list(range(8)))
    obs, *_ = envs.step(np.full(8, 3))  # one token generated
    batch = to_tensor(obs, "cpu")
    with torch.no_grad():
        logits = policy.model(policy.token_ids[batch["tokens"]]).logits  # [B, L, V_model]
        last = logits[torch.arange(8), batch["length"] - 1][:, policy.token_ids]
        last = last.masked_fill(batch["action_mask"] == 0, torch.finfo(last.dtype).min)
        expected = torch.log_softmax(last, -1)
        torch.testing.assert_close(policy(batch).logits, expected, atol=1e-5, rtol=1e-5)


def test_the_models_own_cache_gives_the_full_forward_s_distributions():
    """GPT-2's cache driven by the policy (right-padded rows, one entry appended per step, rows
    that restart spliced in) against re-running every prefix, along a rollout of Copy with
    answers of 1 to 4 tokens, where rows end and restart at different steps."""
    from pgrad.rollout import Collector

    torch.manual_seed(0)
    vocabulary = gym.make("pgrad/Copy-v0", length=4).unwrapped.vocabulary

    class GPT2Copy(Sequence):
        def make_policy(self, obs_space, action_space):
            return TokenPolicy(tiny_gpt2(len(vocabulary), obs_space["tokens"].shape[0]))

    agent = GPT2Copy(env_id="pgrad/Copy-v0", env_kwargs="length=4,min_length=1", num_envs=8)
    assert agent.policy.use_cache
    seen = []

    class Recorder(torch.nn.Module):
        def forward(self, obs):
            dist = agent.policy(obs)
            with torch.inference_mode(False):
                seen.append(({k: v.clone() for k, v in obs.items()}, dist.logits.clone()))
            return dist

        def mode(self, dist):
            return dist.logits.argmax(-1)

        def to_env(self, actions):
            return actions.numpy()

    Collector(agent.envs, Recorder(), agent.device, seed=3).collect_steps(16)
    restarts = sum(
        int((now["length"] <= before["length"]).sum())
        for (before, _), (now, _) in zip(seen, seen[1:])
    )
    assert restarts >= 4
    for obs, logits in seen:
        with torch.enable_grad():
            expected = agent.policy(obs).logits.detach()
        torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-5)


def test_readme_hugging_face_example_builds_and_updates():
    from helpers import ROOT

    text = (ROOT / "README.md").read_text()
    code = text.split("<!-- hf-example -->", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)  # the README's own code, as written
    agent = namespace["GPT2Reverse"](num_envs=8, quiet=True)
    assert isinstance(agent.policy, TokenPolicy)
    before = {k: v.clone() for k, v in agent.policy.state_dict().items()}
    metrics = agent.update(agent.collect())
    assert np.isfinite(metrics["losses/policy_loss"])
    after = agent.policy.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)  # the update moved GPT-2


def test_a_tokenizer_s_ids_map_the_environment_s_tokens():
    words = ["<unk>", "<bos>", *reversed(env_vocabulary())]
    tokenizer = word_level_tokenizer(words)
    env = gym.make("pgrad/Reverse-v0", **ENV_KWARGS).unwrapped
    env.reset(seed=0)
    text = env.decode(env.prompt)
    ids = [tokenizer.token_to_id(token) for token in env.vocabulary]
    assert tokenizer.encode(text).ids == [ids[t] for t in env.prompt]


@pytest.mark.slow
def test_a_hugging_face_gpt2_learns_reverse_through_the_agent(tmp_path):
    torch.manual_seed(0)
    torch.set_num_threads(1)
    agent = GPT2Reverse(total_steps=128 * 2 * 80, seed=0, run_dir=tmp_path / "run", quiet=True)
    before = agent.evaluate(episodes=100)["mean_exact"]
    agent.train()
    after = agent.evaluate(episodes=100)["mean_exact"]
    print(f"GPT-2 on Reverse-2 of 4 symbols: greedy exact match {before:.2f} -> {after:.2f}")
    assert before < 0.2  # chance is (1/5)^2 = 0.04 per answer
    assert after > 0.9
    loaded = GPT2Reverse.load(next((tmp_path / "run" / "checkpoints").iterdir()))
    assert loaded.evaluate(episodes=100)["mean_exact"] == after
