"""The agent: one fixed loop (collect, prepare once, loss and a guarded step per minibatch,
log, callback, checkpoint) over small, replaceable parts; see ``docs/architecture.md``.

Subclass ``Agent`` (one level deep) to change ``defaults`` (merged over the parent's) and the
hooks ``make_env``, ``make_encoder``, ``make_policy``, ``make_critic``, ``make_optimizer``.
``prepare`` and ``loss`` are plain methods: override ``loss`` to add a term (calling
``super().loss`` or not). Persistence: ``pgrad.persistence``; run directories and signals:
``pgrad.run``; the algorithms: ``pgrad.algos``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import VectorEnv
from torch import nn

from pgrad.algos import Algorithm, ReinforceAlgorithm
from pgrad.config import Config
from pgrad.diagnostics import gradient_diagnostics
from pgrad.envs_util import (
    derive_seed,
    episode_cap,
    episode_seeds,
    make_vector_env,
    seed_everything,
)
from pgrad.errors import EnvError, NonFiniteError, TrainingError, WorkerError
from pgrad.evaluation import evaluate
from pgrad.losses import LossParts, value_loss
from pgrad.normalizers import RewardScaler, RunningNorm
from pgrad.obs import batch_dims, map_obs, to_tensor
from pgrad.optim import GuardedStep
from pgrad.persistence import Persistence
from pgrad.policies import ValueFunction, check_policy, policy_for
from pgrad.rollout import Batch, Collector, Rollout
from pgrad.run import default_run_dir, interruptible, open_run, pick_device
from pgrad.schedules import schedule_value
from pgrad.sequence_policies import sequence_policy_for

Callback = Callable[["Agent", dict[str, float]], None]


class Agent(Persistence):
    """A policy-gradient agent: the loop, the hooks, and the config's algorithm.

    Python API: ``train(total_steps)``, ``act(obs, deterministic)``, ``evaluate(episodes)``,
    ``save(path)``, ``Agent.load(path)``; ``Agent.resume(run_dir)`` continues a run.

    Args:
        config: the run's hyperparameters; ``None`` takes this class's ``default_config()``.
        run_dir: where TensorBoard events, ``config.json`` and ``checkpoints/`` go; ``None``
            creates ``runs/<env>__<agent>__<seed>__<unix-time>`` when training starts.
        quiet: no progress bar and no summary lines.
        learner: ``False`` builds an agent that only acts and collects (no critic, no
            optimizer): what a Ray worker and ``pgrad eval`` use.
        **overrides: config fields to change, e.g. ``Agent(total_steps=10_000, seed=3)``.
    """

    name: ClassVar[str] = "agent"
    env_id: ClassVar[str | None] = None
    defaults: ClassVar[dict[str, Any]] = {}
    """Config values of this agent; a subclass's are merged over its parent's."""
    action_spaces: ClassVar[tuple[type[gym.Space], ...] | None] = None
    """Action space types this agent is made for (``None``: any the policies support)."""
    algorithm_class: ClassVar[type[Algorithm]] = ReinforceAlgorithm

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "defaults" in cls.__dict__:
            cls.defaults = {**super(cls, cls).defaults, **cls.__dict__["defaults"]}

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
        self.quiet, self.learner = quiet, learner
        self.device = pick_device(self.config.device)
        # before any network exists: orthogonal init's numerics depend on the thread count
        torch.set_num_threads(self.config.torch_threads)
        seed_everything(self.config.seed)
        self.envs = self.make_env()
        self.obs_space = self.envs.single_observation_space
        self.action_space = self.envs.single_action_space
        launched = None
        try:
            if self.action_spaces and not isinstance(self.action_space, self.action_spaces):
                kinds = " or ".join(k.__name__ for k in self.action_spaces)
                raise EnvError(
                    f"agent {self.name} is made for {kinds} actions, but {self.config.env_id} "
                    f"has {self.action_space}; use --agent ppo, a2c or reinforce"
                )
            if self.config.workers > 0:  # Ray workers build their agents while this one builds
                from pgrad.distributed import launch_workers

                launched = launch_workers(self)
            self._build_networks()
            self.collector = self.make_collector(launched)
        except BaseException:
            if launched is not None:
                launched.close()
            self.envs.close()
            raise

    def _build_networks(self) -> None:
        try:
            self.policy = self.make_policy(self.obs_space, self.action_space).to(self.device)
            check_policy(self.policy)
            # an acting-only agent (a Ray worker, an evaluation) has no critic and no optimizer
            self.critic = self.make_critic(self.obs_space) if self.learner else None
        except TypeError as err:
            raise EnvError(f"{self.config.env_id}: {err}") from None
        if self.critic is not None:
            self.critic.to(self.device)
        nets = [self.policy, *([self.critic] if self.critic is not None else [])]
        # one set of statistics over the encoder's features, shared by policy and critic
        self.obs_norm = RunningNorm.attach(nets, self.device) if self.config.normalize_obs else None
        # rewards are rescaled for the learner only (see update); the logged returns stay raw
        self.reward_scaler = (
            RewardScaler(self.config.gamma) if self.config.normalize_reward else None
        )
        params = list({id(p): p for net in nets for p in net.parameters()}.values())
        self.optimizer = self.make_optimizer(params) if self.learner else None
        c = self.config
        self.guard = GuardedStep(self.optimizer, c.max_grad_norm, c.max_nonfinite_updates)
        self.algorithm = self.algorithm_class(self.policy, self.critic, self.config)
        self.global_step = self.updates = self.weights_version = 0
        self._stop_requested = self._stop_after_update = False

    def _require_learner(self) -> None:
        if self.optimizer is None:
            name = type(self).__name__
            raise RuntimeError(f"this {name} was built with learner=False: it does not learn")

    @classmethod
    def default_config(cls, **changes: Any) -> Config:
        """``Config()`` with this agent's ``defaults`` (and its preset env) and ``changes``."""
        base = {"env_id": cls.env_id} if cls.env_id else {}
        return Config(**{**base, **cls.defaults, **changes})

    # -- hooks ---------------------------------------------------------------------------------
    def make_env(self, num_envs: int | None = None) -> VectorEnv:
        """The vector environment (next-step autoreset). Override for custom wrappers.

        The training environments (``num_envs=None``) of a grouped baseline pass
        ``group_size`` to a numpy-vectorised form that takes it (its groups then share their
        instances, as seeded resets do for sync and async), and ``distinct_starts=True`` for
        ``baseline=pomo``; evaluation's ``make_env(n)`` gets independent environments.

        The default (``pgrad.envs_util.make_vector_env``) records each episode's raw return
        innermost, so a reward wrapper added on top (``super().make_env(num_envs)`` wrapped in
        ``gymnasium.wrappers.vector.TransformReward``, ``NormalizeReward``, ...) changes what
        the agent learns from while ``charts/episodic_return_raw`` and ``evaluate``'s
        ``mean_raw_return`` still report the environment's own returns. A vector environment
        built here from scratch keeps them with ``pgrad.episode_stats.record_raw_returns``:
        first in ``gymnasium.make_vec(..., wrappers=[record_raw_returns, ...])``, or around a
        numpy-vectorised environment before any reward wrapper.
        """
        c = self.config
        # a group's environments start alike: seeded resets for sync and async, shared
        # instances in a numpy-vectorised form that takes group_size (token tasks, TSP)
        shared = c.grouped and c.rollout == "episodes"
        grouping: dict[str, Any] = {}
        if num_envs is None and c.grouped:
            grouping = {"group_size": c.group_size, "distinct_starts": c.baseline == "pomo"}
        return make_vector_env(
            c.env_id,
            num_envs or c.num_envs,
            c.vectorization,
            c.max_episode_steps,
            shared,
            c.env_kwargs,
            grouping,
        )

    def make_encoder(self, obs_space: gym.Space) -> nn.Module:
        """Observations to features (``pgrad.encoders``): a CNN for images, else flattened."""
        from pgrad.encoders import encoder_for

        return encoder_for(obs_space)

    def make_policy(self, obs_space: gym.Space, action_space: gym.Space) -> nn.Module:
        """An ``nn.Module``: ``forward(obs)`` -> a torch distribution, ``mode(dist)``,
        ``to_env(actions)`` (see ``pgrad.policies.check_policy``). Token and tour environments
        get a sequence model (``pgrad.sequence_policies``), the others an encoder and a head."""
        c = self.config
        sequence = sequence_policy_for(
            obs_space, action_space, c.d_model, c.num_heads, c.num_layers
        )
        if sequence is not None:
            return sequence
        return policy_for(
            self.make_encoder(obs_space), action_space, c.hidden, c.activation, c.log_std_init
        )

    def make_critic(self, obs_space: gym.Space) -> nn.Module | None:
        """The learned value function ``obs -> [*B]``, or ``None`` when the baseline needs none."""
        c = self.config
        if c.baseline != "value":
            return None
        encoder = self.policy.encoder if c.share_encoder else self.make_encoder(obs_space)
        return ValueFunction(encoder, c.hidden, c.activation)

    def make_collector(self, launched: Any = None) -> Any:
        """What gathers rollouts: the in-process collector, or Ray workers when workers > 0."""
        if self.config.workers > 0:
            from pgrad.distributed import RayCollector

            collector = launched or RayCollector(self, start=False)
            collector.wait_ready()
            return collector
        c = self.config
        return Collector(self.envs, self.policy, self.device, c.seed, info_keys=c.info_keys)

    def make_optimizer(self, params: list[nn.Parameter]) -> torch.optim.Optimizer:
        c = self.config
        if c.optimizer == "rmsprop":
            return torch.optim.RMSprop(params, lr=c.learning_rate, alpha=0.99, eps=1e-5)
        return torch.optim.Adam(params, lr=c.learning_rate, eps=1e-5, foreach=True)

    # -- acting ----------------------------------------------------------------------------------
    @torch.inference_mode()
    def act(self, obs: Any, deterministic: bool = False) -> np.ndarray:
        """Actions for one observation or a batch of them, as the environment gives them."""
        batch = to_tensor(obs, self.device)
        single = batch_dims(batch, self.obs_space) == ()
        if single:
            batch = map_obs(lambda x: x[None], batch)
        dist = self.policy(batch)
        actions = self.policy.to_env(self.policy.mode(dist) if deterministic else dist.sample())
        return actions[0] if single else actions

    # -- the loop --------------------------------------------------------------------------------
    def collect(self) -> Rollout:
        c = self.config
        if c.rollout == "steps":
            rollout = self.collector.collect_steps(c.num_steps, self.global_step)
        else:
            seeds = episode_seeds(self.envs, c, self.updates)
            rollout = self.collector.collect_episodes(
                seeds, episode_cap(self.envs, c.max_episode_steps), self.global_step
            )
            rollout.reset_seeds = seeds
        rollout.weights_version = self.weights_version
        return rollout

    def prepare(self, rollout: Rollout) -> Batch:
        """What the update learns from, computed once per rollout (the algorithm's)."""
        return self.algorithm.prepare(rollout)

    def loss(self, batch: Batch, entropy_coef: float) -> LossParts:
        """The loss of one minibatch (the algorithm's); override to add a term."""
        return self.algorithm.loss(batch, entropy_coef)

    def update(self, rollout: Rollout) -> dict[str, float]:
        """Learn from ``rollout``: ``update_epochs x num_minibatches`` guarded optimizer steps.

        Returns the metrics to log; ``{}`` when every step was skipped (non-finite numbers).
        """
        self._require_learner()
        c = self.config
        progress = min(self.global_step / max(c.total_steps, 1), 1.0)
        lr = schedule_value(c.learning_rate, c.learning_rate_final, progress)
        entropy_coef = schedule_value(c.ent_coef, c.ent_coef_final, progress)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        if self.reward_scaler is not None:
            # here, in the learner: the collector (or each Ray worker) has already summed the
            # raw rewards into the episode returns that are logged, and one set of statistics
            # serves however many workers collected
            rollout = replace(
                rollout,
                rewards=self.reward_scaler(
                    rollout.rewards, rollout.terminated, rollout.truncated, rollout.mask
                ),
            )
        batch = self.prepare(rollout)
        metrics = dict(batch.stats)
        if self.reward_scaler is not None:
            metrics["diagnostics/reward_scale"] = self.reward_scaler.std
        if c.grad_diagnostics:
            metrics.update(gradient_diagnostics(self.policy, batch, c.grad_splits))
        shuffle = torch.Generator().manual_seed(derive_seed(c.seed, self.updates, 0x5A))
        taken: list[tuple[LossParts, float]] = []
        epochs = 0
        for _ in range(c.update_epochs):
            epoch_parts = []
            for minibatch in batch.minibatches(c.num_minibatches, shuffle):
                parts = self.loss(minibatch, entropy_coef)
                grad_norm = self.guard.step(parts.total, f"update {self.updates}")
                if grad_norm is not None:
                    taken.append((parts, grad_norm))
                    epoch_parts.append(parts)
            epochs += 1
            if self.algorithm.stop_epochs(epoch_parts):
                break
        if not taken:
            return {}
        metrics.update(LossParts.mean_scalars(taken))
        if c.value_epochs and self.critic is not None:
            metrics["losses/value_loss_after"] = self._fit_critic(batch, c.value_epochs)
        self.algorithm.after_update(batch)
        if self.obs_norm is not None:
            with torch.no_grad():
                self.obs_norm.update(self.policy.encoder(batch.obs), batch.mask)
        self.updates += 1
        self.weights_version += 1
        if c.update_epochs > 1:
            metrics["diagnostics/epochs"] = float(epochs)
        metrics.update({"charts/learning_rate": lr, "charts/entropy_coef": entropy_coef})
        return metrics

    def _fit_critic(self, batch: Batch, epochs: int) -> float:
        """Critic-only regressions on the update's value targets; the last loss."""
        for _ in range(epochs):
            # the policy's parameters get no gradient (None): the optimizer leaves them alone
            loss = value_loss(self.critic(batch.obs), batch.returns, batch.mask)
            self.guard.step(loss, f"update {self.updates} (critic)")
        return float(loss.detach())

    def train(self, total_steps: int | None = None, callback: Callback | None = None) -> Agent:
        """Train until ``total_steps`` environment steps (default: the config's).

        Args:
            total_steps: where to stop, counted from the run's start (a resumed run included).
            callback: called as ``callback(agent, metrics)`` after every update, once its metrics
                are logged; ``agent.request_stop()`` there ends training after a checkpoint.
        """
        self._require_learner()
        c = self.config
        total = total_steps if total_steps is not None else c.total_steps
        if total < 1:
            raise ValueError(f"total_steps must be >= 1, got {total}")
        if self.run_dir is None:
            self.run_dir = default_run_dir(c.env_id, self.name, c.seed)
        self._stop_after_update = False
        logger = open_run(self, total)
        every = c.checkpoint_every
        next_checkpoint = (self.global_step // every + 1) * every if every else 0
        start_time, start_step = time.perf_counter(), self.global_step
        try:
            with interruptible(self):
                while self.global_step < total and not (
                    self._stop_requested or self._stop_after_update
                ):
                    try:
                        rollout = self.collect()
                        self.global_step += rollout.num_steps
                        metrics = self.update(rollout)
                    except (NonFiniteError, WorkerError, TrainingError) as err:
                        self._checkpoint()
                        raise TrainingError(
                            f"{err}; stopped after checkpointing the last good weights"
                        ) from None
                    sps = (self.global_step - start_step) / (time.perf_counter() - start_time)
                    metrics["charts/SPS"] = sps
                    logger.scalars(metrics, self.global_step)
                    logger.episodes(
                        rollout.episode_returns,
                        rollout.episode_lengths,
                        self.global_step,
                        rollout.raw_episode_returns,
                    )
                    logger.episode_infos(rollout.episode_infos, self.global_step)
                    logger.progress(self.global_step, sps)
                    if every and self.global_step >= next_checkpoint:
                        self._checkpoint()
                        next_checkpoint = (self.global_step // every + 1) * every
                    if callback is not None:
                        callback(self, metrics)
            self._checkpoint()
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

    def evaluate(
        self, episodes: int = 10, deterministic: bool | None = None, seed: int | None = None
    ) -> dict[str, Any]:
        """Returns of ``episodes`` seeded episodes (default: the config's eval_deterministic)."""
        deterministic = self.config.eval_deterministic if deterministic is None else deterministic
        return evaluate(self, episodes, deterministic, seed)
