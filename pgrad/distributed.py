"""Rollouts on Ray: K actors, each with its own vector environment, feed one learner.

```
learner (this process)                        worker k = 0 .. K-1 (Ray actor, CPU)
ref = ray.put(policy weights), version v  ──► load the weights; now holds version v
collect_* on every worker at once         ──► Collector.collect_* on its own num_envs envs
block for all K rollouts                  ◄── Rollout [T_k, N_k], weights_version = v
check every version == v (on-policy), merge along N ──► one Rollout [T, sum_k N_k]
```

``RayCollector`` has the interface of ``pgrad.rollout.Collector`` (``collect_steps``,
``collect_episodes``, ``seed``), so ``Agent.make_collector`` swaps it in for ``workers > 0``
and nothing else in the agent changes. Each worker builds the agent's own class with the run's
config (``workers=0``, CPU, a seed derived from the run's seed and the worker's index), so it
makes the same environment and policy through the same hooks.

Faults: a worker that dies while collecting (``RayActorError``) loses its partial rollout, whole;
it is never half-used. Ray restarts the actor (``max_restarts``), or, when its restarts are
spent, a new one is created; it gets the same weights (same version) and collects its share
again with fresh environment seeds. The update so always has the full batch and ``global_step``
grows by exactly the steps in it; the episodes that were running on the dead worker are lost
(never logged), and none is logged twice.

Ray is an optional dependency (``pip install 'pgrad[ray]'``), imported only here.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.machinery
import logging
import os
import signal
import socket
import sys
import time
import warnings
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from pgrad.config import Config
from pgrad.envs_util import derive_seed
from pgrad.errors import NonFiniteError, StaleRolloutError, WorkerError, first_line
from pgrad.obs import leaves, map_obs
from pgrad.rollout import ROLLOUT_FIELDS, Rollout

Learner = Any
"""The learning agent as this module sees it (never imported here): its class (rebuilt in each
worker), ``config``, ``policy``, ``weights_version`` and ``device``."""

RAY_MISSING = "--workers needs Ray: pip install 'pgrad[ray]'"
MAX_RESTARTS = 3
"""Ray restarts a dead worker this many times before a new actor replaces it."""
MAX_ATTEMPTS = 3
"""Collections of one worker's share within one update before giving up."""
RESTART_TIMEOUT_S = 120.0
"""How long to wait for a dead worker to come back."""
CONNECT_TIMEOUT_S = 5.0
"""How long to try to reach a ``--ray-address`` before giving up."""
CLOSE_WAIT_S = 10.0
"""How long ``close()`` lets workers that are still being built finish before killing them."""
LOCAL_STARTUP_TIMEOUT_S = 120.0
"""How long the workers of a local Ray instance may take to start (a cluster's may wait longer)."""
_RAY_USERS = {"started": False, "collectors": 0}
"""Whether pgrad started the Ray instance, and how many open collectors use it (the last to
close shuts it down; a Ray that someone else started is left running)."""
_WORKER_SEED = 0x5EED
_RESTART_SEED = 0xDEAD


def import_ray() -> Any:
    """The ``ray`` module, or ``ValueError`` saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ValueError(RAY_MISSING) from None
    return ray


def init_ray(address: str = "", num_cpus: int | None = None) -> float:
    """Start Ray the way ``RayCollector`` does; returns the seconds it took.

    Args:
        address: a cluster to join (``auto`` or ``HOST:PORT``); empty starts a new local
            instance with ``num_cpus`` (default: this machine's CPU count) and no dashboard.
    """
    ray = import_ray()
    start = time.perf_counter()
    quiet = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.ERROR}
    if address:
        if address != "auto":
            check_reachable(address)
        try:
            ray.init(address=address, **quiet)
        except ConnectionError as err:
            raise ValueError(
                f"cannot join the Ray cluster at {address!r}: {first_line(err)}"
            ) from None
    else:
        # "local": a new instance of our own, even if RAY_ADDRESS or `ray start` names one. Ray
        # runs workers at niceness 15 by default; ours do the run's main work while the learner
        # waits, so on a busy machine they should not yield to every other process.
        ray.init(
            address="local",
            num_cpus=num_cpus or os.cpu_count() or 1,
            _system_config={"worker_niceness": 0},
            **quiet,
        )
    return time.perf_counter() - start


def check_reachable(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Raise ``ValueError`` unless ``HOST:PORT`` (or ``ray://HOST:PORT``) accepts connections.

    ``ray.init`` retries an unreachable address for minutes; this fails in seconds instead.
    """
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"ray_address must be 'auto' or HOST:PORT, got {address!r}")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as err:
        raise ValueError(
            f"cannot reach a Ray cluster at {address} ({err.strerror or err}); "
            "start one there with 'ray start --head' or fix --ray-address"
        ) from None


# -- the worker ------------------------------------------------------------------------------------
class RolloutWorker:
    """Owns a vector environment and a CPU copy of the policy; runs inside a Ray actor.

    A plain class (``RayCollector`` wraps it with ``ray.remote``), so it can be tested and
    subclassed without Ray.

    Args:
        agent_cls: the learner's agent class; its hooks build the environment and policy.
        config: the learner's config; the worker runs it with ``workers=0`` on the CPU.
        seed: this worker's seed (torch sampling and the first environment reset).
    """

    def __init__(self, agent_cls: type, config: Config, seed: int) -> None:
        # Ctrl-C in a terminal reaches the whole process group: let the driver decide what a
        # SIGINT means (checkpoint and stop), and keep collecting until it closes the workers.
        # Only in a Ray actor's process: built anywhere else, the worker leaves SIGINT alone.
        if hasattr(signal, "SIGINT") and _in_ray_actor():
            with contextlib.suppress(Exception):
                signal.signal(signal.SIGINT, signal.SIG_IGN)
        torch.set_num_threads(config.torch_threads)
        worker_config = config.replace(workers=0, ray_address="", device="cpu", seed=seed)
        self.agent = agent_cls(worker_config, quiet=True, learner=False)
        self.collector = self.agent.collector
        self.version: int | None = None
        self.last_timing = {"wall_s": 0.0, "cpu_s": 0.0}

    def ping(self) -> int:
        """The worker's process id (answers once the constructor has finished)."""
        return os.getpid()

    def timing(self) -> dict[str, float]:
        """Wall and CPU seconds of this worker's last collect (weights loaded, rollout built)."""
        return dict(self.last_timing)

    def reseed(self, seed: int) -> None:
        """Start fresh episodes in every environment from ``seed`` (steps mode)."""
        self.collector.reset(seed)
        self.collector.seed = seed

    def load_weights(self, weights: dict[str, Tensor], version: int) -> None:
        self.agent.policy.load_state_dict(weights)
        self.version = version

    def collect_steps(
        self, weights: dict[str, Tensor], version: int, num_steps: int, step_offset: int
    ) -> Rollout:
        start, start_cpu = time.perf_counter(), time.process_time()
        self.load_weights(weights, version)
        rollout = self.collector.collect_steps(num_steps, step_offset)
        rollout.weights_version = self.version  # the version this worker actually holds
        self.last_timing = {
            "wall_s": time.perf_counter() - start,
            "cpu_s": time.process_time() - start_cpu,
        }
        return rollout

    def collect_episodes(
        self,
        weights: dict[str, Tensor],
        version: int,
        reset_seed: int | list[int] | None,
        max_steps: int,
        step_offset: int,
    ) -> Rollout:
        start, start_cpu = time.perf_counter(), time.process_time()
        self.load_weights(weights, version)
        rollout = self.collector.collect_episodes(reset_seed, max_steps, step_offset)
        rollout.weights_version = self.version
        self.last_timing = {
            "wall_s": time.perf_counter() - start,
            "cpu_s": time.process_time() - start_cpu,
        }
        return rollout


# -- merging -------------------------------------------------------------------------------------
@dataclass
class MergedRollout(Rollout):
    """A ``Rollout`` merged from several workers; ``num_steps`` counts the steps they took.

    Episode rollouts of different lengths are padded to the longest with masked steps; those
    steps were never taken, so ``num_steps`` is ``sum_k T_k * N_k``, not ``T * N``.
    """

    env_steps: int = 0

    @property
    def num_steps(self) -> int:
        return self.env_steps


def merge_rollouts(rollouts: list[Rollout], device: torch.device | str = "cpu") -> MergedRollout:
    """Concatenate worker rollouts ``[T_k, N_k]`` along the environment axis.

    Shorter rollouts (episodes mode) are padded to ``T = max_k T_k`` with masked steps: mask
    False, reward 0, not terminated, not truncated, the last observation and action repeated
    (so every log-probability stays finite; the mask keeps them out of every loss).

    Returns:
        a ``MergedRollout`` with ``[T, sum_k N_k]`` tensors on ``device``, the episodes of
        worker 0 first, and ``weights_version`` of the first rollout.

    Raises:
        ValueError: no rollouts, or rollouts whose observation or action shapes differ.
    """
    if not rollouts:
        raise ValueError("merge_rollouts needs at least one rollout")
    horizon = max(r.rewards.shape[0] for r in rollouts)
    first = rollouts[0]
    for r in rollouts[1:]:
        for name in ("obs", "actions"):
            mine, theirs = leaves(getattr(r, name)), leaves(getattr(first, name))
            if [x.shape[2:] for x in mine] != [x.shape[2:] for x in theirs]:
                raise ValueError(
                    f"worker rollouts differ in shape: {name} "
                    f"{[tuple(x.shape) for x in mine]} vs {[tuple(x.shape) for x in theirs]}"
                )
    padded = [_pad(r, horizon) for r in rollouts]
    merged = {
        name: map_obs(_cat_envs(device), *(getattr(r, name) for r in padded))
        for name in ROLLOUT_FIELDS
    }
    return MergedRollout(
        **merged,
        episode_returns=[x for r in rollouts for x in r.episode_returns],
        episode_lengths=[x for r in rollouts for x in r.episode_lengths],
        episode_infos={
            key: [x for r in rollouts for x in r.episode_infos.get(key, [])]
            for key in dict.fromkeys(k for r in rollouts for k in r.episode_infos)
        },
        raw_episode_returns=_merge_raw(rollouts),
        weights_version=rollouts[0].weights_version,
        env_steps=sum(r.num_steps for r in rollouts),
    )


def _merge_raw(rollouts: list[Rollout]) -> list[float]:
    """The workers' raw episode returns, aligned with the merged ``episode_returns``: empty
    when no worker's environment reports them, NaN for a worker whose does not."""
    if not any(r.raw_episode_returns for r in rollouts):
        return []
    return [
        x
        for r in rollouts
        for x in (r.raw_episode_returns or [float("nan")] * len(r.episode_returns))
    ]


def _cat_envs(device: torch.device | str):
    return lambda *xs: torch.cat(xs, dim=1).to(device)


def _pad(rollout: Rollout, horizon: int) -> Rollout:
    extra = horizon - rollout.rewards.shape[0]
    if extra == 0:
        return rollout

    def repeat_last(x: Tensor) -> Tensor:
        return torch.cat([x, x[-1:].expand(extra, *x.shape[1:])])

    def falses(x: Tensor) -> Tensor:
        return torch.cat([x, x.new_zeros((extra, *x.shape[1:]))])

    return Rollout(
        **{
            name: map_obs(
                repeat_last if name in ("obs", "actions") else falses, getattr(rollout, name)
            )
            for name in ROLLOUT_FIELDS
        }
    )


def check_versions(rollouts: list[Rollout], expected: int) -> None:
    """Raise ``StaleRolloutError`` unless every rollout was collected with weights ``expected``."""
    stale = {k: r.weights_version for k, r in enumerate(rollouts) if r.weights_version != expected}
    if stale:
        found = ", ".join(f"worker {k}: version {v}" for k, v in stale.items())
        raise StaleRolloutError(
            f"on-policy update at weights version {expected} got rollouts "
            f"collected with other weights ({found})"
        )


def split_reset_seeds(
    reset_seed: int | list[int] | None, workers: int, envs_per_worker: int
) -> list[int | list[int] | None]:
    """The reset seeds of each worker for one batch of episodes.

    A list of ``workers * envs_per_worker`` seeds is split in order. A list of
    ``envs_per_worker`` seeds (one worker's worth, as ``Agent`` gives) is reused by every worker
    through ``derive_seed(seed, worker)``: environments that share a seed inside a worker (the
    groups of the leave-one-out baseline) still do, and workers start different episodes. An
    int becomes ``derive_seed(reset_seed, worker)``; ``None`` stays ``None``.

    Raises:
        ValueError: a list of any other length.
    """
    if reset_seed is None:
        return [None] * workers
    if isinstance(reset_seed, int):
        return [derive_seed(reset_seed, k) for k in range(workers)]
    seeds = list(reset_seed)
    if len(seeds) == workers * envs_per_worker:
        return [seeds[k * envs_per_worker : (k + 1) * envs_per_worker] for k in range(workers)]
    if len(seeds) == envs_per_worker:
        return [[derive_seed(s, k) for s in seeds] for k in range(workers)]
    raise ValueError(
        f"got {len(seeds)} reset seeds for {workers} workers of {envs_per_worker} "
        f"environments; give {envs_per_worker} or {workers * envs_per_worker}"
    )


def policy_weights(policy: torch.nn.Module) -> dict[str, Tensor]:
    """The policy's state dict on the CPU, detached (what ``ray.put`` broadcasts)."""
    return {name: value.detach().cpu() for name, value in policy.state_dict().items()}


# -- the learner's side ----------------------------------------------------------------------------
class RayCollector:
    """Collects each update's rollout on ``config.workers`` Ray actors; see the module docstring.

    Starts a local Ray instance (one CPU per core, no dashboard) unless Ray is running or
    ``config.ray_address`` names a cluster, then starts the workers and waits until they are
    ready. ``close()`` stops them (and the local Ray instance, if this collector started it); the
    next collect starts them again.

    Args:
        agent: the learner; its class, config, policy and ``weights_version`` are read.
        worker_cls: the actor's class (a ``RolloutWorker`` subclass, e.g. in tests).

    Raises:
        ValueError: Ray is not installed, ``workers`` exceeds this machine's CPUs (local Ray),
            or a worker cannot build the agent.
    """

    def __init__(
        self, agent: Learner, worker_cls: type[RolloutWorker] = RolloutWorker, start: bool = True
    ) -> None:
        self._ray = import_ray()
        self.agent = agent
        self.config = agent.config
        self.num_workers = self.config.workers
        if self.num_workers < 1:
            raise ValueError(f"RayCollector needs workers >= 1, got {self.num_workers}")
        self.num_envs = self.num_workers * self.config.num_envs
        self.worker_cls = worker_cls
        self.faults = 0
        """Worker deaths seen while collecting (each one's share was collected again)."""
        self.restarts = [0] * self.num_workers
        self.startup_seconds = 0.0
        """Seconds from ``launch()`` until every worker was ready."""
        self._seed = self.config.seed
        self._reseed_pending = False
        self._using_ray = False
        self._launched_at: float | None = None
        self._ready = False
        self.actors: list[Any] = []
        if start:
            self.launch()
            self.wait_ready()

    # -- life cycle ------------------------------------------------------------------------------
    def launch(self) -> None:
        """Start Ray (if needed) and create the workers; returns without waiting for them.

        The workers build their agents while the caller goes on (``Agent`` builds its networks
        meanwhile); ``wait_ready()`` waits for them.
        """
        if self.actors:
            return
        self._launched_at = time.perf_counter()
        self._ready = False
        ray = self._ray
        if not ray.is_initialized():
            local_cpus = os.cpu_count() or 1
            if not self.config.ray_address and self.num_workers > local_cpus:
                raise ValueError(
                    f"--workers {self.num_workers} needs as many CPUs; this machine "
                    f"has {local_cpus} (join a cluster with --ray-address)"
                )
            _import_in_background("torch._dynamo")
            init_ray(self.config.ray_address)
            _RAY_USERS["started"] = True
        if _RAY_USERS["started"] and not self._using_ray:
            _RAY_USERS["collectors"] += 1
            self._using_ray = True
        self._cluster_cpus = ray.cluster_resources().get("CPU", 0)
        if self._cluster_cpus < self.num_workers:
            warnings.warn(
                f"{self.num_workers} workers need {self.num_workers} CPUs; the Ray "
                f"cluster has {self._cluster_cpus:g} now (waiting for more)",
                RuntimeWarning,
                stacklevel=3,
            )
        _pickle_by_value_if_needed(type(self.agent))
        self._actor_class = ray.remote(num_cpus=1, max_restarts=MAX_RESTARTS, max_task_retries=0)(
            self.worker_cls
        )
        self.actors = [self._spawn(k) for k in range(self.num_workers)]

    def wait_ready(self) -> None:
        """Block until every launched worker has built its agent.

        Raises:
            ValueError: a worker could not build the agent, or (local Ray) the workers did not
                start within ``LOCAL_STARTUP_TIMEOUT_S``; the workers are closed first.
        """
        if not self.actors:
            self.launch()
        ray = self._ray
        start = self._launched_at or time.perf_counter()
        # on a cluster, actors may wait for an autoscaler; a local instance has all it will have
        deadline = None if self.config.ray_address else start + LOCAL_STARTUP_TIMEOUT_S
        for k, actor in enumerate(self.actors):
            try:
                ray.get(
                    actor.ping.remote(),
                    timeout=None if deadline is None else max(deadline - time.perf_counter(), 1),
                )
            except ray.exceptions.GetTimeoutError:
                free = ray.available_resources().get("CPU", 0)
                self.close()
                raise ValueError(
                    f"{self.num_workers} Ray workers did not start within "
                    f"{LOCAL_STARTUP_TIMEOUT_S:.0f} s; Ray has {free:g} of "
                    f"{self._cluster_cpus:g} CPUs free (another agent's workers? "
                    "stop them with agent.collector.close())"
                ) from None
            except ray.exceptions.RayError as err:
                self.close()
                raise ValueError(
                    f"Ray worker {k} could not build {type(self.agent).__name__}: {first_line(err)}"
                ) from None
        self.startup_seconds = time.perf_counter() - start
        self._launched_at = None
        self._ready = True

    def _spawn(self, k: int) -> Any:
        return self._actor_class.remote(type(self.agent), self.config, self._worker_seed(k))

    def close(self) -> None:
        """Stop the workers; stop Ray too if pgrad started it and no other collector uses it.

        Safe to call twice; a later collect starts the workers again.
        """
        if self.actors and not self._ready:
            # Ray can keep the CPU of an actor killed while its constructor runs (a learner that
            # failed right after launch()): let the constructors finish, for a bounded time
            with contextlib.suppress(Exception):
                self._ray.wait(
                    [actor.ping.remote() for actor in self.actors],
                    num_returns=len(self.actors),
                    timeout=CLOSE_WAIT_S,
                )
        for actor in self.actors:
            with contextlib.suppress(Exception):
                self._ray.kill(actor, no_restart=True)
        self.actors = []
        self._launched_at = None
        self._ready = False
        if self._using_ray:
            self._using_ray = False
            _RAY_USERS["collectors"] -= 1
            if _RAY_USERS["collectors"] == 0:
                _RAY_USERS["started"] = False
                if self._ray.is_initialized():
                    self._ray.shutdown()

    @property
    def seed(self) -> int:
        """Seed of the workers' next fresh episodes; setting it restarts every env (steps mode)."""
        return self._seed

    @seed.setter
    def seed(self, value: int) -> None:
        self._seed = value
        self._reseed_pending = True

    def _worker_seed(self, k: int) -> int:
        return derive_seed(self._seed, _WORKER_SEED, k, _RESTART_SEED, self.restarts[k])

    # -- collecting --------------------------------------------------------------------------------
    def collect_steps(self, num_steps: int, step_offset: int = 0) -> Rollout:
        """``num_steps`` steps in each of the ``workers * num_envs`` environments."""
        if not self.actors:
            self.wait_ready()  # launches them again after close()
        if self._reseed_pending:
            self._ray.get(
                [actor.reseed.remote(self._worker_seed(k)) for k, actor in enumerate(self.actors)]
            )
            self._reseed_pending = False
        return self._collect("collect_steps", [(num_steps, step_offset)] * self.num_workers)

    def collect_episodes(
        self, reset_seed: int | list[int] | None, max_steps: int, step_offset: int = 0
    ) -> Rollout:
        """One episode in every environment; each worker gets its share of ``reset_seed``."""
        if not self.actors:
            self.wait_ready()  # launches them again after close()
        seeds = split_reset_seeds(reset_seed, self.num_workers, self.config.num_envs)
        return self._collect("collect_episodes", [(s, max_steps, step_offset) for s in seeds])

    def _collect(self, method: str, args: list[tuple]) -> Rollout:
        ray = self._ray
        version = self.agent.weights_version
        weights = ray.put(policy_weights(self.agent.policy))  # one copy, read by every worker

        def submit(k: int) -> Any:
            return getattr(self.actors[k], method).remote(weights, version, *args[k])

        pending = [submit(k) for k in range(self.num_workers)]
        rollouts: list[Rollout] = []
        for k in range(self.num_workers):
            for attempt in range(1, MAX_ATTEMPTS + 1):
                try:
                    rollouts.append(ray.get(pending[k]))
                    break
                except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError) as err:
                    # the partial rollout died with the worker: drop it, collect the share again
                    self.faults += 1
                    if attempt == MAX_ATTEMPTS:
                        raise WorkerError(
                            f"Ray worker {k} died {attempt} times in one update; "
                            f"last: {first_line(err)}"
                        ) from None
                    warnings.warn(
                        f"Ray worker {k} died while collecting ({first_line(err)}); "
                        "its partial rollout is dropped and collected again",
                        RuntimeWarning,
                        stacklevel=3,
                    )
                    self._recover(k)
                    pending[k] = submit(k)
                except ray.exceptions.RayTaskError as err:
                    raise _unwrap(k, err) from None
        check_versions(rollouts, version)
        return merge_rollouts(rollouts, self.agent.device)

    def _recover(self, k: int) -> None:
        """Wait until worker ``k`` is back (restarted by Ray, or replaced), with fresh seeds."""
        ray = self._ray
        self.restarts[k] += 1
        deadline = time.monotonic() + RESTART_TIMEOUT_S
        replaced = False
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WorkerError(
                    f"Ray worker {k} did not come back within {RESTART_TIMEOUT_S:.0f} s"
                )
            try:
                ray.get(self.actors[k].reseed.remote(self._worker_seed(k)), timeout=remaining)
                return
            except _actor_unavailable(ray):
                time.sleep(0.1)  # restarting: calls may be refused for a moment
            except ray.exceptions.RayActorError as err:
                # its restarts are spent (or it cannot come back): replace it with a new actor
                if replaced:
                    raise WorkerError(
                        f"Ray worker {k} cannot be replaced: {first_line(err)}"
                    ) from None
                replaced = True
                with contextlib.suppress(Exception):
                    ray.kill(self.actors[k], no_restart=True)
                self.actors[k] = self._spawn(k)
            except ray.exceptions.GetTimeoutError:
                continue


def launch_workers(agent: Learner) -> RayCollector:
    """A ``RayCollector`` for ``agent`` whose workers are starting (``wait_ready`` joins them).

    Called by the agent after making its environments and before building its networks, so the
    workers build theirs meanwhile. A failed launch frees whatever it started.
    """
    collector = RayCollector(agent, start=False)
    try:
        collector.launch()
    except BaseException:
        collector.close()  # a Ray it started, or workers it created before failing
        raise
    return collector


# -- helpers ---------------------------------------------------------------------------------------
def _import_in_background(module: str) -> None:
    """Import ``module`` on a daemon thread unless it is imported already.

    ``ray.init`` spends most of its seconds waiting for Ray's processes to come up, and the
    learner's first optimizer imports ``torch._dynamo`` (about 2 s of CPU); doing both at once
    shortens start-up. A second ``import`` of the module waits for this one (the import lock).
    """
    if module in sys.modules:
        return
    import threading

    def load() -> None:
        with contextlib.suppress(Exception):  # the learner's own import will say what failed
            importlib.import_module(module)

    threading.Thread(target=load, daemon=True, name=f"pgrad-import-{module}").start()


def _in_ray_actor() -> bool:
    """Whether this process runs a Ray actor (a worker), not the driver or a plain process."""
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return False
    try:
        return ray.get_runtime_context().get_actor_id() is not None
    except Exception:  # an old Ray without the call: assume a worker, as before
        return True


def _actor_unavailable(ray: Any) -> type[BaseException] | tuple[()]:
    """``ActorUnavailableError`` (a restarting actor), on Ray versions that have it."""
    return getattr(ray.exceptions, "ActorUnavailableError", ())


def _unwrap(k: int, err: Any) -> BaseException:
    """The worker's own exception (``RayTaskError.cause``), naming the worker."""
    cause = getattr(err, "cause", None)
    if isinstance(cause, NonFiniteError):
        return NonFiniteError(f"Ray worker {k}: {cause}")
    return cause if isinstance(cause, BaseException) else err


def _pickle_by_value_if_needed(agent_cls: type) -> None:
    """Ship an agent class by value when workers could not import its module by name.

    ``pgrad train --agent path/file.py:Class`` loads the file as a module that exists only in
    this process; ``__main__`` classes are pickled by value by cloudpickle already.
    """
    module_name = agent_cls.__module__
    module = sys.modules.get(module_name)
    if module is None or module_name == "__main__":
        return
    top_level = module_name.partition(".")[0]
    if importlib.machinery.PathFinder.find_spec(top_level) is None:
        from ray import cloudpickle

        cloudpickle.register_pickle_by_value(module)
