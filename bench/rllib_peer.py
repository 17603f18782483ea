"""pgrad's Ray workers against RLlib's PPO on CartPole-v1: env steps/s and start-up.

RLlib pins its own gymnasium, so it lives in a venv of its own; this script runs from pgrad's
environment and starts RLlib in that venv's Python:

    python -m venv /tmp/rllib-venv
    /tmp/rllib-venv/bin/pip install torch==2.13.0 "ray[rllib]==2.60.0"
    python bench/rllib_peer.py --rllib-python /tmp/rllib-venv/bin/python [--quick]

Every configuration runs in a fresh process of its own, one after another, with a local Ray
instance (one CPU per core, no dashboard, workers at niceness 0) and the learner in the driver:

* ``rllib-tuned``: RLlib's tuned CartPole PPO example (``tuned_examples/ppo/cartpole_ppo.py``:
  a [32] linear network with the value head shared, lr 3e-4, 6 epochs of minibatches of 128
  over RLlib's default 4,000-step batch, vf_loss_coeff 0.01, KL loss on), with 1 and 2 env
  runners and no parallel evaluation runner.
* ``rllib-same``: RLlib PPO doing pgrad's work per update: 8 envs per runner, 128 steps each,
  one gradient step on the whole batch, a 64-64 tanh MLP.
* ``pgrad-same``: pgrad A2C with that same work, 2 workers.
* ``pgrad-fast``: pgrad's own fast CartPole preset (``cartpole-fast``: A2C, 512 numpy-vectorised
  environments x 16 steps) split over 2 workers of 256 environments.

Throughput is env steps per second of the training loop (sampling + update) after one warm-up
iteration. Start-up is wall time from the moment the process is launched until training can
begin (pgrad: the agent is built and its workers are ready; RLlib: the algorithm is built), with
its parts: imports, and from the start of Ray to ready (pgrad: building the agent, which starts
Ray and its workers; RLlib: ``ray.init``, importing RLlib's PPO and ``build_algo``), and the CPU
seconds every process on the machine spent meanwhile (from /proc/stat: divided by the number of
cores, a floor under the start-up that no overlapping can beat). With
``--repeats R`` every configuration runs R times, in rotation; the tables give medians.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NUM_ENVS, NUM_STEPS = 8, 128


def busy_cpu_s() -> float:
    """CPU seconds all processes on this machine have spent busy since boot (Linux; else 0)."""
    try:
        with open("/proc/stat") as f:
            ticks = [int(x) for x in f.readline().split()[1:]]
    except OSError:
        return 0.0
    idle = ticks[3] + ticks[4]  # idle + iowait
    return (sum(ticks) - idle) / os.sysconf("SC_CLK_TCK")


SYSTEMS = (
    "pgrad-same",
    "pgrad-fast",
    "rllib-tuned-1",
    "rllib-tuned-2",
    "rllib-same-1",
    "rllib-same-2",
)


def rllib_child(
    kind: str, runners: int, iterations: int, launched: float, launched_cpu: float
) -> dict[str, float]:
    """Runs inside the RLlib venv; timings as a dict (times relative to ``launched``)."""
    import ray

    ray_start = time.time()
    ray.init(
        address="local",
        num_cpus=os.cpu_count(),
        include_dashboard=False,
        log_to_driver=False,
        logging_level=logging.ERROR,
        _system_config={"worker_niceness": 0},
    )
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig
    from ray.rllib.utils.metrics import ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME

    config = PPOConfig().environment("CartPole-v1").learners(num_learners=0)
    if kind == "tuned":
        config = (
            config.env_runners(num_env_runners=runners)
            .rl_module(
                model_config=DefaultModelConfig(
                    fcnet_hiddens=[32], fcnet_activation="linear", vf_share_layers=True
                )
            )
            .training(gamma=0.99, lr=0.0003, num_epochs=6, vf_loss_coeff=0.01, use_kl_loss=True)
        )
    else:
        batch = runners * NUM_ENVS * NUM_STEPS
        config = (
            config.env_runners(
                num_env_runners=runners,
                num_envs_per_env_runner=NUM_ENVS,
                rollout_fragment_length=NUM_STEPS,
            )
            .training(
                train_batch_size_per_learner=batch, minibatch_size=batch, num_epochs=1, lr=1e-3
            )
            .rl_module(
                model_config=DefaultModelConfig(fcnet_hiddens=[64, 64], fcnet_activation="tanh")
            )
        )
    algo = config.build_algo()
    ready, ready_cpu = time.time(), busy_cpu_s()

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
    return {
        "imports_s": ray_start - launched,
        "ray_to_ready_s": ready - ray_start,
        "startup_s": ready - launched,
        "startup_cpu_s": ready_cpu - launched_cpu,
        "sps": steps / elapsed,
        "steps_per_iteration": steps / iterations,
    }


def pgrad_child(
    kind: str, iterations: int, launched: float, launched_cpu: float
) -> dict[str, float]:
    """pgrad with 2 Ray workers; timings as a dict (times relative to ``launched``)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from ray_scaling import one_update

    from pgrad import A2C
    from pgrad.agents import CartPoleFast

    imported = time.time()
    if kind == "same":
        cls, settings = A2C, {"env_id": "CartPole-v1", "num_envs": NUM_ENVS, "num_steps": NUM_STEPS}
    else:
        cls, settings = CartPoleFast, {"num_envs": CartPoleFast.defaults["num_envs"] // 2}
    with tempfile.TemporaryDirectory() as tmp:
        agent = cls(workers=2, quiet=True, eval_episodes=0, run_dir=Path(tmp), **settings)
        ready, ready_cpu = time.time(), busy_cpu_s()

        one_update(agent)  # warm-up
        start, steps = time.perf_counter(), 0
        for _ in range(iterations):
            steps += one_update(agent)[2]
        elapsed = time.perf_counter() - start
        agent.collector.close()
    return {
        "imports_s": imported - launched,
        "ray_to_ready_s": ready - imported,
        "startup_s": ready - launched,
        "startup_cpu_s": ready_cpu - launched_cpu,
        "sps": steps / elapsed,
        "steps_per_iteration": steps / iterations,
    }


def run_child(system: str, rllib_python: str, iterations: int) -> dict[str, float]:
    if system.startswith("pgrad"):
        python, args = sys.executable, ["--pgrad-child", system.split("-")[1]]
    else:
        _, kind, runners = system.split("-")
        python, args = rllib_python, ["--rllib-child", kind, "--runners", runners]
    launched, launched_cpu = time.time(), busy_cpu_s()
    out = subprocess.run(
        [
            python,
            __file__,
            *args,
            "--iterations",
            str(iterations),
            "--launched",
            repr(launched),
            "--launched-cpu",
            repr(launched_cpu),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"{system} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rllib-python", help="python of a venv with ray[rllib] installed")
    parser.add_argument("--quick", action="store_true", help="fewer iterations, one repeat")
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="runs of every configuration (default 3, 1 with --quick)",
    )
    parser.add_argument("--rllib-child", help=argparse.SUPPRESS)
    parser.add_argument("--pgrad-child", help=argparse.SUPPRESS)
    parser.add_argument("--runners", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--iterations", type=int, default=10, help=argparse.SUPPRESS)
    parser.add_argument("--launched", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument("--launched-cpu", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rllib_child:
        print(
            json.dumps(
                rllib_child(
                    args.rllib_child,
                    args.runners,
                    args.iterations,
                    args.launched,
                    args.launched_cpu,
                )
            )
        )
        return 0
    if args.pgrad_child:
        print(
            json.dumps(
                pgrad_child(args.pgrad_child, args.iterations, args.launched, args.launched_cpu)
            )
        )
        return 0
    if not args.rllib_python:
        parser.error("--rllib-python is required (see the module docstring)")
    repeats = args.repeats or (1 if args.quick else 3)
    iterations = {
        "pgrad-same": 30,
        "pgrad-fast": 30,
        "rllib-tuned-1": 5,
        "rllib-tuned-2": 5,
        "rllib-same-1": 20,
        "rllib-same-2": 20,
    }
    if args.quick:
        iterations = {k: max(v // 3, 2) for k, v in iterations.items()}
    runs: dict[str, list[dict[str, float]]] = {s: [] for s in SYSTEMS}
    for r in range(repeats):
        order = SYSTEMS[r % len(SYSTEMS) :] + SYSTEMS[: r % len(SYSTEMS)]
        for system in order:
            runs[system].append(run_child(system, args.rllib_python, iterations[system]))
            print(
                f"# {system} run {r + 1}: "
                + ", ".join(f"{k} {v:,.2f}" for k, v in runs[system][-1].items()),
                file=sys.stderr,
            )

    def med(system: str, key: str) -> float:
        return statistics.median(run[key] for run in runs[system])

    best_rllib = max(("rllib-tuned-2", "rllib-same-2"), key=lambda s: med(s, "sps"))
    print(
        f"# CartPole-v1, {os.cpu_count()} CPUs, medians of {repeats} run(s) per "
        f"configuration; load average {os.getloadavg()[0]:.2f} at the end"
    )
    print(
        "| system | workers / runners | steps per update | env steps/s | pgrad-fast / this | "
        "pgrad-same / this | start-up s | imports s | Ray start to ready s | "
        "CPU s to ready (all processes) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for system in SYSTEMS:
        workers = 2 if system.startswith("pgrad") else int(system[-1])
        print(
            f"| {system} | {workers} | {med(system, 'steps_per_iteration'):,.0f} | "
            f"{med(system, 'sps'):,.0f} | "
            f"{med('pgrad-fast', 'sps') / med(system, 'sps'):.2f}x | "
            f"{med('pgrad-same', 'sps') / med(system, 'sps'):.2f}x | "
            f"{med(system, 'startup_s'):.1f} | {med(system, 'imports_s'):.1f} | "
            f"{med(system, 'ray_to_ready_s'):.1f} | {med(system, 'startup_cpu_s'):.1f} |"
        )
    ours = min(med("pgrad-same", "startup_s"), med("pgrad-fast", "startup_s"))
    print(
        f"\nthroughput at 2 workers: pgrad-fast / rllib-tuned-2 = "
        f"{med('pgrad-fast', 'sps') / med('rllib-tuned-2', 'sps'):.1f}x (target >= 10x); "
        f"pgrad-same / {best_rllib} (the faster RLlib row) = "
        f"{med('pgrad-same', 'sps') / med(best_rllib, 'sps'):.1f}x"
    )
    print(
        f"start-up at 2 workers: pgrad / rllib-tuned-2 = "
        f"{ours / med('rllib-tuned-2', 'startup_s'):.2f} (target < 0.5); Ray start to ready: "
        f"{med('pgrad-same', 'ray_to_ready_s') / med('rllib-tuned-2', 'ray_to_ready_s'):.2f}; "
        f"CPU seconds to ready, pgrad-same: {med('pgrad-same', 'startup_cpu_s'):.1f} on "
        f"{os.cpu_count()} cores, so at least "
        f"{med('pgrad-same', 'startup_cpu_s') / (os.cpu_count() or 1):.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
