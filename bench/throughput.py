"""Training throughput: pgrad against SB3 A2C and Tianshou REINFORCE on CartPole-v1 and against
the machine's limit (the ``a2c`` section), pgrad's PPO against SB3's PPO with rl-zoo's
settings on CartPole-v1 and Hopper-v5 (the ``ppo`` section), and pgrad's A2C presets on
Acrobot-v1 and Pendulum-v1 with pgrad's numpy-vectorised environments and with Gymnasium's sync
vector env, against SB3 A2C (the ``classic`` section), each section in one run.

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

Usage::

    python bench/throughput.py                    # all sections, about 15 minutes on 2 cores
    python bench/throughput.py --sections ppo     # PPO only
    python bench/throughput.py --sections classic # Acrobot and Pendulum, about 5 minutes
    python bench/throughput.py --quick            # about 3 minutes
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
    env_id: str = ENV_ID
    warmup: int = 20_000  # env steps before the chunk is sized
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


# rl-zoo's PPO settings (_common.ZOO) in pgrad's terms; SB3's batch_size is a minibatch's size
PGRAD_ZOO_PPO: dict[str, dict[str, Any]] = {
    "CartPole-v1": dict(
        num_envs=8,
        num_steps=32,
        update_epochs=20,
        num_minibatches=1,
        gamma=0.98,
        gae_lambda=0.8,
        learning_rate=1e-3,
        learning_rate_final=0.0,
        ent_coef=0.0,
    ),
    "Hopper-v5": dict(
        num_envs=1,
        num_steps=512,
        update_epochs=5,
        num_minibatches=16,
        gamma=0.999,
        gae_lambda=0.99,
        learning_rate=9.80828e-05,
        learning_rate_final=None,
        ent_coef=0.00229519,
        clip_coef=0.2,
        max_grad_norm=0.7,
        vf_coef=0.835671,
        hidden=(256, 256),
        activation="relu",
        log_std_init=-2.0,
        normalize_obs=True,
        normalize_reward=True,
    ),
}


def ppo_learners(quick: bool) -> list[Learner]:
    """pgrad PPO and SB3 PPO with rl-zoo's settings, on CartPole-v1 and Hopper-v5."""
    rows = []
    for env_id, described in (
        ("CartPole-v1", "8 envs x 32 steps, 20 epochs of 256"),
        ("Hopper-v5", "1 env x 512 steps, 5 epochs of 16 x 32, 256x256 ReLU, normalised"),
    ):
        warmup = 20_000 if env_id == "CartPole-v1" else 2_048
        rows += [
            Learner(
                f"pgrad PPO, rl-zoo's settings ({described})",
                dict(library="pgrad", agent="ppo", checkpoint_every=0, **PGRAD_ZOO_PPO[env_id]),
                env_id,
                env_id=env_id,
                warmup=warmup,
            ),
            Learner(
                f"SB3 PPO, rl-zoo ({described})",
                dict(library="sb3", algo="ppo"),
                env_id,
                env_id=env_id,
                warmup=warmup,
            ),
        ]
    if not quick:
        rows.append(
            Learner(
                "pgrad `hopper` preset (CleanRL's settings: 1 env x 2,048 steps, 10 epochs of "
                "32 x 64, 64x64 tanh)",
                dict(library="pgrad", agent="hopper", checkpoint_every=0),
                "Hopper-v5",
                env_id="Hopper-v5",
                warmup=2_048,
            )
        )
    return rows


# -- Acrobot and Pendulum: numpy-vectorised against Gymnasium's sync vector env -----------------
CLASSIC = {"Acrobot-v1": "acrobot", "Pendulum-v1": "pendulum-a2c"}
"""The tasks of the ``classic`` section and pgrad's A2C preset for each."""


def classic_learners() -> list[Learner]:
    """Per task: pgrad's A2C preset on its numpy-vectorised env and on Gymnasium's sync one, and
    SB3 A2C with rl-zoo's settings (on its own sync vector env, as SB3 always steps)."""
    from pgrad.agents import AGENTS

    rows = []
    for env_id, preset in CLASSIC.items():
        config = AGENTS[preset].default_config()
        sizes = f"{config.num_envs} envs x {config.num_steps} steps"
        rows += [
            Learner(
                f"pgrad `{preset}` preset ({sizes}), numpy-vectorised (`vectorization=auto`)",
                dict(library="pgrad", agent=preset, checkpoint_every=0),
                env_id,
                env_id=env_id,
            ),
            Learner(
                f"pgrad `{preset}` preset ({sizes}), Gymnasium's sync vector env "
                "(`vectorization=sync`)",
                dict(library="pgrad", agent=preset, vectorization="sync", checkpoint_every=0),
                env_id,
                env_id=env_id,
            ),
            Learner("SB3 A2C, rl-zoo", dict(library="sb3", algo="a2c"), env_id, env_id=env_id),
        ]
    return rows


def env_alone(env_id: str, sizes: tuple[int, ...], seconds: float) -> str:
    """Env steps per second of the vector env alone (random actions drawn beforehand), per size:
    pgrad's numpy-vectorised form against Gymnasium's sync vector env, interleaved, medians of 5
    samples of about ``seconds`` each."""
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
        for envs in kinds.values():
            envs.reset(seed=0)
        kinds["numpy"].action_space.seed(0)
        actions = [kinds["numpy"].action_space.sample() for _ in range(32)]
        reps = {kind: max(1, int(rate(e, actions, 3) * seconds / n)) for kind, e in kinds.items()}
        samples: dict[str, list[float]] = {kind: [] for kind in kinds}
        for _ in range(5):
            for kind, envs in kinds.items():
                samples[kind].append(rate(envs, actions, reps[kind]))
        ratios = [a / b for a, b in zip(samples["numpy"], samples["sync"])]
        out.append(
            [
                f"{n:,}",
                f"{median(samples['numpy']):,.0f}",
                f"{median(samples['sync']):,.0f}",
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
            "per-sample range",
        ],
        out,
    )


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
        space = self.envs.single_observation_space
        self.policy = policy_for(space, self.envs.single_action_space, hidden)
        self.critic = ValueFunction(space, hidden)
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


def profile(agent_name: str, steps: int, env_id: str = ENV_ID, **overrides: Any) -> str:
    """Train a pgrad agent in this process with timers around each part of its loop."""
    import tempfile

    import torch

    from pgrad.agents import AGENTS
    from pgrad.logger import Logger

    agent = AGENTS[agent_name](
        env_id=env_id,
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
    timer.wrap(collector, "_observe", "observe")
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
        ("observation encode + NaN check", t["observe"]),
        ("collector bookkeeping (buffers, masks, episode stats)", t["collect"] - t["step"]),
        ("prepare: values, GAE, statistics (once)", t["prepare"]),
        ("loss: forward passes (each minibatch)", t["loss"]),
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
    epochs = (
        f", {config.update_epochs} epochs x {config.num_minibatches} minibatches"
        if config.update_epochs * config.num_minibatches > 1
        else ""
    )
    return (
        f"`{agent_name}` on {env_id} ({config.num_envs} envs x {rollout}{epochs}, "
        f"hidden {config.hidden}), "
        f"{updates} updates timed in one process:\n\n"
        + table(["part", "ms per update", "share"], rows)
    )


# -- the run ------------------------------------------------------------------------------------
def measure(
    rows: list[Learner],
    limits: dict,
    rounds: int,
    seconds: float,
    threads: int,
    peer_python: str,
) -> None:
    """Interleaved rounds: every learner trains about ``seconds`` per round, in rotated order."""
    try:
        for row in rows:
            python = sys.executable if row.spec["library"] == "pgrad" else peer_python
            row.worker = Worker(python)
            row.worker.start(
                {
                    **row.spec,
                    "env_id": row.env_id,
                    "seed": 1,
                    "budget": BUDGET,
                    "threads": threads,
                }
            )
            # warm-up (startup, first allocations), then size a chunk to take about `seconds`
            first = row.worker.run_until(1)
            row.last = row.worker.run_until(first["steps"] + row.warmup)
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
        "--peer-python",
        default=sys.executable,
        help="interpreter with stable-baselines3 and tianshou installed",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads in every learner")
    parser.add_argument(
        "--sections",
        nargs="+",
        default=["a2c", "ppo", "classic"],
        choices=["a2c", "ppo", "classic"],
        help="what to run",
    )
    args = parser.parse_args(argv)
    rounds = args.rounds or (3 if args.quick else 7)
    seconds = args.seconds or (1.0 if args.quick else 4.0)

    import torch

    torch.set_num_threads(args.threads)
    print(f"# Training throughput\n\n{machine()}\n", flush=True)
    if "a2c" in args.sections:
        rows = learners(args.quick)
        limits = {row.limit: Limit(*row.limit) for row in rows if row.limit}
        measure(rows, limits, rounds, seconds, args.threads, args.peer_python)
        print(
            f"\n## {ENV_ID}: env steps per second of training ({rounds} rounds of ~{seconds:g} s "
            "each, medians)\n"
        )
        report(rows, "SB3 A2C")
        report_limits(rows, limits)
    if "ppo" in args.sections:
        rows = ppo_learners(args.quick)
        measure(rows, {}, rounds, seconds, args.threads, args.peer_python)
        print(
            f"\n## PPO: env steps per second of training ({rounds} rounds of ~{seconds:g} s "
            "each, medians)\n"
        )
        report(rows, "SB3 PPO on the same task")
    if "classic" in args.sections:
        rows = classic_learners()
        measure(rows, {}, rounds, seconds, args.threads, args.peer_python)
        print(
            f"\n## Acrobot-v1 and Pendulum-v1: env steps per second of training ({rounds} rounds "
            f"of ~{seconds:g} s each, medians)\n"
        )
        report(rows, "SB3 A2C on the same task")
        for env_id in CLASSIC:
            print(f"\n## {env_id}: the vector environment alone, random actions\n")
            print(env_alone(env_id, (16, 64, 256), seconds / 4), flush=True)
    if not {"a2c", "ppo"} & set(args.sections):
        return
    print("\n## Where pgrad's time goes\n")
    if "a2c" in args.sections:
        steps = 100_000 if args.quick else 400_000
        print(profile("cartpole-fast", steps), flush=True)
        print()
        print(profile("cartpole-fast", steps // 10, num_envs=8), flush=True)
        print()
    if "ppo" in args.sections:
        steps = 10_240 if args.quick else 40_960
        print(profile("ppo", steps, **PGRAD_ZOO_PPO["CartPole-v1"]), flush=True)
        print()
        print(profile("ppo", steps // 4, "Hopper-v5", **PGRAD_ZOO_PPO["Hopper-v5"]), flush=True)


def report(rows: list[Learner], reference: str) -> None:
    """Each row's median rate and its per-round ratio to the SB3 row on the same task."""
    out = []
    for row in rows:
        sb3 = next(r for r in rows if r.spec["library"] == "sb3" and r.env_id == row.env_id)
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
        table(
            [
                "setting",
                "learner",
                "env steps/s",
                f"vs {reference} (median of per-round ratios)",
                "per-round range",
            ],
            out,
        )
    )


def report_limits(rows: list[Learner], limits: dict) -> None:
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
