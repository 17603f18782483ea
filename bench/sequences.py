"""Sequences through the agent: estimators on token tasks, a TRL peer, and TSP tours.

    python bench/sequences.py --part a [--seeds 3] [--sequences 40000] [--tasks ...]
    python bench/sequences.py --part b [--trl-steps 30] [--to-90 --to-90-steps 200]
    python bench/sequences.py --part c [--minutes 3] [--threads 2]
    python bench/sequences.py --part g [--sequences 150000] [--goals "sort8 rloo;add3 rloo"]

(a) **Estimators on tokens.** REINFORCE without a baseline and with a moving average, RLOO,
GRPO, Dr. GRPO and REINFORCE++ (``group_size`` 4), and PPO's clipped ratio on RLOO's
advantages (``seq_clip``: 4 epochs of 4 minibatches of whole sequences, or of the whole batch),
each trained by the ``sequence`` agent on Reverse (length 6), Sort (length 8) and Addition
(3 + 3 digits, least significant digit first) for the same number of sequences, with the same
model and learning rate, ``--seeds`` seeds each.
Reported: the greedy exact-match rate and per-token accuracy on 500 held-out prompts at the
end, and the sequences sampled until a training batch's mean per-token accuracy (its mean
reward) first reached 0.9.

(b) **A peer: TRL's GRPOTrainer** on Reverse-6 with the same tiny model (GPT-2, 2 layers, width
64, built from a config) and a local word-level tokenizer, on the CPU and offline, with the same
group size and sequences per step as pgrad's run of the same model through
``pgrad.TokenPolicy``. Reported: completions per second and greedy exact match at equal
sequences, and wall-clock time to 90% exact where it is reached.

(c) **Tours.** The TSP preset (POMO, the attention model) trained for ``--minutes`` on TSP20,
evaluated on 1,000 fixed random instances (seeded) every ``--eval-every`` seconds: the mean tour
length and its gap to 3.84 (the optimum's mean on uniform TSP20), greedy from one start and the
best of all 20 starts, next to nearest neighbour and farthest insertion on the same instances.

(g) **Longer runs toward the goals**: Sort-8 to 0.99 per-token accuracy and Addition 3 + 3 to
90% exact, the latter plain, with a curriculum over operand length (``min_digits=1``: each
prompt's operands have 1 to 3 significant digits, evaluated on full-length ones) and with the
answer written most significant digit first.

Every part prints markdown tables and the machine's load average before and after.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

TASKS: dict[str, tuple[str, str]] = {
    "reverse6": ("pgrad/Reverse-v0", "length=6"),
    "sort8": ("pgrad/Sort-v0", "length=8"),
    "add3": ("pgrad/Addition-v0", "digits=3,least_significant_first=true"),
}
ESTIMATORS: dict[str, str] = {
    "none": "REINFORCE, no baseline",
    "ema": "REINFORCE, moving average",
    "loo": "RLOO (k=4)",
    "group": "GRPO",
    "drgrpo": "Dr. GRPO",
    "rpp": "REINFORCE++",
    "ppo_clip": "PPO-clip (RLOO, 4 epochs x 4 minibatches)",
    "ppo_clip_1mb": "PPO-clip (RLOO, 4 epochs x 1 batch)",
}
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "ppo_clip": ("loo", {"seq_clip": True, "update_epochs": 4, "num_minibatches": 4}),
    "ppo_clip_1mb": ("loo", {"seq_clip": True, "update_epochs": 4}),
}
"""Rows that are a baseline plus other settings: (baseline, config overrides)."""
EVAL_PROMPTS = 500
EVAL_SEED = 777
OPTIMUM_TSP20 = 3.84


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (1 min), {five:.1f} (5 min) on {os.cpu_count()} cores"


def mean_sd(values: list[float], digits: int = 2) -> str:
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


# -- (a) estimators ------------------------------------------------------------------------------
def held_out(policy: torch.nn.Module, env_id: str, env_kwargs: str) -> tuple[float, float]:
    """Greedy exact match and per-token accuracy on ``EVAL_PROMPTS`` held-out prompts."""
    from pgrad.config import parse_kwargs
    from pgrad.envs_util import derive_seed, make_vector_env
    from pgrad.rollout import Collector

    envs = make_vector_env(env_id, EVAL_PROMPTS, env_kwargs=parse_kwargs(env_kwargs, "kwargs"))
    collector = Collector(envs, policy, torch.device("cpu"), EVAL_SEED, deterministic=True)
    seeds = [derive_seed(EVAL_SEED, i) for i in range(EVAL_PROMPTS)]
    rollout = collector.collect_episodes(seeds, 100)
    envs.close()
    return float(np.mean(rollout.episode_infos["exact"])), float(np.mean(rollout.episode_returns))


def train_tokens(
    env_id: str,
    env_kwargs: str,
    baseline: str,
    seed: int,
    sequences: int,
    extra: dict[str, Any] | None = None,
    eval_kwargs: str | None = None,
) -> dict[str, Any]:
    """One run of the sequence agent; returns its curve and held-out greedy scores (on
    ``eval_kwargs``' environment when given, e.g. the full task after a curriculum)."""
    from pgrad import Sequence

    config = {
        "env_id": env_id,
        "env_kwargs": env_kwargs,
        "baseline": baseline,
        "group_size": 4,
        "num_envs": 256,
        "learning_rate": 1e-3,
        "seed": seed,
        "total_steps": 10**9,
        "checkpoint_every": 0,
        **(extra or {}),
    }
    curve: list[tuple[int, float, float]] = []
    reached: list[int] = []
    with tempfile.TemporaryDirectory() as run_dir:
        agent = Sequence(run_dir=run_dir, quiet=True, **config)
        collect = agent.collect

        def tracked_collect():
            rollout = collect()
            sequences_done = (agent.updates + 1) * agent.config.num_envs
            accuracy = float(np.mean(rollout.episode_returns))
            exact = float(np.mean(rollout.episode_infos.get("exact", [0.0])))
            curve.append((sequences_done, accuracy, exact))
            if accuracy >= 0.9 and not reached:
                reached.append(sequences_done)
            return rollout

        agent.collect = tracked_collect  # type: ignore[method-assign]

        def stop(agent: Any, metrics: dict[str, float]) -> None:
            if agent.updates * agent.config.num_envs >= sequences:
                agent.request_stop()

        start = time.perf_counter()
        agent.train(callback=stop)
        seconds = time.perf_counter() - start
        exact, accuracy = held_out(agent.policy, env_id, eval_kwargs or env_kwargs)
    return {
        "exact": exact,
        "accuracy": accuracy,
        "to_90": reached[0] if reached else None,
        "seconds": seconds,
        "curve": curve,
    }


def part_a(args: argparse.Namespace) -> None:
    tasks = args.tasks.split(",")
    estimators = args.estimators.split(",")
    print(
        f"## (a) estimators on tokens\n\n{load()}; {args.sequences:,} sequences per run, "
        f"256 per update, lr 1e-3, CausalTransformer d=64 x 2 layers, {args.threads} thread\n"
    )
    results: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for task in tasks:
        env_id, env_kwargs = TASKS[task]
        for estimator in estimators:
            for seed in range(1, args.seeds + 1):
                baseline, extra = VARIANTS.get(estimator, (estimator, {}))
                run = train_tokens(env_id, env_kwargs, baseline, seed, args.sequences, extra)
                results.setdefault((task, estimator), []).append(run)
                to_90 = f"{run['to_90']:,}" if run["to_90"] else "not reached"
                print(
                    f"<!-- {task} {estimator} seed {seed}: exact {run['exact']:.3f}, "
                    f"token accuracy {run['accuracy']:.3f}, 90% at {to_90}, "
                    f"{run['seconds']:.0f} s -->",
                    flush=True,
                )
    header = " | ".join(f"{t}: greedy exact | {t}: sequences to 90%" for t in tasks)
    print(f"\n| estimator | {header} |")
    print("|---|" + "---|---|" * len(tasks))
    for estimator in estimators:
        cells = []
        for task in tasks:
            runs = results[(task, estimator)]
            reached = [r["to_90"] for r in runs if r["to_90"]]
            to_90 = (
                f"{statistics.median(reached):,.0f} ({len(reached)}/{len(runs)})"
                if reached
                else f"not reached (0/{len(runs)})"
            )
            cells += [mean_sd([r["exact"] for r in runs]), to_90]
        print(f"| {ESTIMATORS[estimator]} | " + " | ".join(cells) + " |")
    print("\nGreedy per-token accuracy at the end (mean ± sd over seeds):\n")
    print("| estimator | " + " | ".join(tasks) + " |")
    print("|---|" + "---|" * len(tasks))
    for estimator in estimators:
        cells = [mean_sd([r["accuracy"] for r in results[(t, estimator)]], 3) for t in tasks]
        print(f"| {ESTIMATORS[estimator]} | " + " | ".join(cells) + " |")
    seconds = [r["seconds"] for runs in results.values() for r in runs]
    print(f"\n{len(seconds)} runs, {sum(seconds) / 60:.1f} min of training; {load()}")


# -- (g) the goals: Sort-8 to 0.99 per token, Addition 3 + 3 to 90% exact -----------------------
GOALS: dict[str, tuple[str, str, str, dict[str, Any], str | None]] = {
    "sort8 rloo": ("pgrad/Sort-v0", "length=8", "loo", {}, None),
    "add3 rloo": ("pgrad/Addition-v0", TASKS["add3"][1], "loo", {}, None),
    "add3 rloo, curriculum": (
        "pgrad/Addition-v0",
        TASKS["add3"][1] + ",min_digits=1",
        "loo",
        {},
        TASKS["add3"][1],
    ),
    "add3 rloo, most significant first": ("pgrad/Addition-v0", "digits=3", "loo", {}, None),
}


def part_g(args: argparse.Namespace) -> None:
    names = args.goals.split(";") if args.goals else list(GOALS)
    print(f"## (g) longer runs toward the goals\n\n{load()}; {args.sequences:,} sequences each\n")
    print("| run | greedy exact | greedy per-token accuracy | sequences to 90% | minutes |")
    print("|---|---|---|---|---|")
    for name in names:
        env_id, env_kwargs, baseline, extra, eval_kwargs = GOALS[name]
        run = train_tokens(env_id, env_kwargs, baseline, 1, args.sequences, extra, eval_kwargs)
        to_90 = f"{run['to_90']:,}" if run["to_90"] else "not reached"
        print(
            f"| {name} | {run['exact']:.3f} | {run['accuracy']:.3f} | {to_90} | "
            f"{run['seconds'] / 60:.1f} |",
            flush=True,
        )
    print(f"\n{load()}")


# -- (c) tours -----------------------------------------------------------------------------------
CHUNK = 200
"""Instances per evaluation chunk; chunk ``k`` is drawn by a reset with seed ``EVAL_SEED + k``."""


def tsp_instances(num: int, n: int) -> np.ndarray:
    """The ``[num, n, 2]`` evaluation instances, chunk by chunk."""
    from pgrad.envs.tsp import TSPVectorEnv

    return np.concatenate(
        [
            TSPVectorEnv(min(CHUNK, num - start), n=n).reset(seed=EVAL_SEED + k)[0]["coords"]
            for k, start in enumerate(range(0, num, CHUNK))
        ]
    )


@torch.no_grad()
def tsp_lengths(policy: torch.nn.Module, num: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Greedy tour lengths ``[num]`` on :func:`tsp_instances`: from one start (the policy picks
    it) and the best of all ``n`` starts (POMO's inference)."""
    from pgrad.envs.tsp import TSPVectorEnv
    from pgrad.rollout import Collector

    cpu = torch.device("cpu")
    one, best = [], []
    for k, start in enumerate(range(0, num, CHUNK)):
        size, seed = min(CHUNK, num - start), EVAL_SEED + k
        # the same seed and number of instances give the same cities in both forms
        single = Collector(TSPVectorEnv(size, n=n), policy, cpu, seed, deterministic=True)
        one.append(single.collect_episodes(seed, n + 1).episode_infos["tour_length"])
        starts = TSPVectorEnv(size * n, n=n, group_size=n, distinct_starts=True)
        every = Collector(starts, policy, cpu, seed, deterministic=True)
        lengths = every.collect_episodes(seed, n + 1).episode_infos["tour_length"]
        best.append(np.asarray(lengths).reshape(size, n).min(1))
    return np.concatenate(one), np.concatenate(best)


def part_c(args: argparse.Namespace) -> None:
    from pgrad.agents import TSP
    from pgrad.envs.tsp import farthest_insertion_tour, nearest_neighbour_tour, tour_length

    n, num = 20, 1000
    print(
        f"## (c) TSP{n} with POMO\n\n{load()}; {args.threads} threads, "
        f"{args.minutes} min of training\n"
    )
    coords = tsp_instances(num, n)
    neighbour = float(np.mean([tour_length(c, nearest_neighbour_tour(c)) for c in coords]))
    insertion = float(np.mean([tour_length(c, farthest_insertion_tour(c)) for c in coords]))
    torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as run_dir:
        agent = TSP(run_dir=run_dir, quiet=True, torch_threads=args.threads, total_steps=10**10)
        trained = last_eval = 0.0

        def evaluate() -> None:
            one, best = tsp_lengths(agent.policy, num, n)
            rows.append((trained, agent.global_step, float(one.mean()), float(best.mean())))
            print(
                f"<!-- {trained / 60:.1f} min, {agent.global_step:,} steps: one start "
                f"{one.mean():.3f}, best of {n} {best.mean():.3f} -->",
                flush=True,
            )

        evaluate()
        clock = time.perf_counter()

        def pace(agent: Any, metrics: dict[str, float]) -> None:
            # training time only: evaluations are excluded
            nonlocal trained, last_eval, clock
            trained += time.perf_counter() - clock
            if trained - last_eval >= args.eval_every or trained >= args.minutes * 60:
                evaluate()
                last_eval = trained
            if trained >= args.minutes * 60:
                agent.request_stop()
            clock = time.perf_counter()

        agent.train(callback=pace)

    def gap(length: float) -> str:
        return f"{100 * (length / OPTIMUM_TSP20 - 1):+.1f} %"

    print(f"\n| training | env steps | greedy, one start | gap | best of {n} starts | gap |")
    print("|---|---|---|---|---|---|")
    for seconds, steps, one, best in rows:
        print(
            f"| {seconds / 60:.1f} min | {steps:,} | {one:.3f} | {gap(one)} | {best:.3f} | "
            f"{gap(best)} |"
        )
    print("\n| heuristic, same instances | mean length | gap |\n|---|---|---|")
    print(f"| nearest neighbour | {neighbour:.3f} | {gap(neighbour)} |")
    print(f"| farthest insertion | {insertion:.3f} | {gap(insertion)} |")
    print(f"\n{load()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("a", "b", "c", "g"), required=True)
    parser.add_argument("--goals", default="", help="(g) run names separated by ';'")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--sequences", type=int, default=40_000)
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--estimators", default=",".join(ESTIMATORS))
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--eval-every", type=float, default=60.0)
    parser.add_argument("--trl-steps", type=int, default=30)
    parser.add_argument(
        "--to-90", action="store_true", help="(b) also train both to 90%% greedy exact"
    )
    parser.add_argument("--to-90-steps", type=int, default=200, help="(b) at most this many")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.part == "a":
        part_a(args)
    elif args.part == "c":
        part_c(args)
    elif args.part == "g":
        part_g(args)
    else:
        from trl_peer import part_b  # noqa: PLC0415  (TRL is imported only for this part)

        part_b(args)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
