"""Final evaluation returns of pgrad's presets at rl-zoo's budgets, beside rl-zoo's published
A2C (and PPO) figures.

For each task the preset trains with its default ``total_steps``, which is at most the budget
rl-zoo's A2C benchmark used, with 5 seeds; the final policy then plays 10 deterministic episodes
(``Agent.evaluate``). The table gives the
mean and standard deviation over seeds of those per-seed means and, since a few seeds make a
mean ± std fragile, their interquartile mean with a 95 % stratified-bootstrap interval
(``pgrad.stats``). Learning curves of every run are drawn with ``pgrad plot`` (mean over seeds
with a min-max band), one PNG per task.

Only returns are measured here, not time, so runs go ``--jobs`` at a time (default 2).

Usage::

    python bench/scores.py             # 5 seeds, about 9 minutes on 2 cores
    python bench/scores.py --quick     # 2 seeds
"""

from __future__ import annotations

import argparse
import multiprocessing
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from _common import HERE, machine, table

from pgrad.stats import interval_estimates


@dataclass(frozen=True)
class Task:
    env_id: str
    agent: str
    budget: int
    zoo: str  # rl-zoo's benchmark.md: one trained agent, mean +- std over ~150k eval steps


TASKS = [
    Task("Pendulum-v1", "pendulum", 1_000_000, "A2C -163.0 +- 103.2 (1M)"),
    Task("Acrobot-v1", "acrobot", 500_000, "A2C -83.4 +- 17.2 (500k)"),
    Task(
        "LunarLander-v3",
        "lunarlander",
        200_000,
        "A2C 155.8 +- 80.4 (200k, v2); PPO 242.1 +- 31.8 (1M, v2)",
    ),
    Task("CartPole-v1", "cartpole", 500_000, "A2C 500.0 +- 0.0 (500k)"),
    Task("CartPole-v1", "cartpole-fast", 500_000, "A2C 500.0 +- 0.0 (500k)"),
]
ZOO_MEAN = {
    "Pendulum-v1": -163.0,
    "Acrobot-v1": -83.0,
    "LunarLander-v3": 156.0,
    "CartPole-v1": 500.0,
}


def run(job: tuple[Task, int, str]) -> tuple[str, int, float, float]:
    """Train one preset for its budget and evaluate it: (env_id, seed, mean return, seconds)."""
    task, seed, run_dir = job
    import torch

    from pgrad.agents import AGENTS

    torch.set_num_threads(1)
    start = time.perf_counter()
    agent = AGENTS[task.agent](seed=seed, run_dir=run_dir, quiet=True)
    agent.train(min(agent.config.total_steps, task.budget))
    result = agent.evaluate(episodes=10)
    return task.agent, seed, result["mean_return"], time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 seeds")
    parser.add_argument("--seeds", type=int, default=None, help="seeds per task (default 5)")
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time")
    parser.add_argument(
        "--tasks",
        nargs="+",
        default=sorted({t.env_id for t in TASKS}),
        choices=sorted({t.env_id for t in TASKS}),
    )
    parser.add_argument(
        "--out", type=Path, default=HERE / "results", help="where the runs and the PNGs go"
    )
    args = parser.parse_args(argv)
    seeds = list(range(1, 1 + (args.seeds or (2 if args.quick else 5))))
    tasks = [task for task in TASKS if task.env_id in args.tasks]

    print(f"# Scores at rl-zoo budgets\n\n{machine()}\n", flush=True)
    runs_root = args.out / "runs"
    if runs_root.exists():
        shutil.rmtree(runs_root)
    jobs = [
        (task, seed, str(runs_root / f"{task.env_id}__{task.agent}__{seed}"))
        for task in tasks
        for seed in seeds
    ]  # longest tasks first: they finish together
    results: dict[str, dict[int, float]] = {task.agent: {} for task in tasks}
    context = multiprocessing.get_context("spawn")
    with context.Pool(args.jobs, maxtasksperchild=1) as pool:
        for agent, seed, mean_return, seconds in pool.imap_unordered(run, jobs):
            results[agent][seed] = mean_return
            print(f"{agent} seed {seed}: {mean_return:.1f} ({seconds:.0f} s)", flush=True)

    from pgrad.agents import AGENTS

    rows = []
    for task in tasks:
        returns = np.array([results[task.agent][seed] for seed in seeds])
        steps = min(AGENTS[task.agent].default_config().total_steps, task.budget)
        png = args.out / f"scores_{task.agent}.png"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pgrad.cli",
                "plot",
                "-o",
                str(png),
                *(str(runs_root / f"{task.env_id}__{task.agent}__{s}") for s in seeds),
            ],
            check=True,
            capture_output=True,
        )
        verdict = (
            "beats"
            if returns.mean() >= ZOO_MEAN[task.env_id]
            else (f"misses by {ZOO_MEAN[task.env_id] - returns.mean():.0f}")
        )
        rows.append(
            [
                task.env_id,
                f"`{task.agent}`",
                f"{steps:,} ({task.budget:,})",
                f"{returns.mean():.1f} +- {returns.std():.1f}",
                "{:.1f} [{:.1f}, {:.1f}]".format(*interval_estimates(returns, ("iqm",))["iqm"]),
                " ".join(f"{r:.0f}" for r in returns),
                task.zoo,
                verdict,
                f"[curves]({png.relative_to(HERE)})",
            ]
        )
    print(
        f"\n## Final deterministic evaluation, 10 episodes per seed, {len(seeds)} seeds "
        "(mean +- std and interquartile mean over seeds)\n"
    )
    print(
        table(
            [
                "task",
                "preset",
                "env steps (rl-zoo budget)",
                "pgrad mean +- std",
                "IQM [95% CI]",
                "per seed",
                "rl-zoo published",
                "vs rl-zoo A2C",
                "curves",
            ],
            rows,
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
