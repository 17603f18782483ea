"""Env steps and training wall-clock until a task is solved: pgrad's presets against SB3 A2C and
PPO (rl-zoo settings) and Tianshou REINFORCE (its own CartPole test settings), in one run.

Solved: the mean return of 10 deterministic evaluation episodes (the same evaluator and start
states for every learner, ``_common.evaluate``) first reaches the threshold. Evaluations happen
every 10,000 env steps, or after every update where an update is larger than that (each learner
stops at the first update boundary past each multiple of 10,000). Training wall-clock counts the
library's own training loop only: start-up and evaluation are excluded. Each learner trains with
its own budget (rl-zoo's ``n_timesteps``, the preset's ``total_steps``, Tianshou's 10 epochs of
40,000 steps) and at most ``--max-seconds`` of training; a run that ends unsolved counts as
infinitely slow in the medians.

Seeds are interleaved: seed 1 of every learner, then seed 2 (in rotated order), and so on.

Pendulum-v1 (solved at -200) is not in the default run: its learners need minutes per seed.
Against SB3 A2C only (rl-zoo's tuned settings; Tianshou's REINFORCE is discrete-only here).
Acrobot-v1 and Pendulum-v1 also run pgrad's preset on Gymnasium's sync vector env
(``vectorization=sync``) besides pgrad's numpy-vectorised one (the default), to show what the
latter buys, and each preset at the sizes it had before (Acrobot 16 envs x 16 steps, Pendulum
16 x 8).

Usage::

    python bench/time_to_solve.py            # CartPole and Acrobot, 5 seeds, about 9 minutes
    python bench/time_to_solve.py --quick    # 2 seeds
    python bench/time_to_solve.py --tasks Pendulum-v1 --seeds 3   # about 15 minutes
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any

from _common import Worker, machine, median, table

EVAL_EVERY = 10_000
# solved at (mean return of 10 deterministic episodes), default training-seconds cap
TASKS = {"CartPole-v1": (475.0, 20.0), "Acrobot-v1": (-100.0, 20.0), "Pendulum-v1": (-200.0, 240.0)}
DEFAULT_TASKS = ["CartPole-v1", "Acrobot-v1"]


def learners(env_id: str) -> list[tuple[str, dict[str, Any]]]:
    from pgrad.agents import PRESETS

    rows = [
        (
            f"pgrad `{PRESETS[env_id].name}` preset",
            {"library": "pgrad", "agent": PRESETS[env_id].name},
        )
    ]
    if env_id == "CartPole-v1":
        rows.insert(
            0, ("pgrad `cartpole-fast` preset", {"library": "pgrad", "agent": "cartpole-fast"})
        )
    # Pendulum's default preset is PPO; its vectorised-env rows are about the A2C preset
    vectorised = {"Acrobot-v1": PRESETS["Acrobot-v1"].name, "Pendulum-v1": "pendulum-a2c"}
    if env_id == "Pendulum-v1":
        rows.append(("pgrad `pendulum-a2c` preset", {"library": "pgrad", "agent": "pendulum-a2c"}))
    if env_id in vectorised:
        name = vectorised[env_id]
        rows.append(
            (
                f"pgrad `{name}` preset, sync envs",
                {"library": "pgrad", "agent": name, "vectorization": "sync"},
            )
        )
    # the sizes the presets had before their environments stepped as numpy arrays
    former = {"Acrobot-v1": (16, 16), "Pendulum-v1": (16, 8)}
    if env_id in former:
        name = vectorised[env_id]
        envs, steps = former[env_id]
        rows.append(
            (
                f"pgrad `{name}` preset at {envs} envs x {steps} steps",
                {"library": "pgrad", "agent": name, "num_envs": envs, "num_steps": steps},
            )
        )
    rows.append(("SB3 A2C (rl-zoo)", {"library": "sb3", "algo": "a2c"}))
    if env_id != "Pendulum-v1":
        rows += [
            ("SB3 PPO (rl-zoo)", {"library": "sb3", "algo": "ppo"}),
            ("Tianshou REINFORCE", {"library": "tianshou"}),
        ]
    return rows


def solve(worker: Worker, threshold: float, max_seconds: float) -> tuple[int, float] | None:
    """Train, evaluating on the way, until solved (env steps, train seconds) or out of budget."""
    report = {"steps": 0, "train_time": 0.0, "finished": False}
    while not report["finished"] and report["train_time"] < max_seconds:
        report = worker.run_until((report["steps"] // EVAL_EVERY + 1) * EVAL_EVERY)
        if worker.evaluate(10)["mean_return"] >= threshold:
            return report["steps"], report["train_time"]
    return None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 seeds")
    parser.add_argument("--seeds", type=int, default=None, help="seeds per learner (default 5)")
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=None,
        help="training seconds after which a run counts as unsolved (default: 20, Pendulum 240)",
    )
    parser.add_argument("--tasks", nargs="+", default=DEFAULT_TASKS, choices=list(TASKS))
    parser.add_argument(
        "--peer-python",
        default=sys.executable,
        help="interpreter with stable-baselines3 and tianshou installed",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads in every learner")
    args = parser.parse_args(argv)
    seeds = list(range(1, 1 + (args.seeds or (2 if args.quick else 5))))

    print(f"# Time to solve\n\n{machine()}\n", flush=True)
    workers = {
        "pgrad": Worker(sys.executable),
        "sb3": Worker(args.peer_python),
        "tianshou": Worker(args.peer_python),
    }
    try:
        for env_id in args.tasks:
            threshold, max_seconds = TASKS[env_id]
            max_seconds = args.max_seconds or max_seconds
            rows = learners(env_id)
            results: dict[str, list[tuple[int, float] | None]] = {label: [] for label, _ in rows}
            for i, seed in enumerate(seeds):
                for label, spec in rows[i % len(rows) :] + rows[: i % len(rows)]:
                    worker = workers[spec["library"]]
                    worker.start({**spec, "env_id": env_id, "seed": seed, "threads": args.threads})
                    try:
                        result = solve(worker, threshold, max_seconds)
                    finally:
                        worker.stop()
                    results[label].append(result)
                    shown = f"{result[0]:,} steps, {result[1]:.2f} s" if result else "not solved"
                    print(f"{env_id} seed {seed} {label}: {shown}", flush=True)
            report(env_id, threshold, results, max_seconds)
    finally:
        for worker in workers.values():
            worker.close()


def report(env_id: str, threshold: float, results: dict[str, list], max_seconds: float) -> None:
    def column(runs: list, index: int) -> list[float]:
        return [run[index] if run else math.inf for run in runs]

    sb3_a2c = median(column(results["SB3 A2C (rl-zoo)"], 1))
    rows = []
    for label, runs in results.items():
        seconds = median(column(runs, 1))
        steps = median(column(runs, 0))
        solved = sum(run is not None for run in runs)
        rows.append(
            [
                label,
                f"{solved}/{len(runs)}",
                _fmt(steps, "{:,.0f}"),
                _fmt(seconds, "{:.2f}"),
                _fmt(seconds / sb3_a2c, "{:.2f}x"),
                " ".join(_fmt(run[1], "{:.1f}") if run else "-" for run in runs),
            ]
        )
    print(
        f"\n## {env_id}: mean of 10 deterministic episodes >= {threshold:g} (medians over "
        f"seeds; unsolved within the budget or {max_seconds:g} s counts as infinite)\n"
    )
    print(
        table(
            [
                "learner",
                "seeds solved",
                "env steps",
                "train seconds",
                "vs SB3 A2C",
                "seconds per seed",
            ],
            rows,
        ),
        flush=True,
    )


def _fmt(value: float, spec: str) -> str:
    return spec.format(value) if math.isfinite(value) else "not solved"


if __name__ == "__main__":
    main()
