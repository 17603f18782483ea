"""What recording raw returns costs: collection throughput of 1,024 numpy-vectorised CartPoles.

Three collectors on ``CartPole-v1`` (``vectorization=auto``: Gymnasium's ``CartPoleVectorEnv``),
each with the same policy (64x64, one torch thread), collecting ``T``-step rollouts:

* ``none``: the bare vector environment;
* ``pgrad``: as ``make_vector_env`` builds it, with ``VectorEpisodeStatistics`` innermost;
* ``gymnasium``: the bare environment under ``gymnasium.wrappers.vector.RecordEpisodeStatistics``.

In each round every collector collects for about ``--seconds`` seconds, in an order rotated from
round to round, so that the machine's drift hits them alike. Printed: each one's median env
steps per second over the rounds with the range, and the median of the per-round ratios to
``none`` with their range.

Usage::

    nice -n 10 python bench/raw_returns.py            # 15 rounds of 1 s each, about a minute
    nice -n 10 python bench/raw_returns.py --rounds 30 --num-envs 256
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from gymnasium.wrappers.vector import RecordEpisodeStatistics

from pgrad.encoders import encoder_for
from pgrad.envs_util import make_vector_env
from pgrad.episode_stats import VectorEpisodeStatistics
from pgrad.policies import policy_for
from pgrad.rollout import Collector


def build(kind: str, num_envs: int, num_steps: int) -> Collector:
    envs = make_vector_env("CartPole-v1", num_envs)
    assert isinstance(envs, VectorEpisodeStatistics)
    if kind != "pgrad":
        envs = envs.env  # the bare CartPoleVectorEnv
    if kind == "gymnasium":
        envs = RecordEpisodeStatistics(envs)
    policy = policy_for(
        encoder_for(envs.single_observation_space), envs.single_action_space, (64, 64), "tanh"
    )
    collector = Collector(envs, policy, torch.device("cpu"), seed=0)
    collector.collect_steps(num_steps)  # warm-up
    return collector


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-envs", type=int, default=1024)
    parser.add_argument("--num-steps", type=int, default=16, help="rollout length T")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--seconds", type=float, default=1.0, help="per collector and round")
    args = parser.parse_args()
    torch.set_num_threads(1)
    kinds = ["none", "pgrad", "gymnasium"]
    collectors = {k: build(k, args.num_envs, args.num_steps) for k in kinds}
    rates: dict[str, list[float]] = {k: [] for k in kinds}
    for round_ in range(args.rounds):
        for kind in kinds[round_ % 3 :] + kinds[: round_ % 3]:
            collector, steps, start = collectors[kind], 0, time.perf_counter()
            while time.perf_counter() - start < args.seconds:
                steps += collector.collect_steps(args.num_steps).num_steps
            rates[kind].append(steps / (time.perf_counter() - start))
    print(f"CartPole-v1, {args.num_envs} envs x {args.num_steps} steps, {args.rounds} rounds")
    print("| recorder | env steps/s, median [min, max] | ratio to none, median [min, max] |")
    print("|---|---|---|")
    for kind in kinds:
        ratios = [a / b for a, b in zip(rates[kind], rates["none"], strict=True)]
        print(
            f"| {kind} | {statistics.median(rates[kind]):,.0f} "
            f"[{min(rates[kind]):,.0f}, {max(rates[kind]):,.0f}] | "
            f"{statistics.median(ratios):.3f} [{min(ratios):.3f}, {max(ratios):.3f}] |"
        )


if __name__ == "__main__":
    main()
