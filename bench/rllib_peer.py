"""pgrad's Ray workers against RLlib's PPO on CartPole-v1: env steps/s and start-up.

RLlib pins its own gymnasium, so it lives in a venv of its own; this script runs from pgrad's
environment and starts RLlib in that venv's Python:

    python -m venv /tmp/rllib-venv
    /tmp/rllib-venv/bin/pip install torch==2.13.0 "ray[rllib]==2.60.0"
    python bench/rllib_peer.py --rllib-python /tmp/rllib-venv/bin/python [--quick]

Both sides do the same amount of work per update: 8 environments per worker (env runner),
128 steps per environment, one gradient step on the whole batch (PPO with ``num_epochs=1`` and
one minibatch; pgrad's A2C), a 64-64 tanh MLP, the learner in the driver process, a local Ray
instance with one CPU per core and workers at niceness 0. The figures are env steps per second
of the training loop (sampling + update), after one warm-up iteration. RLlib steps its envs
with Gymnasium's sync vector env (its default); pgrad uses the numpy-vectorised CartPole.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NUM_ENVS, NUM_STEPS = 8, 128


def rllib_child(runners: int, iterations: int) -> dict[str, float]:
    """Runs inside the RLlib venv: PPO with ``runners`` env runners; timings as a dict."""
    import ray

    start = time.perf_counter()
    ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False,
             log_to_driver=False, logging_level=logging.ERROR,
             _system_config={"worker_niceness": 0})
    init_s = time.perf_counter() - start
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig
    from ray.rllib.utils.metrics import ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME

    batch = runners * NUM_ENVS * NUM_STEPS
    config = (PPOConfig()
              .environment("CartPole-v1")
              .env_runners(num_env_runners=runners, num_envs_per_env_runner=NUM_ENVS,
                           rollout_fragment_length=NUM_STEPS)
              .training(train_batch_size_per_learner=batch, minibatch_size=batch, num_epochs=1,
                        lr=1e-3)
              .rl_module(model_config=DefaultModelConfig(fcnet_hiddens=[64, 64],
                                                         fcnet_activation="tanh"))
              .learners(num_learners=0))
    start = time.perf_counter()
    algo = config.build_algo()
    build_s = time.perf_counter() - start

    def sampled(result: dict) -> int:
        return int(result[ENV_RUNNER_RESULTS][NUM_ENV_STEPS_SAMPLED_LIFETIME])

    before = sampled(algo.train())  # warm-up
    start = time.perf_counter()
    for _ in range(iterations):
        result = algo.train()
    elapsed = time.perf_counter() - start
    steps = sampled(result) - before
    algo.stop()
    ray.shutdown()
    return {"runners": runners, "init_s": init_s, "build_s": build_s, "sps": steps / elapsed,
            "steps": steps, "iterations": iterations}


def pgrad_side(updates: int) -> dict[str, float]:
    """pgrad A2C on CartPole-v1 with 2 workers (8 envs each, 128 steps), as ray_scaling does."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import ray
    from ray_scaling import CartPoleA2C, measure

    from pgrad.distributed import init_ray

    init_s = init_ray()
    with tempfile.TemporaryDirectory() as tmp:
        result = measure(CartPoleA2C, (2,), updates, Path(tmp))[2]
    ray.shutdown()
    return {"init_s": init_s, **result}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rllib-python", help="python of a venv with ray[rllib] installed")
    parser.add_argument("--quick", action="store_true", help="fewer iterations")
    parser.add_argument("--child", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--iterations", type=int, default=20, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(rllib_child(args.child, args.iterations)))
        return 0
    if not args.rllib_python:
        parser.error("--rllib-python is required (see the module docstring)")
    iterations = 10 if args.quick else 30
    ours = pgrad_side(iterations)
    theirs = {}
    for runners in (1, 2):
        out = subprocess.run([args.rllib_python, __file__, "--child", str(runners),
                              "--iterations", str(iterations)], capture_output=True, text=True,
                             env={**os.environ, "PYTHONWARNINGS": "ignore"}, check=False)
        if out.returncode != 0:
            print(out.stderr[-3000:], file=sys.stderr)
            return 1
        theirs[runners] = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"# CartPole-v1, 8 envs x 128 steps per worker, one gradient step per update, "
          f"{iterations} timed updates, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.2f} at the end")
    print("| system | workers | env steps/s | pgrad(2 workers) / this | ray.init s | "
          "build + workers ready s |")
    print("|---|---|---|---|---|---|")
    print(f"| pgrad A2C | 2 | {ours['sps']:,.0f} | 1.00x | {ours['init_s']:.1f} | "
          f"{ours['ready_s']:.1f} |")
    for runners, r in theirs.items():
        print(f"| RLlib PPO | {runners} | {r['sps']:,.0f} | {ours['sps'] / r['sps']:.2f}x | "
              f"{r['init_s']:.1f} | {r['build_s']:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
