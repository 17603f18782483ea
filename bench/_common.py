"""Shared parts of the benchmarks: learners behind one interface, worker processes, statistics.

Each learner (pgrad, Stable-Baselines3, Tianshou) trains in its own worker process. A worker
runs its library's own training loop, unchanged, and is paused between two updates by a hook
(pgrad: the ``callback`` of ``Agent.train``, after each update; SB3: a callback's ``on_rollout_start``; Tianshou:
the trainer's ``training_fn``). At a pause it reports its env steps and the wall-clock seconds it
has spent training, then waits for the driver's next command: train on, evaluate, or stop. So
the driver can interleave libraries (A B C A B C) on the same machine in the same minutes, and
time spent paused, evaluating or starting up is never counted as training.

This file is also the worker's entry point (``python _common.py --worker``), and imports neither
pgrad nor the other libraries at module level: a worker for SB3 or Tianshou may run under
another interpreter (``--peer-python``) that has only those installed.

Protocol (JSON lines): the driver sends a learner spec, then commands
``{"cmd": "run_until", "steps": S}`` (train until at least ``S`` env steps, stopping at an
update boundary), ``{"cmd": "evaluate", "episodes": E}`` and ``{"cmd": "stop"}``; the worker
answers each with one JSON object.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent

# -- what each library is run with ---------------------------------------------------------
# rl-baselines3-zoo's hyperparameters (hyperparams/a2c.yml, ppo.yml) for the tasks benchmarked here
ZOO: dict[tuple[str, str], dict[str, Any]] = {
    ("a2c", "CartPole-v1"): {"n_envs": 8, "n_timesteps": 500_000, "ent_coef": 0.0},
    ("a2c", "Acrobot-v1"): {
        "n_envs": 16,
        "n_timesteps": 500_000,
        "normalize": True,
        "ent_coef": 0.0,
    },
    ("a2c", "Pendulum-v1"): {
        "n_envs": 8,
        "n_timesteps": 1_000_000,
        "normalize": True,
        "ent_coef": 0.0,
        "max_grad_norm": 0.5,
        "n_steps": 8,
        "gae_lambda": 0.9,
        "vf_coef": 0.4,
        "gamma": 0.9,
        "use_rms_prop": True,
        "normalize_advantage": False,
        "learning_rate": "lin_7e-4",
        "use_sde": True,
        "policy_kwargs": {"log_std_init": -2, "ortho_init": False},
    },
    ("ppo", "CartPole-v1"): {
        "n_envs": 8,
        "n_timesteps": 100_000,
        "n_steps": 32,
        "batch_size": 256,
        "gae_lambda": 0.8,
        "gamma": 0.98,
        "n_epochs": 20,
        "ent_coef": 0.0,
        "learning_rate": "lin_0.001",
        "clip_range": "lin_0.2",
    },
    # rl-zoo's tuned Hopper-v3 settings, on Hopper-v5 (policy_kwargs' activation by name)
    ("ppo", "Hopper-v5"): {
        "normalize": True,
        "n_envs": 1,
        "n_timesteps": 1_000_000,
        "batch_size": 32,
        "n_steps": 512,
        "gamma": 0.999,
        "learning_rate": 9.80828e-05,
        "ent_coef": 0.00229519,
        "clip_range": 0.2,
        "n_epochs": 5,
        "gae_lambda": 0.99,
        "max_grad_norm": 0.7,
        "vf_coef": 0.835671,
        "policy_kwargs": {
            "log_std_init": -2,
            "ortho_init": False,
            "activation_fn": "relu",
            "net_arch": {"pi": [256, 256], "vf": [256, 256]},
        },
    },
    ("ppo", "Acrobot-v1"): {
        "n_envs": 16,
        "n_timesteps": 1_000_000,
        "normalize": True,
        "n_steps": 256,
        "gae_lambda": 0.94,
        "gamma": 0.99,
        "n_epochs": 4,
        "ent_coef": 0.0,
    },
}

# Tianshou's own REINFORCE test settings (test/discrete/test_reinforce.py, Tianshou 2.0)
TIANSHOU_REINFORCE: dict[str, Any] = {
    "lr": 1e-3,
    "gamma": 0.95,
    "epochs": 10,
    "epoch_num_steps": 40_000,
    "episodes_per_collect": 8,
    "repeat": 2,
    "batch_size": 64,
    "hidden_sizes": [64, 64],
    "num_envs": 8,
    "return_standardization": True,
}


# -- evaluation (any library) ----------------------------------------------------------------
def evaluate(
    act: Callable[[np.ndarray], np.ndarray], env_id: str, episodes: int = 10, seed: int = 10_000
) -> list[float]:
    """Returns of ``episodes`` deterministic episodes, env ``i`` reset with ``seed + i``.

    The same evaluator for every library: ``act`` maps a batch of raw observations to actions.
    """
    import gymnasium as gym

    envs = [gym.make(env_id) for _ in range(episodes)]
    obs = np.stack([env.reset(seed=seed + i)[0] for i, env in enumerate(envs)])
    returns = np.zeros(episodes)
    running = np.ones(episodes, dtype=bool)
    while running.any():
        live = np.flatnonzero(running)
        actions = act(obs[live])
        for action, i in zip(actions, live):
            obs[i], reward, terminated, truncated, _ = envs[i].step(action)
            returns[i] += reward
            running[i] = not (terminated or truncated)
    for env in envs:
        env.close()
    return returns.tolist()


# -- learners (worker side) -------------------------------------------------------------------
Pause = Callable[[int], None]


class Stop(Exception):
    """Raised from a pause to end training early."""


class PgradLearner:
    """A pgrad agent (a preset from ``pgrad.agents`` or a generic one) with config overrides."""

    def __init__(
        self, env_id: str, seed: int, agent: str = "a2c", budget: int = 0, **overrides: Any
    ) -> None:
        from pgrad.agents import AGENTS

        if "hidden" in overrides:
            overrides["hidden"] = tuple(overrides["hidden"])
        cls = AGENTS[agent]
        self.run_dir = tempfile.mkdtemp(prefix="pgrad-bench-")
        self.agent = cls(env_id=env_id, seed=seed, run_dir=self.run_dir, quiet=True, **overrides)
        self.budget = budget or self.agent.config.total_steps

    @property
    def steps(self) -> int:
        return self.agent.global_step

    def train(self, pause: Pause) -> None:
        self.agent.train(self.budget, callback=lambda agent, metrics: pause(agent.global_step))

    def act(self, obs: np.ndarray) -> np.ndarray:
        return self.agent.act(obs, deterministic=True)


def _zoo_schedule(value: Any) -> Any:
    """rl-zoo's ``lin_X``: X decayed linearly to 0 over the run."""
    if isinstance(value, str) and value.startswith("lin_"):
        start = float(value[4:])
        return lambda progress_remaining: progress_remaining * start
    return value


class SB3Learner:
    """Stable-Baselines3 A2C or PPO with rl-zoo's hyperparameters for the task."""

    def __init__(
        self, env_id: str, seed: int, algo: str = "a2c", budget: int = 0, **changes: Any
    ) -> None:
        import stable_baselines3 as sb3
        from stable_baselines3.common.env_util import make_vec_env
        from stable_baselines3.common.vec_env import VecNormalize

        hyper = {**ZOO[(algo, env_id)], **changes}
        self.budget = budget or int(hyper.pop("n_timesteps"))
        hyper.pop("n_timesteps", None)
        venv = make_vec_env(env_id, n_envs=hyper.pop("n_envs"), seed=seed)
        self.normalizer = None
        if hyper.pop("normalize", False):
            venv = self.normalizer = VecNormalize(venv, gamma=hyper.get("gamma", 0.99))
        hyper = {k: _zoo_schedule(v) for k, v in hyper.items()}
        if "policy_kwargs" in hyper:
            import torch

            activations = {"relu": torch.nn.ReLU, "tanh": torch.nn.Tanh}
            kwargs = dict(hyper["policy_kwargs"])
            kwargs["activation_fn"] = activations[kwargs.get("activation_fn", "tanh")]
            hyper["policy_kwargs"] = kwargs
        cls = {"a2c": sb3.A2C, "ppo": sb3.PPO}[algo]
        self.model = cls("MlpPolicy", venv, seed=seed, device="cpu", verbose=0, **hyper)

    @property
    def steps(self) -> int:
        return self.model.num_timesteps

    def train(self, pause: Pause) -> None:
        from stable_baselines3.common.callbacks import BaseCallback

        class PauseCallback(BaseCallback):
            def _on_rollout_start(self) -> None:
                pause(self.model.num_timesteps)

            def _on_step(self) -> bool:
                return True

        self.model.learn(self.budget, callback=PauseCallback())

    def act(self, obs: np.ndarray) -> np.ndarray:
        if self.normalizer is not None:
            obs = self.normalizer.normalize_obs(obs)
        actions, _ = self.model.predict(obs, deterministic=True)
        return actions


class TianshouReinforceLearner:
    """Tianshou 2.0 REINFORCE, set up as in Tianshou's own CartPole test."""

    def __init__(self, env_id: str, seed: int, budget: int = 0, **changes: Any) -> None:
        import gymnasium as gym
        import torch
        from tianshou.algorithm import Reinforce
        from tianshou.algorithm.modelfree.reinforce import ProbabilisticActorPolicy
        from tianshou.algorithm.optim import AdamOptimizerFactory
        from tianshou.data import Collector, VectorReplayBuffer
        from tianshou.env import DummyVectorEnv
        from tianshou.utils.net.common import Net

        args = {**TIANSHOU_REINFORCE, **changes}
        self.args = args
        self.budget = budget or args["epochs"] * args["epoch_num_steps"]
        env = gym.make(env_id)
        self.envs = DummyVectorEnv([lambda: gym.make(env_id) for _ in range(args["num_envs"])])
        np.random.seed(seed)
        torch.manual_seed(seed)
        self.envs.seed(seed)
        self.net = Net(
            state_shape=env.observation_space.shape,
            action_shape=env.action_space.n,
            hidden_sizes=args["hidden_sizes"],
            softmax=True,
        )
        for module in self.net.modules():
            if isinstance(module, torch.nn.Linear):
                torch.nn.init.orthogonal_(module.weight, gain=np.sqrt(2))
                torch.nn.init.zeros_(module.bias)
        policy = ProbabilisticActorPolicy(
            actor=self.net,
            dist_fn=torch.distributions.Categorical,
            action_space=env.action_space,
            action_scaling=False,
        )
        self.algorithm = Reinforce(
            policy=policy,
            optim=AdamOptimizerFactory(lr=args["lr"]),
            gamma=args["gamma"],
            return_standardization=args["return_standardization"],
        )
        self.collector = Collector(
            self.algorithm, self.envs, VectorReplayBuffer(20_000, args["num_envs"])
        )

    @property
    def steps(self) -> int:
        return int(self.collector.collect_step)

    def train(self, pause: Pause) -> None:
        from tianshou.trainer import OnPolicyTrainerParams

        def training_fn(epoch: int, env_step: int) -> None:
            pause(env_step)

        args = self.args
        params = OnPolicyTrainerParams(
            training_collector=self.collector,
            max_epochs=-(-self.budget // args["epoch_num_steps"]),
            epoch_num_steps=args["epoch_num_steps"],
            collection_step_num_episodes=args["episodes_per_collect"],
            collection_step_num_env_steps=None,
            update_step_num_repetitions=args["repeat"],
            batch_size=args["batch_size"],
            training_fn=training_fn,
            verbose=False,
            show_progress=False,
        )
        self.algorithm.run_training(params)

    def act(self, obs: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad():
            probs, _ = self.net(torch.as_tensor(obs, dtype=torch.float32))
        return probs.argmax(-1).numpy()


LEARNERS = {"pgrad": PgradLearner, "sb3": SB3Learner, "tianshou": TianshouReinforceLearner}


# -- the worker process --------------------------------------------------------------------------
class _Controller:
    """Serves the driver's commands; ``pause`` is the hook the learner calls between updates."""

    def __init__(self, learner: Any, send: Callable[[dict], None]) -> None:
        self.learner, self.send = learner, send
        self.target = 0
        self.train_time = 0.0
        self.resumed = time.perf_counter()
        self.finished = False

    def pause(self, steps: int) -> None:
        if steps < self.target and not self.finished:
            return
        self.train_time += time.perf_counter() - self.resumed
        self.send({"steps": int(steps), "train_time": self.train_time, "finished": self.finished})
        self.serve()
        self.resumed = time.perf_counter()

    def serve(self) -> None:
        """Answer commands until one says to train on (returns) or to stop (raises ``Stop``)."""
        while line := sys.stdin.readline():
            command = json.loads(line)
            if command["cmd"] == "run_until":
                if self.finished:  # the budget is spent: nothing more to train
                    self.send(
                        {
                            "steps": int(self.learner.steps),
                            "train_time": self.train_time,
                            "finished": True,
                        }
                    )
                    continue
                self.target = int(command["steps"])
                return
            if command["cmd"] == "evaluate":
                returns = evaluate(self.learner.act, command["env_id"], command["episodes"])
                self.send({"returns": returns, "mean_return": float(np.mean(returns))})
                continue
            raise Stop
        raise Stop


def worker_main() -> None:
    """Serve learners one after another: a spec line starts one, ``stop`` ends it."""
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # whatever the libraries print goes to stderr, not into the protocol

    def send(message: dict) -> None:
        out.write(json.dumps(message) + "\n")

    import torch

    while line := sys.stdin.readline():
        spec = json.loads(line)
        torch.set_num_threads(spec.pop("threads", 1))
        learner = LEARNERS[spec.pop("library")](**spec)
        control = _Controller(learner, send)
        send({"ready": True})
        try:
            control.serve()
            control.resumed = time.perf_counter()
            learner.train(control.pause)
            control.finished = True
            control.pause(learner.steps)
        except Stop:
            pass
        send({"stopped": True})


# -- the driver side -----------------------------------------------------------------------------
class Worker:
    """A process that runs learners, one at a time; see the module docstring for the protocol.

    Args:
        python: the interpreter to run it with (the peers' own environment, if they need one).
    """

    def __init__(self, python: str = sys.executable) -> None:
        # the worker's stderr, kept for as long as the worker runs (shown if it dies)
        self.log = tempfile.NamedTemporaryFile(  # noqa: SIM115
            "w+", prefix="bench-worker-", suffix=".log"
        )
        self.proc = subprocess.Popen(
            [python, str(HERE / "_common.py"), "--worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            bufsize=1,
        )
        self.spec: dict[str, Any] | None = None

    def start(self, spec: dict[str, Any]) -> None:
        """Build a learner: ``library`` (pgrad, sb3 or tianshou), ``env_id``, ``seed`` and the
        learner's keyword arguments."""
        self.spec = spec
        self._send(spec)
        self._receive()

    def _send(self, message: dict) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(message) + "\n")
        self.proc.stdin.flush()

    def _receive(self) -> dict:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.log.seek(0)
            tail = "".join(self.log.readlines()[-15:])
            raise RuntimeError(f"worker for {self.spec} died:\n{tail}")
        return json.loads(line)

    def run_until(self, steps: int) -> dict:
        """Train until at least ``steps`` env steps; ``{"steps", "train_time", "finished"}``."""
        self._send({"cmd": "run_until", "steps": int(steps)})
        return self._receive()

    def evaluate(self, episodes: int = 10) -> dict:
        assert self.spec is not None
        self._send({"cmd": "evaluate", "episodes": episodes, "env_id": self.spec["env_id"]})
        return self._receive()

    def stop(self) -> None:
        """End the current learner; the process waits for the next ``start``."""
        self._send({"cmd": "stop"})
        self._receive()
        self.spec = None

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                if self.spec is not None:
                    self.stop()
                assert self.proc.stdin is not None
                self.proc.stdin.close()
                self.proc.wait(timeout=30)
            except (BrokenPipeError, RuntimeError, subprocess.TimeoutExpired):
                self.proc.kill()
        self.log.close()

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- statistics and reporting ----------------------------------------------------------------------
def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def machine() -> str:
    """One line: date, CPU, cores, Python and library versions."""
    import importlib.metadata as md

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = []
    for name in ("pgrad", "torch", "gymnasium", "numpy", "stable-baselines3", "tianshou"):
        with contextlib.suppress(md.PackageNotFoundError):
            versions.append(f"{name} {md.version(name)}")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{time.strftime('%Y-%m-%d %H:%M')}, {cpu}, {os.cpu_count()} cores "
        f"(load {load:.1f} at start), Python {platform.python_version()}, " + ", ".join(versions)
    )


if __name__ == "__main__" and sys.argv[1:] == ["--worker"]:
    worker_main()
