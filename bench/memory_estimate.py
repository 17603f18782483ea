"""The memory estimate against measured memory: one update of several sizes, each in a fresh process.

Usage: python bench/memory_estimate.py [--scale 1.0]

For each case it prints the estimate of ``pgrad.memory.estimate_memory`` beside what the case
measured: ``build``, the RSS an agent's construction adds (environments, networks and, once per
process, torch's first kernels), and ``update``, the peak RSS of one update over the RSS before it
(the rollout's samples through the backward pass). Async environments live in worker processes,
so their cost is the sum of the workers' PSS. ``--scale`` multiplies the environment counts.
The constants in ``pgrad/memory.py`` come from these figures; the estimate should stay at or
above the measurement without exceeding it many times over.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

CASES = [
    # (label, env_id, overrides)
    ("numpy CartPole, steps", "CartPole-v1", {"vectorization": "vector_entry_point"}),
    (
        "  hidden 256,256",
        "CartPole-v1",
        {"vectorization": "vector_entry_point", "hidden": (256,) * 2},
    ),
    ("  linear (no hidden)", "CartPole-v1", {"vectorization": "vector_entry_point", "hidden": ()}),
    ("  episodes of <= 100", "CartPole-v1", {"rollout": "episodes", "max_episode_steps": 100}),
    ("sync CartPole", "CartPole-v1", {"vectorization": "sync", "num_envs": 2_000}),
    ("sync Taxi (500 one-hot obs)", "Taxi-v4", {"num_envs": 1_000, "hidden": ()}),
    ("sync Pendulum (Box actions)", "Pendulum-v1", {"num_envs": 2_000}),
    ("async CartPole", "CartPole-v1", {"vectorization": "async", "num_envs": 16}),
    ("evaluation, numpy CartPole", "CartPole-v1", {"evaluate": True}),
]
BASE = {"num_envs": 10_000, "num_steps": 100, "rollout": "steps", "device": "cpu", "seed": 1}


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise OSError("no /proc/self/status")


def pss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) * 1024
    return 0


def measure(env_id: str, overrides: dict) -> dict:
    """Run in a fresh process: build one agent, run one update (or an evaluation), report RSS."""
    warnings.filterwarnings("ignore")
    from pgrad.agent import Agent
    from pgrad.envs_util import probe_env
    from pgrad.memory import estimate_memory

    evaluate = overrides.pop("evaluate", False)
    config = Agent.default_config(**{**BASE, "env_id": env_id, **overrides})
    episodes = config.num_envs  # evaluation runs one episode per environment
    if evaluate:
        config = config.replace(num_envs=1)
    estimate = estimate_memory(
        config,
        probe_env(env_id, config.max_episode_steps),
        learner=not evaluate,
        num_envs=episodes if evaluate else None,
    )
    before = rss_bytes()
    with tempfile.TemporaryDirectory() as run_dir:
        agent = Agent(config, run_dir=Path(run_dir), quiet=True)
        built = rss_bytes()
        workers = getattr(agent.envs.unwrapped, "processes", [])
        children = sum(pss_bytes(p.pid) for p in workers)
        if evaluate:
            agent.evaluate(episodes)
        else:
            agent.collect()  # warms the step loop's kernels before the measured update
            agent.train(agent.global_step + 1)
        agent.envs.close()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {
        "build": built - before + children,
        "update": max(peak - built, 0),
        "estimate_envs_network": estimate.env_bytes + estimate.network_bytes,
        "estimate_rollout": estimate.rollout_bytes,
        "num_envs": estimate.num_envs,
        "steps": estimate.steps,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        env_id, overrides = json.loads(args.child)
        if "hidden" in overrides:
            overrides["hidden"] = tuple(overrides["hidden"])
        print(json.dumps(measure(env_id, overrides)))
        return
    from pgrad.memory import format_bytes as fmt

    print(
        f"{'case':<30} {'envs x steps':>16} {'build':>10} {'est.':>10} {'update':>10} {'est.':>10}"
    )
    for label, env_id, overrides in CASES:
        overrides = dict(overrides)
        overrides["num_envs"] = max(
            1, round(overrides.get("num_envs", BASE["num_envs"]) * args.scale)
        )
        out = subprocess.run(
            [sys.executable, __file__, "--child", json.dumps([env_id, overrides])],
            capture_output=True,
            text=True,
            check=True,
        )
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(
            f"{label:<30} {r['num_envs']:>8,} x {r['steps']:>5,} {fmt(r['build']):>10} "
            f"{fmt(r['estimate_envs_network']):>10} {fmt(r['update']):>10} "
            f"{fmt(r['estimate_rollout']):>10}"
        )


if __name__ == "__main__":
    main()
