"""Part (b) of ``bench/sequences.py``: TRL's GRPOTrainer and pgrad on Reverse-6, one tiny GPT-2.

Both train the same model, built from a config (GPT-2, 2 layers, width 64, 4 heads, no
dropout), with the same word-level tokenizer made from the environment's vocabulary, the same
estimator (GRPO: group-normalised rewards, ``num_iterations=1`` so no clipping and no KL), the
same loss aggregation (TRL's default ``dapo``, i.e. pgrad's ``token_mean``), group size 4, 256
completions per step, Adam(W) at lr 1e-3 with gradient clipping at 1. TRL runs on the CPU
(``use_cpu=True``) and offline (``HF_HUB_OFFLINE=1``); its completions are scored by the
environment's own reward (the fraction of answer positions right). Both are evaluated the same
way: pgrad's greedy evaluation on 500 held-out prompts, TRL's trained model wrapped by
``pgrad.TokenPolicy``.
"""

from __future__ import annotations

import argparse
import copy
import os
import tempfile
import time
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import gymnasium as gym  # noqa: E402
import torch  # noqa: E402

import pgrad.envs  # noqa: E402, F401  (registers pgrad/...)

LENGTH = 6
GROUP = 4
PER_STEP = 256
LEARNING_RATE = 1e-3
EVAL_PROMPTS = 500
EVAL_SEED = 777


def vocabulary() -> tuple[str, ...]:
    return gym.make("pgrad/Reverse-v0", length=LENGTH).unwrapped.vocabulary


def tokenizer() -> Any:
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import WhitespaceSplit
    from transformers import PreTrainedTokenizerFast

    words = vocabulary()
    raw = Tokenizer(WordLevel({w: i for i, w in enumerate(words)}, unk_token="<pad>"))
    raw.pre_tokenizer = WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=raw, pad_token="<pad>", eos_token="<eos>", padding_side="left"
    )


def gpt2(seed: int) -> torch.nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    words = vocabulary()
    config = GPT2Config(
        vocab_size=len(words),
        n_positions=2 * LENGTH + 2,
        n_embd=64,
        n_layer=2,
        n_head=4,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=words.index("<sep>"),
        eos_token_id=words.index("<eos>"),
        pad_token_id=words.index("<pad>"),
    )
    return GPT2LMHeadModel(config)


def greedy_exact(model: torch.nn.Module) -> float:
    """pgrad's greedy evaluation of ``model`` (wrapped by TokenPolicy) on held-out prompts."""
    from pgrad import Sequence, TokenPolicy

    class Wrapped(Sequence):
        def make_policy(self, obs_space, action_space):
            return TokenPolicy(model)

    agent = Wrapped(env_id="pgrad/Reverse-v0", env_kwargs=f"length={LENGTH}", num_envs=GROUP)
    return agent.evaluate(EVAL_PROMPTS, seed=EVAL_SEED)["mean_exact"]


def pgrad_agent(seed: int, run_dir: str, native: bool = False) -> Any:
    """pgrad's sequence agent on Reverse with TRL's settings (group advantages, DAPO's token
    mean), the GPT-2 as its policy (or, ``native``, its own CausalTransformer of the same size:
    2 layers, width 64, 4 heads, pre-norm, GELU)."""
    from pgrad import Sequence, TokenPolicy

    class GPT2Reverse(Sequence):
        def make_policy(self, obs_space, action_space):
            if native:
                torch.manual_seed(seed)
                return super().make_policy(obs_space, action_space)
            return TokenPolicy(gpt2(seed))

    return GPT2Reverse(
        env_id="pgrad/Reverse-v0",
        env_kwargs=f"length={LENGTH}",
        baseline="group",
        aggregation="token_mean",
        group_size=GROUP,
        num_envs=PER_STEP,
        learning_rate=LEARNING_RATE,
        seed=seed,
        total_steps=10**9,
        checkpoint_every=0,
        run_dir=run_dir,
        quiet=True,
    )


def run_pgrad(sequences: int, seed: int, native: bool = False) -> dict[str, float]:
    """pgrad's sequence agent with the GPT-2 (or, ``native``, its own transformer)."""
    with tempfile.TemporaryDirectory() as run_dir:
        agent = pgrad_agent(seed, run_dir, native)

        def stop(agent: Any, metrics: dict[str, float]) -> None:
            if agent.updates * PER_STEP >= sequences:
                agent.request_stop()

        start = time.perf_counter()
        agent.train(callback=stop)
        seconds = time.perf_counter() - start
        exact = agent.evaluate(EVAL_PROMPTS, seed=EVAL_SEED)["mean_exact"]
    return {"seconds": seconds, "sequences": agent.updates * PER_STEP, "exact": exact}


def reverse_reward(prompts: list[str], completions: list[str], **kwargs: Any) -> list[float]:
    """The environment's reward: the fraction of the reversed prompt's positions right."""
    rewards = []
    for prompt, completion in zip(prompts, completions):
        answer = prompt.split()[:-1][::-1]  # the symbols before <sep>, reversed
        produced = completion.split()
        if "<eos>" in produced:
            produced = produced[: produced.index("<eos>")]
        right = sum(p == a for p, a in zip(produced, answer))
        rewards.append(right / len(answer))
    return rewards


def run_trl(
    steps: int, seed: int, target: float | None = None, check_every: int = 10
) -> dict[str, float]:
    """TRL's GRPOTrainer for ``steps`` steps; with ``target``, evaluated every ``check_every``
    steps (the clock paused) and stopped once its greedy exact match reaches ``target``."""
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    env = gym.make("pgrad/Reverse-v0", length=LENGTH).unwrapped
    prompts = []
    for i in range(steps * PER_STEP // GROUP):
        env.reset(seed=10_000 + i)
        prompts.append(env.decode([*env.prompt, 1]))  # "8 9 6 5 4 3 <sep>"
    found: dict[str, float] = {}
    paused = [0.0]

    class Target(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kwargs):
            if target is None or state.global_step % check_every:
                return
            start = time.perf_counter()
            was_training = model.training
            exact = greedy_exact(copy.deepcopy(model))
            model.train(was_training)
            paused[0] += time.perf_counter() - start
            found.update(steps=state.global_step, exact=exact)
            if exact >= target:
                control.should_training_stop = True

    with tempfile.TemporaryDirectory() as output_dir:
        config = GRPOConfig(
            output_dir=output_dir,
            use_cpu=True,
            seed=seed,
            learning_rate=LEARNING_RATE,
            lr_scheduler_type="constant",
            weight_decay=0.0,
            max_grad_norm=1.0,
            per_device_train_batch_size=PER_STEP,
            gradient_accumulation_steps=1,
            num_generations=GROUP,
            max_completion_length=LENGTH + 1,
            temperature=1.0,
            beta=0.0,
            num_iterations=1,
            max_steps=steps,
            logging_steps=max(steps // 5, 1),
            save_strategy="no",
            report_to="none",
            disable_dropout=True,
            dataloader_num_workers=0,
        )
        trainer = GRPOTrainer(
            model=gpt2(seed),
            reward_funcs=reverse_reward,
            args=config,
            train_dataset=Dataset.from_dict({"prompt": prompts}),
            processing_class=tokenizer(),
            callbacks=[Target()],
        )
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start - paused[0]
        done = trainer.state.global_step
        exact = greedy_exact(trainer.model) if target is None else found.get("exact", 0.0)
    return {"seconds": seconds, "sequences": done * PER_STEP, "exact": exact}


def part_b(args: argparse.Namespace) -> None:
    from sequences import load

    torch.set_num_threads(args.threads)
    sequences = args.trl_steps * PER_STEP
    print(
        f"## (b) TRL's GRPOTrainer and pgrad on Reverse-{LENGTH}\n\n{load()}; GPT-2 2 x 64, "
        f"group {GROUP}, {PER_STEP} completions per step, {args.trl_steps} steps, "
        f"{args.threads} thread(s)\n"
    )
    trl = run_trl(args.trl_steps, seed=1)
    print(f"<!-- TRL: {trl} -->", flush=True)
    ours = run_pgrad(sequences, seed=1)
    print(f"<!-- pgrad: {ours} -->", flush=True)
    native = run_pgrad(sequences, seed=1, native=True)
    print(f"<!-- pgrad, CausalTransformer: {native} -->", flush=True)
    runs = (
        ("TRL GRPOTrainer, GPT-2", trl),
        ("pgrad, the same GPT-2", ours),
        ("pgrad, its CausalTransformer of that size", native),
    )
    print("| library, model | completions | training s | completions/s | vs TRL | greedy exact |")
    print("|---|---|---|---|---|---|")
    base = trl["sequences"] / trl["seconds"]
    for name, r in runs:
        rate = r["sequences"] / r["seconds"]
        print(
            f"| {name} | {r['sequences']:,} | {r['seconds']:.1f} | {rate:.0f} | "
            f"{rate / base:.1f}x | {r['exact']:.3f} |"
        )
    print(f"\n{load()}")
    if args.to_90:
        cap = args.to_90_steps
        print(f"\nTime to 90% greedy exact (checked every 10 steps, at most {cap} steps):\n")
        trl_90 = run_trl(cap, seed=1, target=0.9)
        print(f"<!-- TRL to 90%: {trl_90} -->", flush=True)
        ours_90 = run_pgrad_to(0.9, seed=1, max_updates=cap)
        print(f"<!-- pgrad to 90%: {ours_90} -->", flush=True)
        print("| library | completions | training s | greedy exact |\n|---|---|---|---|")
        for name, r in (("TRL GRPOTrainer", trl_90), ("pgrad", ours_90)):
            print(f"| {name} | {r['sequences']:,} | {r['seconds']:.1f} | {r['exact']:.3f} |")
        print(f"\n{load()}")


def run_pgrad_to(
    target: float, seed: int, max_updates: int, check_every: int = 10
) -> dict[str, float]:
    """pgrad's GPT-2 trained until its greedy exact match reaches ``target`` (checked every
    ``check_every`` updates; evaluation time excluded)."""
    with tempfile.TemporaryDirectory() as run_dir:
        agent = pgrad_agent(seed, run_dir)
        trained, clock = 0.0, time.perf_counter()
        found: dict[str, float] = {}

        def check(agent: Any, metrics: dict[str, float]) -> None:
            nonlocal trained, clock
            trained += time.perf_counter() - clock
            if agent.updates % check_every == 0:
                exact = agent.evaluate(EVAL_PROMPTS, seed=EVAL_SEED)["mean_exact"]
                if exact >= target or agent.updates >= max_updates:
                    found.update(seconds=trained, sequences=agent.updates * PER_STEP, exact=exact)
                    agent.request_stop()
            clock = time.perf_counter()

        agent.train(callback=check)
    return found


__all__ = ["part_b", "reverse_reward"]
