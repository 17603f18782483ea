"""Tokens per second when sampling from pgrad's CausalTransformer, with and without its KV cache.

    python bench/generation.py [--batch 256] [--length 16] [--threads 1] [--repeats 5]

Samples ``--length`` tokens for ``--batch`` one-token prompts, once with the key-value cache
(one batched forward of one position per token) and once re-running the whole prefix each
step; prints the median tokens per second of each over ``--repeats`` runs, and checks that
greedy decoding gives the same tokens both ways.

Then the same through the agent: the ``sequence`` agent's collector on ``pgrad/Copy-v0``
(prompts of ``--length`` symbols, answers as long, ``--batch`` environments), its policy
(``pgrad.TokenPolicy``) with and without the cache it keeps between the collector's steps; and a
whole update (collect, prepare, loss, step) each way.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from pgrad.transformer import CausalTransformer, generate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--length", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--d-model", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = CausalTransformer(13, args.length + 1, d_model=args.d_model, num_layers=args.layers)
    model.eval()
    prompts = torch.randint(3, 13, (args.batch, 1))
    lengths = torch.ones(args.batch, dtype=torch.long)
    same = torch.equal(
        generate(model, prompts, lengths, args.length, greedy=True, use_cache=True),
        generate(model, prompts, lengths, args.length, greedy=True, use_cache=False),
    )
    print(
        f"batch {args.batch}, {args.length} tokens, d_model {args.d_model}, {args.layers} layers, "
        f"{args.threads} thread(s); greedy tokens identical with and without cache: {same}"
    )
    print("| decoding | tokens/s (median) |\n|---|---|")
    for use_cache in (True, False):
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            generate(model, prompts, lengths, args.length, use_cache=use_cache)
            times.append(time.perf_counter() - start)
        rate = args.batch * args.length / statistics.median(times)
        print(f"| {'KV cache' if use_cache else 'full prefix'} | {rate:,.0f} |")
    through_the_agent(args)


def through_the_agent(args: argparse.Namespace) -> None:
    from pgrad import Sequence

    agent = Sequence(
        env_id="pgrad/Copy-v0",
        env_kwargs=f"length={args.length}",
        num_envs=args.batch,
        d_model=args.d_model,
        num_layers=args.layers,
        torch_threads=args.threads,
        quiet=True,
    )
    print(
        f"\nthrough the agent: pgrad/Copy-v0 length {args.length} (sequences of "
        f"{2 * args.length + 1} tokens), {args.batch} environments\n"
    )
    print("| policy | collect: generated tokens/s | whole update: generated tokens/s |")
    print("|---|---|---|")
    for use_cache in (True, False):
        agent.policy.use_cache = use_cache
        agent.policy.clear_cache()
        collect, whole = [], []
        for _ in range(args.repeats):
            start = time.perf_counter()
            rollout = agent.collect()
            collect.append(float(rollout.mask.sum()) / (time.perf_counter() - start))
            agent.update(rollout)
            whole.append(float(rollout.mask.sum()) / (time.perf_counter() - start))
        print(
            f"| {'KV cache' if use_cache else 'full prefix'} | "
            f"{statistics.median(collect):,.0f} | {statistics.median(whole):,.0f} |"
        )


if __name__ == "__main__":
    main()
