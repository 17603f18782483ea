"""Training throughput on CartPole-v1: pgrad against SB3 A2C and Tianshou REINFORCE, and against
the machine's limit, all in one run.

Every learner trains in its own worker process (see ``_common.py``) with its library's own
training loop. After a warm-up, the driver runs rounds; in each round every learner trains for
about ``--seconds`` seconds (A B C, then the next round in rotated order: B C A ...), so that
the machine's drift hits all of them alike. Throughput is env steps per second of training;
the tables give each learner's median over the rounds and the median over rounds of the
per-round ratios.

The machine's limit, measured in the same rounds: the work no policy-gradient trainer can skip,
each part timed alone at pgrad's sizes (N environments, T steps per update):

* stepping the numpy-vectorised CartPole with N precomputed actions;
* one batched policy call per step: the same network and distribution as pgrad's, forward
  and sample, under ``torch.inference_mode``;
* one forward and backward pass over each update's ``T x N`` batch: policy log-probabilities,
  entropy and critic values, the loss, ``backward``.

``limit = T N / (T (env + policy) + forward_backward)`` env steps per second; pgrad's throughput
is printed as a fraction of it.

``--tasks Acrobot-v1 Pendulum-v1`` runs, for each, pgrad's preset on pgrad's numpy-vectorised
environment and on Gymnasium's sync vector env, and SB3 A2C (rl-zoo settings, sync envs) as the
reference, the same way; then the vector environments alone, with random actions.

Usage::

    python bench/throughput.py            # about 6 minutes on 2 cores
    python bench/throughput.py --quick    # about 2 minutes
    python bench/throughput.py --tasks Acrobot-v1 Pendulum-v1 --rounds 5 --seconds 3
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from _common import Worker, machine, median, table

ENV_ID = "CartPole-v1"
BUDGET = 10**9  # never reached: every learner trains on until stopped


@dataclass
class Learner:
    label: str
    spec: dict[str, Any]
    group: str
    limit: tuple[int, int, tuple[int, ...]] | None = None  # (N, T, hidden) for pgrad rows
    worker: Worker | None = None
    last: dict[str, Any] = field(default_factory=dict)  # the worker's latest report
    chunk: int = 0
    rates: list[float] = field(default_factory=list)


def learners(quick: bool) -> list[Learner]:
    from pgrad.agents import CartPoleFast

    preset = CartPoleFast.default_config()
    rows = [
        Learner(
            "pgrad `cartpole` preset (8 envs, REINFORCE on whole episodes)",
            dict(library="pgrad", agent="cartpole"),
            "8 environments",
        ),
        Learner(
            "pgrad `cartpole-fast` preset, 8 envs",
            dict(library="pgrad", agent="cartpole-fast", num_envs=8),
            "8 environments",
            limit=(8, preset.num_steps, preset.hidden),
        ),
        Learner(
            "pgrad A2C, SB3's settings (8 envs x 5 steps)",
            dict(
                library="pgrad",
                agent="a2c",
                num_envs=8,
                num_steps=5,
                hidden=[64, 64],
                gae_lambda=1.0,
                learning_rate=7e-4,
                normalize_advantages=False,
            ),
            "8 environments",
        ),
        Learner(
            "SB3 A2C, rl-zoo (8 envs x 5 steps)", dict(library="sb3", algo="a2c"), "8 environments"
        ),
        Learner(
            "Tianshou REINFORCE, its test settings (8 envs)",
            dict(library="tianshou"),
            "8 environments",
        ),
        Learner(
            f"pgrad `cartpole-fast` preset ({preset.num_envs} envs)",
            dict(library="pgrad", agent="cartpole-fast"),
            "best settings",
            limit=(preset.num_envs, preset.num_steps, preset.hidden),
        ),
    ]
    if not quick:
        rows.append(
            Learner(
                "pgrad `cartpole-fast` preset, 1,024 envs",
                dict(library="pgrad", agent="cartpole-fast", num_envs=1024),
                "best settings",
                limit=(1024, preset.num_steps, preset.hidden),
            )
        )
    return rows


# -- the machine's limit ----------------------------------------------------------------------
class Limit:
    """Times the unavoidable parts at one size; ``measure`` adds one sample of each."""

    def __init__(self, num_envs: int, num_steps: int, hidden: tuple[int, ...]) -> None:
        import gymnasium as gym
        import torch

        from pgrad.policies import ValueFunction, policy_for

        self.N, self.T = num_envs, num_steps
        self.envs = gym.make_vec(ENV_ID, num_envs=num_envs, vectorization_mode="vector_entry_point")
        self.envs.reset(seed=0)
        self.actions = [np.random.default_rng(i).integers(0, 2, num_envs) for i in range(64)]
        self.policy = policy_for(4, self.envs.single_action_space, hidden)
        self.critic = ValueFunction(4, hidden)
        self.obs = torch.randn(num_envs, 4)
        self.batch_obs = torch.randn(num_steps + 1, num_envs, 4)
        self.batch_actions = torch.randint(0, 2, (num_steps, num_envs))
        self.advantages = torch.randn(num_steps, num_envs)
        self.env_s: list[float] = []
        self.policy_s: list[float] = []
        self.update_s: list[float] = []

    def _env(self, reps: int) -> float:
        start = time.perf_counter()
        for i in range(reps):
            self.envs.step(self.actions[i % 64])
        return (time.perf_counter() - start) / reps

    def _policy(self, reps: int) -> float:
        import torch

        start = time.perf_counter()
        with torch.inference_mode():
            for _ in range(reps):
                self.policy(self.obs).sample()
        return (time.perf_counter() - start) / reps

    def _update(self, reps: int) -> float:
        start = time.perf_counter()
        for _ in range(reps):
            dist = self.policy(self.batch_obs[:-1])
            log_prob = dist.log_prob(self.batch_actions)
            values = self.critic(self.batch_obs)
            loss = (
                -(log_prob * self.advantages).mean()
                - 0.01 * dist.entropy().mean()
                + (values[:-1] - self.advantages).square().mean()
            )
            loss.backward()
        return (time.perf_counter() - start) / reps

    def measure(self, seconds: float) -> None:
        """One sample of each part, about ``seconds`` in all."""
        per_update = self.T * (self._env(3) + self._policy(3)) + self._update(1)
        reps = max(1, int(seconds / 3 / per_update))
        self.env_s.append(self._env(reps * self.T))
        self.policy_s.append(self._policy(reps * self.T))
        self.update_s.append(self._update(reps))

    def steps_per_second(self) -> float:
        per_update = self.T * (median(self.env_s) + median(self.policy_s)) + median(self.update_s)
        return self.N * self.T / per_update


# -- where pgrad's time goes ---------------------------------------------------------------------
class _Timer:
    """Wraps callables so that the seconds spent in each (and the calls) add up per name."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self._undo: list[tuple[object, str, object]] = []

    def wrap(self, owner: object, attribute: str, name: str) -> None:
        original = getattr(owner, attribute)
        self.seconds[name], self.calls[name] = 0.0, 0

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - start
                self.calls[name] += 1

        self._undo.append((owner, attribute, vars(owner).get(attribute, _ABSENT)))
        setattr(owner, attribute, timed)

    def restore(self) -> None:
        for owner, attribute, original in reversed(self._undo):
            if original is _ABSENT:
                delattr(owner, attribute)
            else:
                setattr(owner, attribute, original)


_ABSENT = object()


def profile(agent_name: str, steps: int, **overrides: Any) -> str:
    """Train a pgrad agent in this process with timers around each part of its loop."""
    import tempfile

    import torch

    from pgrad.agents import AGENTS
    from pgrad.logger import Logger

    agent = AGENTS[agent_name](
        env_id=ENV_ID,
        seed=1,
        quiet=True,
        run_dir=tempfile.mkdtemp(prefix="pgrad-profile-"),
        **overrides,
    )
    agent.train(steps // 5)  # warm-up
    start_step = agent.global_step
    timer = _Timer()
    collector = agent.collector
    timer.wrap(agent, "collect", "collect")
    timer.wrap(collector, "_step", "step")
    timer.wrap(collector.envs, "step", "env")
    timer.wrap(collector, "_observe", "observe")  # tensors from numpy, NaN and mask checks
    timer.wrap(agent, "update", "update")
    timer.wrap(agent, "prepare", "prepare")
    timer.wrap(agent, "loss", "loss")
    timer.wrap(torch.Tensor, "backward", "backward")
    timer.wrap(torch.nn.utils, "clip_grad_norm_", "clip")
    timer.wrap(agent.optimizer, "step", "adam")
    for method in ("scalars", "episodes", "progress"):
        timer.wrap(Logger, method, "logging")
    timer.wrap(agent, "save_checkpoint", "checkpoint")
    start = time.perf_counter()
    try:
        agent.train(start_step + steps)
    finally:
        timer.restore()
    total = time.perf_counter() - start
    t = timer.seconds
    parts = [
        ("environment step (`VectorEnv.step`)", t["env"]),
        ("policy call: forward + sample", t["step"] - t["env"] - t["observe"]),
        ("observation to tensors + NaN check", t["observe"]),
        ("collector bookkeeping (buffers, masks, episode stats)", t["collect"] - t["step"]),
        ("prepare: critic values, GAE, advantage statistics", t["prepare"]),
        ("loss: policy and critic forward passes", t["loss"]),
        ("backward", t["backward"]),
        ("gradient clipping", t["clip"]),
        ("Adam step", t["adam"]),
        (
            "rest of `Agent.update` (schedules, metrics)",
            t["update"] - t["prepare"] - t["loss"] - t["backward"] - t["clip"] - t["adam"],
        ),
        ("TensorBoard logging and progress", t["logging"]),
        ("checkpoints", t["checkpoint"]),
        (
            "rest of the training loop",
            total - t["collect"] - t["update"] - t["logging"] - t["checkpoint"],
        ),
    ]
    updates = max(timer.calls["update"], 1)
    steps_done = agent.global_step - start_step
    rows = [
        [name, f"{seconds / updates * 1e3:.2f}", f"{seconds / total:.0%}"]
        for name, seconds in parts
    ]
    rows.append(
        ["**total**", f"{total / updates * 1e3:.2f}", f"{steps_done / total:,.0f} env steps/s"]
    )
    config = agent.config
    rollout = f"{config.num_steps} steps" if config.rollout == "steps" else "whole episodes"
    return (
        f"`{agent_name}` ({config.num_envs} envs x {rollout}, hidden {config.hidden}), "
        f"{updates} updates timed in one process:\n\n"
        + table(["part", "ms per update", "share"], rows)
    )


# -- Acrobot and Pendulum: numpy-vectorised against Gymnasium's sync vector env -------------------
CLASSIC = ("Acrobot-v1", "Pendulum-v1")


def classic_learners(env_id: str) -> list[Learner]:
    """pgrad's preset on pgrad's numpy-vectorised env and on Gymnasium's sync one, and SB3 A2C."""
    from pgrad.agents import PRESETS

    preset = PRESETS[env_id]
    n = preset.default_config().num_envs
    setting = f"{env_id}, preset sizes"
    return [
        Learner(
            f"pgrad `{preset.name}` preset ({n} envs), numpy-vectorised",
            dict(library="pgrad", agent=preset.name),
            setting,
        ),
        Learner(
            f"pgrad `{preset.name}` preset ({n} envs), Gymnasium sync",
            dict(library="pgrad", agent=preset.name, vectorization="sync"),
            setting,
        ),
        Learner("SB3 A2C, rl-zoo (Gymnasium sync envs)", dict(library="sb3", algo="a2c"), setting),
    ]


def env_alone(env_id: str, sizes: tuple[int, ...], seconds: float) -> str:
    """Env steps per second of the vector env alone (random actions precomputed), per size:
    pgrad's numpy-vectorised form against Gymnasium's sync vector env. Interleaved, medians of
    5 samples."""
    import gymnasium as gym

    from pgrad.envs import VECTOR_ENVS

    def rate(envs: Any, actions: list, reps: int) -> float:
        start = time.perf_counter()
        for i in range(reps):
            envs.step(actions[i % len(actions)])
        return reps * envs.num_envs / (time.perf_counter() - start)

    out = []
    for n in sizes:
        kinds = {
            "numpy": VECTOR_ENVS[env_id](num_envs=n),
            "sync": gym.make_vec(env_id, num_envs=n, vectorization_mode="sync"),
        }
        samples: dict[str, list[float]] = {kind: [] for kind in kinds}
        for envs in kinds.values():
            envs.reset(seed=0)
            envs.action_space.seed(0)
        actions = [kinds["numpy"].action_space.sample() for _ in range(32)]
        reps = {
            kind: max(1, int(rate(envs, actions, 3) * seconds / n)) for kind, envs in kinds.items()
        }
        for _ in range(5):
            for kind, envs in kinds.items():
                samples[kind].append(rate(envs, actions, reps[kind]))
        numpy_rate, sync_rate = median(samples["numpy"]), median(samples["sync"])
        ratios = [a / b for a, b in zip(samples["numpy"], samples["sync"])]
        out.append(
            [
                f"{n:,}",
                f"{numpy_rate:,.0f}",
                f"{sync_rate:,.0f}",
                f"{median(ratios):.1f}x",
                f"{min(ratios):.1f}-{max(ratios):.1f}",
            ]
        )
        for envs in kinds.values():
            envs.close()
    return table(
        [
            "envs",
            "pgrad numpy-vectorised (env steps/s)",
            "Gymnasium sync (env steps/s)",
            "ratio (median)",
            "range",
        ],
        out,
    )


# -- the run ------------------------------------------------------------------------------------
def measure(
    rows: list[Learner],
    env_id: str,
    rounds: int,
    seconds: float,
    args: argparse.Namespace,
    limits: dict | None = None,
) -> None:
    """Start every row's worker, warm it up, then run interleaved rounds (module docstring)."""
    limits = limits or {}
    try:
        for row in rows:
            python = sys.executable if row.spec["library"] == "pgrad" else args.peer_python
            row.worker = Worker(python)
            row.worker.start(
                {**row.spec, "env_id": env_id, "seed": 1, "budget": BUDGET, "threads": args.threads}
            )
            # warm-up (startup, first allocations), then size a chunk to take about `seconds`
            first = row.worker.run_until(1)
            row.last = row.worker.run_until(first["steps"] + 20_000)
            rate = (row.last["steps"] - first["steps"]) / max(
                row.last["train_time"] - first["train_time"], 1e-6
            )
            row.chunk = max(1, int(rate * seconds))
        for limit in limits.values():
            limit.measure(seconds / 4)
        for r in range(rounds):
            order = rows[r % len(rows) :] + rows[: r % len(rows)]
            for row in order:
                assert row.worker is not None
                before = row.last
                row.last = row.worker.run_until(before["steps"] + row.chunk)
                row.rates.append(
                    (row.last["steps"] - before["steps"])
                    / (row.last["train_time"] - before["train_time"])
                )
            for limit in limits.values():
                limit.measure(seconds)
            print(
                f"round {r + 1}/{rounds}: " + ", ".join(f"{row.rates[-1]:,.0f}" for row in rows),
                flush=True,
            )
    finally:
        for row in rows:
            if row.worker is not None:
                row.worker.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds of 1 s: a first look")
    parser.add_argument("--rounds", type=int, default=None, help="measured rounds (default 7)")
    parser.add_argument(
        "--seconds",
        type=float,
        default=None,
        help="training seconds per learner per round (default 4)",
    )
    parser.add_argument(
        "--tasks",
        nargs="+",
        default=[ENV_ID],
        choices=[ENV_ID, *CLASSIC],
        help="CartPole-v1 (the default): the full comparison; Acrobot-v1, Pendulum-v1: pgrad's "
        "numpy-vectorised env against Gymnasium's sync one",
    )
    parser.add_argument(
        "--peer-python",
        default=sys.executable,
        help="interpreter with stable-baselines3 and tianshou installed",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads in every learner")
    args = parser.parse_args(argv)
    rounds = args.rounds or (3 if args.quick else 7)
    seconds = args.seconds or (1.0 if args.quick else 4.0)

    import torch

    torch.set_num_threads(args.threads)
    for env_id in args.tasks:
        print(f"# Training throughput, {env_id}\n\n{machine()}\n", flush=True)
        if env_id in CLASSIC:
            rows = classic_learners(env_id)
            measure(rows, env_id, rounds, seconds, args)
            report(rows, {}, rounds, seconds)
            print(f"\n## {env_id}: the vector env alone, random actions\n")
            print(env_alone(env_id, (16, 64, 256), seconds / 4), flush=True)
            continue
        rows = learners(args.quick)
        limits = {row.limit: Limit(*row.limit) for row in rows if row.limit}
        measure(rows, env_id, rounds, seconds, args, limits)
        report(rows, limits, rounds, seconds)
        print("\n## Where pgrad's time goes\n")
        steps = 100_000 if args.quick else 400_000
        print(profile("cartpole-fast", steps), flush=True)
        print()
        print(profile("cartpole-fast", steps // 10, num_envs=8), flush=True)


def report(rows: list[Learner], limits: dict, rounds: int, seconds: float) -> None:
    sb3 = next(row for row in rows if row.spec["library"] == "sb3")
    out = []
    for row in rows:
        ratios = [a / b for a, b in zip(row.rates, sb3.rates)]
        out.append(
            [
                row.group,
                row.label,
                f"{median(row.rates):,.0f}",
                f"{median(ratios):.2f}x",
                f"{min(ratios):.2f}-{max(ratios):.2f}",
            ]
        )
    print(
        f"\n## Env steps per second of training ({rounds} rounds of ~{seconds:g} s each, medians)\n"
    )
    print(
        table(
            [
                "setting",
                "learner",
                "env steps/s",
                "vs SB3 A2C (median of per-round ratios)",
                "per-round range",
            ],
            out,
        )
    )
    lim_rows = []
    for row in rows:
        if not row.limit:
            continue
        limit = limits[row.limit]
        N, T, hidden = row.limit
        ceiling = limit.steps_per_second()
        lim_rows.append(
            [
                row.label,
                f"{N} x {T}",
                "x".join(map(str, hidden)) or "linear",
                f"{median(limit.env_s) * 1e6:,.0f}",
                f"{median(limit.policy_s) * 1e6:,.0f}",
                f"{median(limit.update_s) * 1e3:,.2f}",
                f"{ceiling:,.0f}",
                f"{median(row.rates):,.0f}",
                f"{median(row.rates) / ceiling:.0%}",
            ]
        )
    if not lim_rows:
        return
    print("\n## The machine's limit at pgrad's sizes (same run)\n")
    print(
        table(
            [
                "pgrad learner",
                "N envs x T steps",
                "hidden",
                "env step (us)",
                "policy call (us)",
                "fwd+bwd per update (ms)",
                "limit (env steps/s)",
                "pgrad (env steps/s)",
                "pgrad / limit",
            ],
            lim_rows,
        )
    )


if __name__ == "__main__":
    main()
