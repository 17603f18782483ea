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

On a shared machine those ratios spread widely, so the recorders' own cost is also timed
alone: one vector step with precomputed actions, bare and under each recorder, the minimum
over ``--rounds`` repeats of 200 steps (the least disturbed), against the median time of one
collection step (policy call included) from the rounds above.

Usage::

    nice -n 10 python bench/raw_returns.py            # 15 rounds of 1 s each, about a minute
    nice -n 10 python bench/raw_returns.py --rounds 30 --num-envs 256
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
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
    step_us = recorder_cost(args.num_envs, args.rounds)
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
    collection_us = args.num_envs / statistics.median(rates["none"]) * 1e6
    print(f"\none vector step alone (min of {args.rounds} x 200 steps); a collection step: ")
    print(f"{collection_us:.0f} us (median, policy call included)\n")
    print("| recorder | us per vector step | added us | share of a collection step |")
    print("|---|---|---|---|")
    for kind in kinds:
        added = step_us[kind] - step_us["none"]
        print(f"| {kind} | {step_us[kind]:.1f} | {added:+.1f} | {added / collection_us:+.1%} |")


def recorder_cost(num_envs: int, repeats: int) -> dict[str, float]:
    """Microseconds per vector step, bare and under each recorder: the minimum over
    ``repeats`` interleaved runs of 200 steps with the same precomputed random actions."""
    base = make_vector_env("CartPole-v1", num_envs).env
    envs = {
        "none": base,
        "pgrad": VectorEpisodeStatistics(base),
        "gymnasium": RecordEpisodeStatistics(base),
    }
    for env in envs.values():
        env.reset(seed=0)  # each wrapper's state; the base env is shared, which is fine here
    rng = np.random.default_rng(0)
    actions = rng.integers(0, 2, (200, num_envs))
    best = dict.fromkeys(envs, float("inf"))
    for _ in range(repeats):
        for kind, env in envs.items():
            start = time.perf_counter()
            for a in actions:
                env.step(a)
            best[kind] = min(best[kind], (time.perf_counter() - start) / len(actions) * 1e6)
    return best


if __name__ == "__main__":
    main()
