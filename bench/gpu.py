"""Training throughput on CUDA against the CPU, in one short run (about 5 minutes).

For CartPole-v1 (A2C, numpy-vectorised, 16 steps per update) and, with the ``mujoco`` extra,
HalfCheetah-v5, at 8, 512 and 4,096 environments, trains a few updates on each device after a
warm-up and prints env steps per second; then the time of one PPO update (when pgrad has a
``ppo`` agent) on each device. Without CUDA it measures the CPU alone and says so.

Usage::

    python bench/gpu.py                 # every size, both tasks where installed
    python bench/gpu.py --updates 5     # fewer timed updates per cell
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import tempfile
import time

import torch
from _common import machine, table

SIZES = (8, 512, 4096)


def throughput(env_id: str, agent_name: str, device: str, num_envs: int, updates: int) -> float:
    """Env steps per second of ``updates`` timed updates (collect + update), after two warm-up."""
    from pgrad.agents import AGENTS

    agent = AGENTS[agent_name](
        env_id=env_id,
        num_envs=num_envs,
        num_steps=16,
        device=device,
        quiet=True,
        run_dir=tempfile.mkdtemp(prefix="pgrad-gpu-"),
        checkpoint_every=0,
    )
    for _ in range(2):
        agent.update(agent.collect())
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start, steps = time.perf_counter(), 0
    for _ in range(updates):
        rollout = agent.collect()
        steps += rollout.num_steps
        agent.update(rollout)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    agent.envs.close()
    return steps / (time.perf_counter() - start)


def ppo_update_ms(env_id: str, device: str, repeats: int) -> float | None:
    """Median milliseconds of one PPO update on one collected rollout, or None without PPO."""
    from pgrad.agents import AGENTS

    if "ppo" not in AGENTS:
        return None
    agent = AGENTS["ppo"](env_id=env_id, device=device, quiet=True)
    rollout = agent.collect()
    times = []
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        agent.update(rollout)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append((time.perf_counter() - start) * 1e3)
    agent.envs.close()
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=10, help="timed updates per cell")
    args = parser.parse_args()
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    tasks = [("CartPole-v1", "a2c")]
    if importlib.util.find_spec("mujoco") is not None:
        tasks.append(("HalfCheetah-v5", "a2c"))
    print(machine())
    if len(devices) == 1:
        print("no CUDA device: CPU figures only")
    rows = []
    for env_id, agent_name in tasks:
        for num_envs in SIZES:
            figures = {
                d: throughput(env_id, agent_name, d, num_envs, args.updates) for d in devices
            }
            ratio = f"{figures['cuda'] / figures['cpu']:.2f}x" if "cuda" in figures else "-"
            rows.append([env_id, num_envs, *(f"{figures[d]:,.0f}" for d in devices), ratio])
    print(table(["task", "envs", *(f"{d} env steps/s" for d in devices), "cuda / cpu"], rows))
    ppo = [[env_id, *(ppo_update_ms(env_id, d, 5) for d in devices)] for env_id, _ in tasks]
    if any(x is not None for row in ppo for x in row[1:]):
        print(table(["task", *(f"PPO update on {d} (ms)" for d in devices)], ppo))


if __name__ == "__main__":
    main()
