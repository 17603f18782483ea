"""Final evaluation returns of pgrad's presets at published budgets, beside the published
figures they are compared with (rl-zoo's A2C and PPO, CleanRL's PPO on MuJoCo).

For each task the preset trains with its default ``total_steps`` (at most the published
budget) over several seeds (5; 3 for the MuJoCo tasks); the final policy then plays 10
deterministic episodes (``Agent.evaluate``), and the table gives the mean and standard deviation
over seeds of those per-seed means. Learning curves of every run are drawn with ``pgrad plot``
(mean over seeds with a min-max band), one PNG per preset; their interquartile mean with a 95 % stratified-bootstrap
interval (``pgrad.stats``) stands beside the mean, since a few seeds make a mean +- std fragile.

Only returns are measured here, not time, so runs go ``--jobs`` at a time (default 2).

Usage::

    python bench/scores.py --tasks classic          # A2C and REINFORCE presets, ~9 min on 2 cores
    python bench/scores.py --tasks pendulum lunarlander hopper --seeds 2 --steps 300000
    python bench/scores.py --tasks all              # everything: hours (MuJoCo: 9 x 1M steps)

``--tasks`` takes preset names, environment ids, ``classic`` (the presets of the classic-control
tasks), ``ppo`` (every PPO preset) or ``all``. ``--steps`` caps each run's steps below the
preset's budget (the table says so); ``--seeds`` overrides the number of seeds.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
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
    published: str  # the figure compared with, and where it is from
    target: float  # the published mean to meet
    seeds: int = 5
    group: str = "classic"


ZOO_PPO_LUNAR = "PPO 242.1 +- 31.8 (rl-zoo, 1M, v2)"
CLEANRL = "CleanRL PPO (ppo_continuous_action, 1M, v2)"
TASKS = [
    Task(
        "Pendulum-v1", "pendulum", 1_000_000, "A2C -163.0 +- 103.2 (rl-zoo, 1M)", -163.0, 5, "ppo"
    ),
    Task("LunarLander-v3", "lunarlander", 1_000_000, ZOO_PPO_LUNAR, 242.1, 5, "ppo"),
    Task("HalfCheetah-v5", "halfcheetah", 1_000_000, f"{CLEANRL}: 1,443", 1443.0, 3, "ppo"),
    Task("Hopper-v5", "hopper", 1_000_000, f"{CLEANRL}: 2,383", 2383.0, 3, "ppo"),
    Task("Walker2d-v5", "walker2d", 1_000_000, f"{CLEANRL}: 2,288", 2288.0, 3, "ppo"),
    Task("Pendulum-v1", "pendulum-a2c", 1_000_000, "A2C -163.0 +- 103.2 (rl-zoo, 1M)", -163.0),
    Task("Acrobot-v1", "acrobot", 500_000, "A2C -83.4 +- 17.2 (rl-zoo, 500k)", -83.0),
    Task(
        "LunarLander-v3",
        "lunarlander-a2c",
        200_000,
        "A2C 155.8 +- 80.4 (rl-zoo, 200k, v2)",
        156.0,
    ),
    Task("CartPole-v1", "cartpole", 500_000, "A2C 500.0 +- 0.0 (rl-zoo, 500k)", 500.0),
    Task("CartPole-v1", "cartpole-fast", 500_000, "A2C 500.0 +- 0.0 (rl-zoo, 500k)", 500.0),
]


def select(names: list[str]) -> list[Task]:
    """The tasks named by preset, environment id, group (``classic``, ``ppo``) or ``all``."""
    chosen = [
        t
        for t in TASKS
        if "all" in names or t.agent in names or t.env_id in names or t.group in names
    ]
    unknown = [
        n
        for n in names
        if n not in ("all", "classic", "ppo") and not any(n in (t.agent, t.env_id) for t in TASKS)
    ]
    if unknown:
        raise SystemExit(f"unknown task(s): {', '.join(unknown)}")
    return chosen


def steps_for(task: Task, cap: int | None) -> int:
    """The preset's ``total_steps``, at most the published budget and ``cap``."""
    from pgrad.agents import AGENTS

    steps = min(AGENTS[task.agent].default_config().total_steps, task.budget)
    return min(steps, cap) if cap else steps


def run(job: tuple[Task, int, str, int]) -> tuple[str, int, float, float]:
    """Train one preset for ``steps`` and evaluate it: (preset, seed, mean return, seconds).

    Schedules (learning-rate annealing) run over ``steps``, as a run of that length would.
    """
    task, seed, run_dir, steps = job
    import torch

    from pgrad.agents import AGENTS

    torch.set_num_threads(1)
    start = time.perf_counter()
    agent = AGENTS[task.agent](seed=seed, run_dir=run_dir, quiet=True, total_steps=steps)
    agent.train()
    result = agent.evaluate(episodes=10)
    return task.agent, seed, result["mean_return"], time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 seeds")
    parser.add_argument("--seeds", type=int, default=None, help="seeds per task")
    parser.add_argument("--steps", type=int, default=None, help="cap on each run's env steps")
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time")
    parser.add_argument("--tasks", nargs="+", default=["classic"], help="see the module docstring")
    parser.add_argument(
        "--out", type=Path, default=HERE / "results", help="where the runs and the PNGs go"
    )
    args = parser.parse_args(argv)
    tasks = select(args.tasks)

    def seeds_of(task: Task) -> list[int]:
        return list(range(1, 1 + (args.seeds or (2 if args.quick else task.seeds))))

    print(f"# Scores at published budgets\n\n{machine()}\n", flush=True)
    runs_root = args.out / "runs"
    if runs_root.exists():
        shutil.rmtree(runs_root)
    jobs = [
        (
            task,
            seed,
            str(runs_root / f"{task.env_id}__{task.agent}__{seed}"),
            steps_for(task, args.steps),
        )
        for task in tasks
        for seed in seeds_of(task)
    ]
    jobs.sort(key=lambda job: -job[3])  # longest runs first: they finish together
    results: dict[str, dict[int, float]] = {task.agent: {} for task in tasks}
    context = multiprocessing.get_context("spawn")
    with context.Pool(args.jobs, maxtasksperchild=1) as pool:
        for agent, seed, mean_return, seconds in pool.imap_unordered(run, jobs):
            results[agent][seed] = mean_return
            print(f"{agent} seed {seed}: {mean_return:.1f} ({seconds:.0f} s)", flush=True)

    rows = []
    for task in tasks:
        seeds = seeds_of(task)
        returns = np.array([results[task.agent][seed] for seed in seeds])
        steps = steps_for(task, args.steps)
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
        mean = returns.mean()
        verdict = "meets" if mean >= task.target else f"misses by {task.target - mean:,.0f}"
        rows.append(
            [
                task.env_id,
                f"`{task.agent}`",
                f"{steps:,} ({task.budget:,})",
                len(seeds),
                f"{mean:,.1f} +- {returns.std():,.1f}",
                "{:.1f} [{:.1f}, {:.1f}]".format(*interval_estimates(returns, ("iqm",))["iqm"]),
                " ".join(f"{r:.0f}" for r in returns),
                task.published,
                verdict,
                f"[curves]({os.path.relpath(png, HERE)})",
            ]
        )
    print(
        "\n## Final deterministic evaluation, 10 episodes per seed "
        "(mean +- std and interquartile mean over seeds)\n"
    )
    print(
        table(
            [
                "task",
                "preset",
                "env steps (published budget)",
                "seeds",
                "pgrad",
                "IQM [95% CI]",
                "per seed",
                "published",
                "vs published",
                "curves",
            ],
            rows,
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
