"""The agent: one fixed training loop over small, replaceable parts.

```
for each update:
    rollout  = collect()                  # Rollout [T, N], one policy call per step
    advantages, value targets             # pgrad.returns / pgrad.baselines
    loss     = reinforce + entropy + value   # pgrad.losses, via Agent.compute_loss
    optimizer step with gradient clipping; log once; checkpoint on the way
```

Subclass ``Agent`` (one level deep) to change defaults and hooks: ``defaults`` (config values),
``make_env``, ``make_policy``, ``make_critic``, ``preprocess_obs``. ``compute_loss`` is a plain
method: wrap it to add a loss term without touching ``train``.
"""

from __future__ import annotations

import contextlib
import math
import signal
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import VectorEnv
from torch import Tensor, nn

from pgrad import checkpoint as ckpt
from pgrad.baselines import EMABaseline, group_normalize, leave_one_out
from pgrad.config import Config
from pgrad.distributed import WorkerError
from pgrad.envs_util import (
    EnvError,
    accepts_seed_list,
    derive_seed,
    make_vector_env,
    rng_state,
    seed_everything,
    set_rng_state,
)
from pgrad.errors import first_line
from pgrad.logger import Logger
from pgrad.losses import (
    LossParts,
    entropy_bonus,
    explained_variance,
    normalize_advantages,
    reinforce_loss,
    value_loss,
)
from pgrad.policies import Policy, RunningNorm, ValueFunction, observation_encoder, policy_for
from pgrad.returns import discounted_returns, gae
from pgrad.rollout import Collector, NonFiniteError, Rollout
from pgrad.schedules import schedule_value

EPISODE_STEP_CAP = 100_000


class TrainingError(RuntimeError):
    """Training cannot go on (non-finite numbers); the last good weights were checkpointed."""


class Agent:
    """A policy-gradient agent: REINFORCE with a configurable baseline, or A2C/VPG with GAE.

    Python API: ``train(total_steps)``, ``act(obs, deterministic)``, ``evaluate(episodes)``,
    ``save(path)``, ``Agent.load(path)``; ``Agent.resume(run_dir)`` continues a run.

    Args:
        config: the run's hyperparameters; ``None`` takes this class's ``default_config()``.
        run_dir: where TensorBoard events, ``config.json`` and ``checkpoints/`` go; ``None``
            creates ``runs/<env>__<agent>__<seed>__<unix-time>`` when training starts.
        quiet: no progress bar and no summary lines.
        learner: ``False`` builds an agent that only acts and collects (no critic, no
            optimizer): what a Ray worker and ``pgrad eval`` use; it starts about 2 s faster,
            the first optimizer's import of ``torch._dynamo``.
        **overrides: config fields to change, e.g. ``Agent(total_steps=10_000, seed=3)``.
    """

    name: ClassVar[str] = "agent"
    env_id: ClassVar[str | None] = None
    defaults: ClassVar[dict[str, Any]] = {}
    action_spaces: ClassVar[tuple[type[gym.Space], ...] | None] = None
    """Action space types this agent is made for (``None``: any the policies support)."""

    def __init__(
        self,
        config: Config | None = None,
        run_dir: str | Path | None = None,
        quiet: bool = False,
        learner: bool = True,
        **overrides: Any,
    ) -> None:
        config = config or self.default_config()
        self.config = config.replace(**overrides) if overrides else config
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.quiet = quiet
        self.learner = learner
        self.device = self._pick_device(self.config.device)
        # before any network exists: orthogonal init's numerics depend on the thread count
        torch.set_num_threads(self.config.torch_threads)
        seed_everything(self.config.seed)
        self.envs = self.make_env()
        self.obs_space = self.envs.single_observation_space
        self.action_space = self.envs.single_action_space
        if self.action_spaces and not isinstance(self.action_space, self.action_spaces):
            kinds = " or ".join(k.__name__ for k in self.action_spaces)
            self.envs.close()
            raise EnvError(
                f"agent {self.name} is made for {kinds} actions, but "
                f"{self.config.env_id} has {self.action_space}; use --agent a2c or reinforce"
            )
        try:
            self.obs_dim, self._encode = observation_encoder(self.obs_space)
        except TypeError as err:
            self.envs.close()
            raise EnvError(f"{self.config.env_id}: {err}") from None
        self._launched = None
        try:
            # Ray workers start (and build their own agents) while this process builds its networks
            self._launched = self._launch_workers()
            self._build_networks()
            self.collector = self.make_collector()
        except BaseException:
            if self._launched is not None:
                self._launched.close()
            self.envs.close()
            raise
        finally:
            launched, self._launched = self._launched, None
        if launched is not None and launched is not self.collector:
            launched.close()  # a make_collector override did not use them

    def _build_networks(self) -> None:
        self.policy = self.make_policy(self.obs_dim, self.action_space).to(self.device)
        # an acting-only agent (a Ray worker, an evaluation) has no critic and no optimizer
        self.critic = self.make_critic(self.obs_dim) if self.learner else None
        if self.critic is not None:
            self.critic.to(self.device)
        self.obs_norm: RunningNorm | None = None
        if self.config.normalize_obs:
            # one set of statistics, shared by the policy and the critic
            self.obs_norm = RunningNorm(self.obs_dim).to(self.device)
            for net in (self.policy, self.critic):
                if net is not None:
                    net.obs_norm = self.obs_norm
        params = [*self.policy.parameters(), *(self.critic.parameters() if self.critic else [])]
        self.optimizer: torch.optim.Optimizer | None = (
            self.make_optimizer(params) if self.learner else None
        )
        self.ema = EMABaseline(self.config.ema_decay)
        self.global_step = 0
        self.updates = 0
        self.weights_version = 0
        self._nonfinite_streak = 0
        self._stop_requested = False
        self._stop_after_update = False
        self._policy_terms: tuple[Tensor, Tensor, Tensor] | None = None
        self._ema_pending: tuple[Tensor, Tensor] | None = None

    def _require_learner(self) -> None:
        if self.optimizer is None:
            raise RuntimeError(
                f"this {type(self).__name__} was built with learner=False: it acts "
                "and collects, it does not learn"
            )

    def _launch_workers(self) -> Any:
        """With ``workers > 0``: a ``RayCollector`` whose workers are starting, else ``None``."""
        if self.config.workers <= 0:
            return None
        from pgrad.distributed import RayCollector

        collector = RayCollector(self, start=False)
        try:
            collector.launch()
        except BaseException:
            collector.close()  # a Ray it started, or workers it created before failing
            raise
        return collector

    # -- configuration -------------------------------------------------------------------------
    @classmethod
    def default_config(cls, **changes: Any) -> Config:
        """``Config()`` with this agent's ``defaults`` (and its preset env) and ``changes``."""
        base = {"env_id": cls.env_id} if cls.env_id else {}
        return Config(**{**base, **cls.defaults, **changes})

    @staticmethod
    def _pick_device(name: str) -> torch.device:
        if name == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if name == "cuda" and not torch.cuda.is_available():
            raise ValueError("device=cuda but torch sees no CUDA device; use --device cpu")
        return torch.device(name)

    # -- hooks ---------------------------------------------------------------------------------
    def make_env(self, num_envs: int | None = None) -> VectorEnv:
        """The vector environment (next-step autoreset). Override for custom wrappers."""
        c = self.config
        return make_vector_env(
            c.env_id, num_envs or c.num_envs, c.vectorization, c.max_episode_steps
        )

    def make_policy(self, obs_dim: int, action_space: gym.Space) -> Policy:
        c = self.config
        try:
            return policy_for(obs_dim, action_space, c.hidden, c.activation, c.log_std_init)
        except TypeError as err:
            raise EnvError(f"{c.env_id}: {err}") from None

    def make_critic(self, obs_dim: int) -> nn.Module | None:
        """The learned value function, or ``None`` when the baseline needs none."""
        c = self.config
        return ValueFunction(obs_dim, c.hidden, c.activation) if c.baseline == "value" else None

    def make_collector(self) -> Collector:
        """What gathers rollouts: the in-process collector, or Ray workers when workers > 0."""
        if self.config.workers > 0:
            from pgrad.distributed import RayCollector

            collector = self._launched or RayCollector(self, start=False)
            collector.wait_ready()
            return collector
        return Collector(self.envs, self.policy, self.preprocess_obs, self.device, self.config.seed)

    def make_optimizer(self, params: list[nn.Parameter]) -> torch.optim.Optimizer:
        c = self.config
        if c.optimizer == "rmsprop":
            return torch.optim.RMSprop(params, lr=c.learning_rate, alpha=0.99, eps=1e-5)
        return torch.optim.Adam(params, lr=c.learning_rate, eps=1e-5, foreach=True)

    def preprocess_obs(self, obs: Tensor) -> Tensor:
        """Raw vector-env observations ``[N, *obs_shape]`` to floats ``[N, obs_dim]``."""
        return self._encode(obs)

    # -- acting ----------------------------------------------------------------------------------
    @torch.inference_mode()
    def act(self, obs: Any, deterministic: bool = False) -> np.ndarray:
        """Actions for one observation or a batch of them (as the env returns them).

        Dict and Tuple observations may come raw, as a single environment returns them, or
        batched, as a vector environment does; they are flattened as in training.
        """
        array = self._flatten_structured(obs) if isinstance(obs, dict | tuple) else np.asarray(obs)
        single_shape = self.obs_space.shape or ()
        single = array.shape == tuple(single_shape)
        batch = torch.as_tensor(array[None] if single else array, device=self.device)
        dist = self.policy(self.preprocess_obs(batch))
        actions = self.policy.to_env(self.policy.mode(dist) if deterministic else dist.sample())
        return actions[0] if single else actions

    def _flatten_structured(self, obs: dict | tuple) -> np.ndarray:
        """A raw Dict/Tuple observation (one, or a batch) as the flat rows training sees."""
        from gymnasium.vector.utils import batch_space, iterate

        raw = self.envs.unwrapped.single_observation_space
        if not isinstance(raw, gym.spaces.Dict | gym.spaces.Tuple):
            raise ValueError(
                f"got a {type(obs).__name__} observation, but {self.config.env_id} observes {raw}"
            )
        leaf, space = obs, raw  # follow one path down both: a batch adds a leading dimension
        while isinstance(space, gym.spaces.Dict | gym.spaces.Tuple):
            key = next(iter(space.spaces)) if isinstance(space, gym.spaces.Dict) else 0
            leaf, space = leaf[key], space.spaces[key]
        if np.ndim(leaf) == len(space.shape or ()):
            return gym.spaces.flatten(raw, obs)
        count = len(leaf)
        return np.stack(
            [gym.spaces.flatten(raw, item) for item in iterate(batch_space(raw, count), obs)]
        )

    # -- the loop --------------------------------------------------------------------------------
    def collect(self) -> Rollout:
        c = self.config
        if c.rollout == "steps":
            rollout = self.collector.collect_steps(c.num_steps, self.global_step)
        else:
            rollout = self.collector.collect_episodes(
                self._episode_seeds(), self._episode_cap(), self.global_step
            )
        rollout.weights_version = self.weights_version
        return rollout

    def _episode_seeds(self) -> int | list[int]:
        """Seeds for an episode batch: a group of envs shares one, so its starts are equal."""
        c = self.config
        if not accepts_seed_list(self.envs):
            return derive_seed(c.seed, self.updates)
        per_group = c.group_size if c.baseline in ("loo", "group") else 1
        return [derive_seed(c.seed, self.updates, i // per_group) for i in range(c.num_envs)]

    def _episode_cap(self) -> int:
        limit = self.config.max_episode_steps or (
            self.envs.spec.max_episode_steps if self.envs.spec else None
        )
        return min(limit or EPISODE_STEP_CAP, EPISODE_STEP_CAP)

    def compute_loss(self, rollout: Rollout, entropy_coef: float) -> tuple[LossParts, dict]:
        """The loss of one rollout: REINFORCE surrogate - entropy bonus (+ value loss)."""
        c = self.config
        obs, mask = rollout.obs, rollout.mask
        dist = self.policy(obs[:-1])
        log_prob = dist.log_prob(rollout.actions)
        assert log_prob.shape == rollout.rewards.shape, (log_prob.shape, rollout.rewards.shape)
        stats: dict[str, float] = {}
        value_term = None
        if self.critic is not None:
            values_all = self.critic(obs)
            values = values_all[:-1]
            with torch.no_grad():
                advantages, targets = gae(
                    rollout.rewards,
                    values.detach(),
                    values_all[1:].detach(),
                    rollout.terminated,
                    rollout.truncated,
                    c.gamma,
                    c.gae_lambda,
                )
            value_term = value_loss(values, targets, mask)
            stats["diagnostics/explained_variance"] = explained_variance(
                values.detach(), targets, mask
            )
        else:
            with torch.no_grad():
                returns = (
                    discounted_returns(
                        rollout.rewards, rollout.terminated, rollout.truncated, c.gamma
                    )
                    * mask
                )
                advantages = self._baseline_advantages(returns, mask)
        if c.normalize_advantages:
            advantages = normalize_advantages(advantages, mask)
        masked = advantages[mask]
        stats["diagnostics/advantage_mean"] = float(masked.mean()) if masked.numel() else 0.0
        stats["diagnostics/advantage_std"] = float(masked.std()) if masked.numel() > 1 else 0.0
        policy_term = reinforce_loss(log_prob, advantages, mask)
        entropy = entropy_bonus(dist, log_prob, mask)
        total = policy_term - entropy_coef * entropy
        if value_term is not None:
            total = total + c.vf_coef * value_term
        parts = LossParts(total=total, policy=policy_term, entropy=entropy, value=value_term)
        # kept for the optional gradient diagnostics of this update (released in update())
        self._policy_terms = (log_prob, advantages, mask)
        return parts, stats

    def _baseline_advantages(self, returns: Tensor, mask: Tensor) -> Tensor:
        c = self.config
        if c.baseline == "ema":
            # folded into the average only once this update's step is taken (see update())
            self._ema_pending = (returns, mask)
            return returns - self.ema(returns)
        if c.baseline == "loo":
            return returns - leave_one_out(returns, c.group_size, mask)
        if c.baseline == "group":
            return group_normalize(returns, c.group_size)
        return returns

    def update(self, rollout: Rollout) -> dict[str, float]:
        """One optimizer step on ``rollout``; a non-finite loss or gradient skips it."""
        self._require_learner()
        c = self.config
        progress = min(self.global_step / max(c.total_steps, 1), 1.0)
        lr = schedule_value(c.learning_rate, _final(c.learning_rate_final), progress)
        entropy_coef = schedule_value(c.ent_coef, _final(c.ent_coef_final), progress)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self._ema_pending = None
        parts, stats = self.compute_loss(rollout, entropy_coef)
        self.optimizer.zero_grad(set_to_none=True)
        if c.grad_diagnostics:
            stats.update(self._gradient_diagnostics(*self._policy_terms))
        self._policy_terms = None
        parts.total.backward()
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        max_norm = c.max_grad_norm if c.max_grad_norm > 0 else math.inf
        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
        if not (math.isfinite(float(parts.total.detach())) and math.isfinite(grad_norm)):
            self.optimizer.zero_grad(set_to_none=True)
            self._nonfinite_streak += 1
            warnings.warn(
                f"update {self.updates}: non-finite loss or gradient, update skipped "
                f"({self._nonfinite_streak} in a row)",
                RuntimeWarning,
                stacklevel=2,
            )
            if self._nonfinite_streak >= c.max_nonfinite_updates:
                raise TrainingError(
                    f"{self._nonfinite_streak} updates in a row had a non-finite "
                    "loss or gradient; stopping (weights are unchanged)"
                )
            return {}
        self._nonfinite_streak = 0
        self.optimizer.step()
        if self._ema_pending is not None:
            self.ema.update(*self._ema_pending)
        if self.obs_norm is not None:
            self.obs_norm.update(rollout.obs[:-1], rollout.mask)
        self.updates += 1
        self.weights_version += 1
        return {
            **{f"losses/{k}": v for k, v in parts.scalars().items()},
            **stats,
            "diagnostics/grad_norm": grad_norm,
            "charts/learning_rate": lr,
            "charts/entropy_coef": entropy_coef,
        }

    def _gradient_diagnostics(
        self, log_prob: Tensor, advantages: Tensor, mask: Tensor
    ) -> dict[str, float]:
        """Variance and SNR of the policy gradient, from disjoint splits of the batch over envs.

        With K splits giving gradients g_k of the same loss on 1/K of the data, the full-batch
        gradient's total variance is estimated as sum_params Var_k(g_k) / K, and its SNR as
        ||mean_k g_k||^2 / that variance.
        """
        k = min(self.config.grad_splits, log_prob.shape[1])
        if k < 2:
            return {}
        params = [p for p in self.policy.parameters() if p.requires_grad]
        grads = []
        for chunk in torch.arange(log_prob.shape[1], device=log_prob.device).chunk(k):
            loss = reinforce_loss(log_prob[:, chunk], advantages[:, chunk], mask[:, chunk])
            g = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
            grads.append(
                torch.cat(
                    [
                        (x if x is not None else torch.zeros_like(p)).flatten()
                        for x, p in zip(g, params)
                    ]
                )
            )
        stacked = torch.stack(grads)
        variance = float(stacked.var(dim=0).sum() / k)
        signal_power = float(stacked.mean(0).pow(2).sum())
        return {
            "diagnostics/grad_variance": variance,
            "diagnostics/grad_snr": signal_power / variance if variance > 0 else math.inf,
        }

    def train(
        self,
        total_steps: int | None = None,
        callback: Callable[[Agent, dict[str, float]], None] | None = None,
    ) -> Agent:
        """Train until ``total_steps`` environment steps (default: the config's).

        Args:
            total_steps: where to stop, counted from the run's start (a resumed run included).
            callback: called as ``callback(agent, metrics)`` after every update, once its metrics
                are logged; ``agent.request_stop()`` there ends training after a checkpoint.
        """
        self._require_learner()
        self._stop_after_update = False
        c = self.config
        total = total_steps if total_steps is not None else c.total_steps
        if total < 1:
            raise ValueError(f"total_steps must be >= 1, got {total}")
        if self.run_dir is None:
            self.run_dir = default_run_dir(c.env_id, self.name, c.seed)
        logger = self._open_run(total)
        next_checkpoint = self._next_multiple(c.checkpoint_every)
        start_time, start_step = time.perf_counter(), self.global_step
        try:
            with self._interruptible():
                while (
                    self.global_step < total
                    and not self._stop_requested
                    and not self._stop_after_update
                ):
                    try:
                        rollout = self.collect()
                        self.global_step += rollout.num_steps
                        metrics = self.update(rollout)
                    except (NonFiniteError, WorkerError, TrainingError) as err:
                        self.save_checkpoint()
                        raise TrainingError(
                            f"{err}; stopped after checkpointing the last good weights"
                        ) from None
                    sps = (self.global_step - start_step) / (time.perf_counter() - start_time)
                    metrics["charts/SPS"] = sps
                    logger.scalars(metrics, self.global_step)
                    logger.episodes(
                        rollout.episode_returns, rollout.episode_lengths, self.global_step
                    )
                    logger.progress(self.global_step, sps)
                    if c.checkpoint_every and self.global_step >= next_checkpoint:
                        self.save_checkpoint()
                        next_checkpoint = self._next_multiple(c.checkpoint_every)
                    if callback is not None:
                        callback(self, metrics)
            self.save_checkpoint()
        finally:
            logger.close()
            close = getattr(self.collector, "close", None)
            if close is not None:  # frees Ray workers; a later train() starts them again
                close()
        return self

    def request_stop(self) -> None:
        """End ``train`` after the current update (as Ctrl-C does, without the exit code)."""
        self._stop_after_update = True

    @property
    def interrupted(self) -> bool:
        """Whether the last ``train`` stopped early on SIGINT (Ctrl-C)."""
        return self._stop_requested

    def _next_multiple(self, every: int) -> int:
        return (self.global_step // every + 1) * every if every else 0

    @contextlib.contextmanager
    def _interruptible(self):
        """On the first SIGINT finish the current update, checkpoint and return."""
        if not _in_main_thread():
            yield
            return

        def handler(signum: int, frame: Any) -> None:
            if self._stop_requested:  # a second Ctrl-C: stop now
                raise KeyboardInterrupt
            self._stop_requested = True

        previous = signal.signal(signal.SIGINT, handler)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    def _open_run(self, total: int) -> Logger:
        assert self.run_dir is not None
        self.run_dir.mkdir(parents=True, exist_ok=True)
        config_path = self.run_dir / "config.json"
        if not config_path.exists():
            config_path.write_text(self.config.to_json() + "\n")
        (self.run_dir / "agent.txt").write_text(self.spec() + "\n")
        if not self.quiet:
            verb = "resuming" if self.global_step else "training"
            print(
                f"{verb} {self.config.env_id} with agent {self.name} to {total:,} steps; "
                f"TensorBoard: tensorboard --logdir {self.run_dir.parent}",
                flush=True,
            )
        logger = Logger(
            self.run_dir,
            total,
            start_step=self.global_step,
            quiet=self.quiet,
            purge_step=self.global_step + 1 if self.global_step else None,
        )
        if not self.global_step:
            logger.text("config", self.config.markdown())
        return logger

    # -- evaluation ------------------------------------------------------------------------------
    def evaluate(
        self, episodes: int = 10, deterministic: bool = True, seed: int | None = None
    ) -> dict[str, Any]:
        """Run ``episodes`` whole episodes in parallel, one per environment, and summarise them.

        Returns:
            ``{"episodes", "mean_return", "std_return", "mean_length", "returns", "lengths"}``.
        """
        if episodes < 1:
            raise ValueError(f"episodes must be >= 1, got {episodes}")
        seed = self.config.seed + 10_000 if seed is None else seed
        envs = self.make_env(episodes)
        try:
            collector = Collector(
                envs,
                self.policy,
                self.preprocess_obs,
                self.device,
                seed,
                deterministic=deterministic,
            )
            reset_seed = (
                [derive_seed(seed, i) for i in range(episodes)] if accepts_seed_list(envs) else seed
            )
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                rollout = collector.collect_episodes(reset_seed, self._episode_cap())
        finally:
            envs.close()
        returns = np.asarray(rollout.episode_returns, dtype=np.float64)
        lengths = np.asarray(rollout.episode_lengths, dtype=np.float64)
        return {
            "episodes": int(returns.size),
            "mean_return": float(returns.mean()),
            "std_return": float(returns.std()),
            "mean_length": float(lengths.mean()),
            "returns": returns.tolist(),
            "lengths": lengths.astype(int).tolist(),
        }

    # -- persistence -----------------------------------------------------------------------------
    @classmethod
    def spec(cls) -> str:
        """``module:Class`` naming this agent class."""
        return f"{cls.__module__}:{cls.__qualname__}"

    def state_dict(self) -> dict[str, Any]:
        return {
            "agent": self.spec(),
            "agent_name": self.name,
            "env_id": self.config.env_id,
            "config": self.config.to_dict(),
            "policy": self.policy.state_dict(),
            "critic": self.critic.state_dict() if self.critic is not None else None,
            "optimizer": self.optimizer.state_dict() if self.optimizer is not None else None,
            "ema": self.ema.state_dict(),
            "global_step": self.global_step,
            "updates": self.updates,
            "weights_version": self.weights_version,
            "rng": rng_state(),
        }

    def load_state_dict(self, state: dict[str, Any], restore_rng: bool = True) -> None:
        try:
            self.policy.load_state_dict(state["policy"])
            if self.critic is not None and state.get("critic") is not None:
                self.critic.load_state_dict(state["critic"])
            if self.optimizer is not None and state.get("optimizer") is not None:
                self.optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, KeyError, ValueError) as err:
            raise ckpt.CheckpointError(
                f"checkpoint does not fit this agent: {first_line(err)}"
            ) from None
        if "ema" in state:
            self.ema.load_state_dict(state["ema"])
        self.global_step = int(state.get("global_step", 0))
        self.updates = int(state.get("updates", 0))
        self.weights_version = int(state.get("weights_version", self.updates))
        if restore_rng and "rng" in state:
            set_rng_state(state["rng"])

    def save(self, path: str | Path) -> Path:
        """Save weights, optimizer, step counters, RNG states and config to ``path``."""
        return ckpt.save(self.state_dict(), Path(path))

    def save_checkpoint(self) -> Path | None:
        if self.run_dir is None:
            return None
        return ckpt.save_numbered(
            self.state_dict(),
            self.run_dir / "checkpoints",
            self.global_step,
            self.config.keep_checkpoints,
        )

    @classmethod
    def load(cls, path: str | Path, **overrides: Any) -> Agent:
        """Rebuild an agent from a checkpoint file (loaded with ``weights_only=True``).

        The agent collects in this process (``workers=0``) unless ``overrides`` say otherwise.
        """
        state = ckpt.load(Path(path))
        return cls._from_state(state, None, **{"workers": 0, **overrides})

    @classmethod
    def for_evaluation(cls, state: dict[str, Any]) -> Agent:
        """An agent rebuilt from checkpoint ``state`` with the fewest environments it allows."""
        config = state.get("config") or {}
        grouped = config.get("baseline") in ("loo", "group")
        num_envs = int(config.get("group_size", 2)) if grouped else 1
        return cls._from_state(state, None, learner=False, num_envs=num_envs, workers=0)

    @classmethod
    def _from_state(
        cls, state: dict[str, Any], run_dir: Path | None, learner: bool = True, **overrides: Any
    ) -> Agent:
        try:
            config = Config.from_dict(state["config"])
        except (KeyError, TypeError, ValueError) as err:
            raise ckpt.CheckpointError(f"checkpoint has no valid config: {err}") from None
        agent = cls(
            config.replace(**overrides) if overrides else config, run_dir=run_dir, learner=learner
        )
        agent.load_state_dict(state)
        return agent

    @classmethod
    def resume(cls, run_dir: str | Path, **overrides: Any) -> Agent:
        """Continue the run in ``run_dir`` from its newest loadable checkpoint."""
        run_dir = Path(run_dir)
        _, state = ckpt.latest_loadable(run_dir / "checkpoints")
        agent = cls._from_state(state, run_dir, **overrides)
        if agent.config.rollout == "steps":
            # env states are not checkpointed: start fresh episodes from a seed tied to the step
            agent.collector.seed = derive_seed(agent.config.seed, agent.updates)
        return agent


def default_run_dir(env_id: str, agent_name: str, seed: int, root: str | Path = "runs") -> Path:
    """``root/<env>__<agent>__<seed>__<unix-time>``, with ``_2``, ``_3``... if that is taken."""
    safe_env = env_id.replace("/", "-").replace(":", "-")
    base = Path(root) / f"{safe_env}__{agent_name}__{seed}__{int(time.time())}"
    candidate, n = base, 1
    while candidate.exists():
        n += 1
        candidate = base.with_name(f"{base.name}_{n}")
    return candidate


def _final(value: float) -> float | None:
    return None if value == -1.0 else value


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


class Reinforce(Agent):
    """Monte-Carlo REINFORCE (Williams 1992): whole episodes, reward-to-go, a chosen baseline.

    Each update collects one episode per environment from seeded resets. ``baseline`` picks what
    is subtracted from the return: none, ema, value (a learned critic; ``gae_lambda=1`` makes the
    advantage ``G_t - V(s_t)``), loo (leave-one-out over groups of ``group_size`` environments
    that start from the same seed) or group (group-normalised returns).
    """

    name = "reinforce"
    defaults = {
        "rollout": "episodes",
        "baseline": "value",
        "gae_lambda": 1.0,
        "learning_rate": 3e-3,
        "num_envs": 16,
    }


class A2C(Agent):
    """Synchronous advantage actor-critic / VPG (Mnih et al. 2016; Schulman et al. 2016).

    Fixed-length rollouts of ``num_steps`` per environment, a learned value function, GAE(lambda)
    advantages, bootstrapping at rollout ends and time-limit truncations.
    """

    name = "a2c"
    defaults = {
        "rollout": "steps",
        "baseline": "value",
        "num_steps": 16,
        "gae_lambda": 0.95,
        "learning_rate": 1e-3,
        "ent_coef": 0.0,
        "num_envs": 16,
    }
