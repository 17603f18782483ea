"""Ray rollout workers: throughput with 0, 1 and 2 workers, start-up, and the learner's costs.

    python bench/ray_scaling.py            # about 70 s on 2 (busy) cores
    python bench/ray_scaling.py --quick    # about 45 s

Needs ``pip install 'pgrad[ray]'``. Measures, in one run:

1. An environment whose step costs ``--burn-ms`` (default 1) ms of CPU: CartPole wrapped so that
   every step busy-loops on the thread's CPU clock (so contention for cores shows up as lost
   throughput, as it would with a real simulator). A2C, 8 environments per worker, 64 steps per
   rollout; env steps per second of the training loop (collect + update) with workers = 0
   (in-process), 1 and 2, and the 2-vs-1 ratio.
2. Start-up: ``ray.init`` of a local instance, then the workers ready (actors built, envs made).
3. CartPole-v1 (numpy-vectorised, about 2 us a step): the same loop with 0 and 2 workers.
4. The learner's side of one update as the number of workers K grows (1 to 64), from replicated
   rollouts: fetching K rollouts, merging them, the update itself, and the weight broadcast. With
   the per-worker collect time of (1) and (3) this says where the learner becomes the bottleneck.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import torch
from gymnasium.envs.classic_control import CartPoleEnv

from pgrad import A2C
from pgrad.distributed import init_ray
from pgrad.rollout import Collector

BURN_ENV_ID = "pgradbench/BurnCartPole-v1"


class BurnCPU(gym.Wrapper):
    """Spends ``burn_ms`` of this thread's CPU time in every step, like a costly simulator."""

    def __init__(self, env: gym.Env, burn_ms: float) -> None:
        super().__init__(env)
        self.burn_s = burn_ms / 1000.0

    def step(self, action: Any) -> Any:
        end = time.thread_time() + self.burn_s
        while time.thread_time() < end:
            pass
        return self.env.step(action)


def make_burn_env(burn_ms: float = 1.0, render_mode: str | None = None) -> gym.Env:
    return BurnCPU(CartPoleEnv(render_mode=render_mode), burn_ms)


def register_burn_env(burn_ms: float) -> None:
    if BURN_ENV_ID not in gym.registry:
        gym.register(
            BURN_ENV_ID,
            entry_point=make_burn_env,
            max_episode_steps=500,
            kwargs={"burn_ms": burn_ms},
        )


class BurnA2C(A2C):
    """A2C on the CPU-burning CartPole. Defined in ``__main__``, so Ray ships it (and the env
    registration its ``make_env`` does) to the workers by value."""

    name = "burn-a2c"
    env_id = BURN_ENV_ID
    burn_ms: ClassVar[float] = 1.0
    defaults = {**A2C.defaults, "vectorization": "sync", "num_envs": 8, "num_steps": 64}

    def make_env(self, num_envs: int | None = None) -> Any:
        register_burn_env(self.burn_ms)
        return super().make_env(num_envs)


class CartPoleA2C(A2C):
    name = "cartpole-a2c"
    env_id = "CartPole-v1"
    defaults = {**A2C.defaults, "num_envs": 8, "num_steps": 128}


def build(cls: type, workers: int, root: Path) -> tuple[Any, float]:
    """An agent and the seconds until its workers were ready."""
    start = time.perf_counter()
    agent = cls(workers=workers, quiet=True, eval_episodes=0, run_dir=root / f"{cls.name}{workers}")
    torch.set_num_threads(agent.config.torch_threads)
    return agent, time.perf_counter() - start


def one_update(agent: Any) -> tuple[float, float, int]:
    """One iteration of the training loop: (collect seconds, update seconds, env steps)."""
    t0 = time.perf_counter()
    rollout = agent.collect()
    t1 = time.perf_counter()
    agent.global_step += rollout.num_steps
    agent.update(rollout)
    return t1 - t0, time.perf_counter() - t1, rollout.num_steps


def interleaved(agents: dict[int, Any], updates: int) -> dict[int, dict[str, float]]:
    """Time ``updates`` updates of every agent, taking turns update by update.

    Taking turns exposes every configuration to the same background load, so the ratios hold
    on a busy machine even when the absolute numbers drift. ``worker_ms`` is the slowest
    worker's own collect time (weights loaded, rollout built), fetched outside the timing;
    ``cores`` is the workers' CPU seconds over that wall time: the cores they actually got.
    """
    import ray

    times: dict[int, dict[str, list[float]]] = {
        k: {"collect": [], "update": [], "worker": [], "cores": [], "steps": []} for k in agents
    }
    for agent in agents.values():  # warm-up
        one_update(agent)
    for _ in range(updates):
        for k, agent in agents.items():
            collect_s, update_s, steps = one_update(agent)
            t = times[k]
            t["collect"].append(collect_s)
            t["update"].append(update_s)
            t["steps"].append(steps)
            actors = getattr(agent.collector, "actors", [])
            if actors:
                timing = ray.get([a.timing.remote() for a in actors])
                t["worker"].append(max(x["wall_s"] for x in timing))
                t["cores"].append(sum(x["cpu_s"] for x in timing) / t["worker"][-1])
            else:
                t["worker"].append(collect_s)
    results = {}
    for k, t in times.items():
        total = sum(t["collect"]) + sum(t["update"])
        results[k] = {
            "sps": sum(t["steps"]) / total,
            "collect_ms": 1e3 * statistics.mean(t["collect"]),
            "worker_ms": 1e3 * statistics.mean(t["worker"]),
            "update_ms": 1e3 * statistics.mean(t["update"]),
            "cores": statistics.mean(t["cores"]) if t["cores"] else float("nan"),
        }
    return results


def measure(
    cls: type, worker_counts: tuple[int, ...], updates: int, root: Path
) -> dict[int, dict[str, float]]:
    """Throughput of ``cls`` with each worker count, measured interleaved, plus start-up."""
    agents, ready = {}, {}
    try:
        for k in worker_counts:
            agents[k], ready[k] = build(cls, k, root)
        results = interleaved(agents, updates)
        for k, agent in agents.items():
            results[k]["ready_s"] = ready[k]
            if k:
                results[k].update(learner_overheads(agent))
    finally:
        for k, agent in agents.items():
            if k:
                agent.collector.close()
    return results


def learner_overheads(agent: Any) -> dict[str, float]:
    """Per update: ray.put of the weights, and one no-op round trip to every worker."""
    import ray

    from pgrad.distributed import policy_weights

    n = 50
    t0 = time.perf_counter()
    for _ in range(n):
        ray.put(policy_weights(agent.policy))
    put_ms = 1e3 * (time.perf_counter() - t0) / n
    t0 = time.perf_counter()
    for _ in range(n):
        ray.get([a.ping.remote() for a in agent.collector.actors])
    call_ms = 1e3 * (time.perf_counter() - t0) / n
    return {"put_ms": put_ms, "roundtrip_ms": call_ms}


def learner_scaling(cls: type, root: Path, repeats: int) -> list[dict[str, float]]:
    """Learner-side cost of one update with K workers' rollouts (K replicated copies)."""
    import ray

    from pgrad.distributed import merge_rollouts, policy_weights

    agent = cls(workers=0, quiet=True, eval_episodes=0, run_dir=root / "learner")
    torch.set_num_threads(agent.config.torch_threads)
    one = Collector(agent.envs, agent.policy, agent.device, 1).collect_steps(agent.config.num_steps)
    ref = ray.put(one)
    rows = []
    for k in (1, 2, 4, 8, 16, 32, 64):
        timings: dict[str, list[float]] = {"get": [], "merge": [], "update": [], "put": []}
        for _ in range(repeats):
            t0 = time.perf_counter()
            parts = ray.get([ref] * k)  # deserialised K times, as K workers' results would be
            t1 = time.perf_counter()
            merged = merge_rollouts(parts)
            t2 = time.perf_counter()
            agent.update(merged)
            t3 = time.perf_counter()
            ray.put(policy_weights(agent.policy))
            t4 = time.perf_counter()
            for name, value in zip(timings, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                value_ms = 1e3 * value
                timings[name].append(value_ms)
        row = {"K": k, **{f"{name}_ms": statistics.median(v) for name, v in timings.items()}}
        row["learner_ms"] = row["get_ms"] + row["merge_ms"] + row["update_ms"] + row["put_ms"]
        rows.append(row)
    return rows


def load() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer updates per measurement")
    parser.add_argument("--burn-ms", type=float, default=1.0, help="CPU ms per env step")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=UserWarning, module="gymnasium")
    import ray

    BurnA2C.burn_ms = args.burn_ms
    updates = 4 if args.quick else 10
    cp_updates = 20 if args.quick else 60
    cpus = os.cpu_count() or 1
    print(
        f"# {platform.node()}: {cpus} CPUs, load average {load():.2f} at start, Python "
        f"{platform.python_version()}, torch {torch.__version__}, ray {ray.__version__}"
    )
    print(f"# command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    # as pgrad starts its local instance, with a CPU more than the cores so that the 1-worker
    # and 2-worker agents' actors exist side by side and can take turns (one runs at a time)
    init_s = init_ray(num_cpus=max(cpus, 3))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        burn = measure(BurnA2C, (0, 1, 2), updates, root)
        cart = measure(CartPoleA2C, (0, 1, 2), cp_updates, root)
        scaling = learner_scaling(CartPoleA2C, root, repeats=3 if args.quick else 7)
        burn_scaling = learner_scaling(BurnA2C, root, repeats=2 if args.quick else 3)
    ray.shutdown()
    print(
        f"# load average {load():.2f} at the end; the configurations took turns update by "
        "update, so background load hits each alike"
    )

    print(
        f"\n## {args.burn_ms:g} ms/step env ({BURN_ENV_ID}, A2C, 8 envs per worker, "
        "64 steps per rollout)"
    )
    print(
        "| workers | envs | env steps/s | vs workers=1 | collect ms | in worker ms | "
        "cores the workers got | update ms |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for k, r in burn.items():
        envs = 8 * max(k, 1)
        print(
            f"| {k} | {envs} | {r['sps']:,.0f} | {r['sps'] / burn[1]['sps']:.2f}x | "
            f"{r['collect_ms']:.0f} | {r['worker_ms']:.0f} | {r['cores']:.2f} | "
            f"{r['update_ms']:.1f} |"
        )
    print(
        f"\n2 workers / 1 worker: {burn[2]['sps'] / burn[1]['sps']:.2f}x   "
        f"2 workers / in-process: {burn[2]['sps'] / burn[0]['sps']:.2f}x"
    )

    print("\n## start-up")
    print(
        f"ray.init (local, {cpus} CPUs): {init_s:.1f} s; workers ready: 1 worker "
        f"{burn[1]['ready_s']:.1f} s, 2 workers {burn[2]['ready_s']:.1f} s "
        f"(in-process agent: {burn[0]['ready_s']:.2f} s)"
    )
    print(
        f"ray.put of the weights: {burn[2]['put_ms']:.2f} ms; no-op round trip to 2 workers: "
        f"{burn[2]['roundtrip_ms']:.2f} ms"
    )

    print("\n## CartPole-v1 (numpy-vectorised, A2C, 8 envs per worker, 128 steps per rollout)")
    print(
        "| workers | envs | env steps/s | vs in-process | collect ms | in worker ms | "
        "cores the workers got | update ms |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for k, r in cart.items():
        print(
            f"| {k} | {8 * max(k, 1)} | {r['sps']:,.0f} | {r['sps'] / cart[0]['sps']:.2f}x | "
            f"{r['collect_ms']:.1f} | {r['worker_ms']:.1f} | {r['cores']:.2f} | "
            f"{r['update_ms']:.1f} |"
        )

    for title, rows, worker_ms in (
        ("CartPole-v1, 128 x 8 steps per worker", scaling, cart[1]["worker_ms"]),
        (
            f"{args.burn_ms:g} ms/step env, 64 x 8 steps per worker",
            burn_scaling,
            burn[1]["worker_ms"],
        ),
    ):
        print(
            f"\n## learner per update vs workers K ({title}; one worker collects its share in "
            f"{worker_ms:.1f} ms)"
        )
        print(
            "| K | get K rollouts ms | merge ms | update ms | put weights ms | learner ms | "
            "learner / worker collect |"
        )
        print("|---|---|---|---|---|---|---|")
        for r in rows:
            print(
                f"| {r['K']} | {r['get_ms']:.2f} | {r['merge_ms']:.2f} | {r['update_ms']:.1f} | "
                f"{r['put_ms']:.2f} | {r['learner_ms']:.1f} | "
                f"{r['learner_ms'] / worker_ms:.2f} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
