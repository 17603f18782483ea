"""How much memory a run will need, and how much this machine has: refuse what cannot fit.

A run's memory grows with three sizes the user picks: the number of environments (each a Python
object, a process, or a few numpy floats), the samples of one rollout (``steps x environments``,
each kept with its activations until the update's backward pass) and the networks. Too large a
size does not fail: it grows until the kernel's OOM killer ends the process, or runs for minutes
before it does. ``estimate_memory`` predicts the peak from the sizes alone, so a run that cannot
fit is refused before anything is built.

The constants below are per-item costs measured on CPU with ``python bench/memory_estimate.py``
(peak RSS of one update over the RSS before it, fitted over several sizes; see that script). They
are rough, meant to tell 2 GiB from 2 TiB, and err on the high side.
"""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from gymnasium import spaces

from pgrad.errors import MemoryBudgetError

if TYPE_CHECKING:
    from pgrad.config import Config

SAMPLE_BYTES = 160
"""Per sample (one step of one environment): reward, flags, mask, value, return, advantage,
log-probability and their gradients."""
OBS_FLOAT_BYTES = {"steps": 6, "episodes": 12, "acting": 18}
"""Per observation float per sample. A steps rollout writes into one preallocated float32 tensor;
an episode rollout keeps a tensor per step, and the encoder's temporaries between them fragment
the heap, more so without a backward pass to reuse the space (``acting``: evaluation)."""
ACTION_BYTES = 8
"""Per sample: the sampled action (int64 or float32 per dimension)."""
HEAD_FLOAT_BYTES = 12
"""Per policy output (logit or mean) per sample: the output, its log-softmax and gradient."""
HIDDEN_UNIT_BYTES = {"learner": 8, "acting": 4}
"""Per hidden unit per sample: per network trained, the saved pre- and post-activation; acting
only, what each step's freed activations leave in the fragmented heap."""
PARAM_BYTES = {"learner": 16, "acting": 4}
"""Per parameter: float32 weight, gradient and Adam's two moments; acting only, the weight."""
AGENT_FIXED_BYTES = 448 * 2**20
"""Once per agent: torch's first kernels and buffers and the imported libraries, whatever the
sizes (one update of 2,000 sync CartPoles measured 392 MB on one install and 631 MB on another,
with more packages, against a small-size estimate)."""
VECTOR_ENV_BYTES = 32
"""Per sub-environment of a numpy-vectorised env: its scalar state (plus 16 B per obs float)."""
VECTOR_ENV_OBS_BYTES = 16
"""Per observation float per sub-environment of a numpy-vectorised env (state and buffers)."""
SYNC_ENV_BYTES = 1024
"""Per sub-environment of a sync vector env, on top of one measured env: wrappers, buffers."""
MEASURED_ENV_FACTOR = 1.25
"""Scales an environment's ``tracemalloc`` size to the RSS it adds (Taxi: 0.74 MB seen, 0.83 MB
of RSS)."""
ASYNC_ENV_BYTES = 24 * 2**20
"""Per sub-environment of an async vector env: a forked worker process (its PSS)."""
WORKER_PROCESS_BYTES = 256 * 2**20
"""Per local Ray worker: a Python process that imported torch and pgrad (about 230 MiB of RSS
before it builds anything; Ray's own daemons are not counted)."""
UNLIMITED_EPISODE_STEPS = 1_000
"""Episode length assumed for ``rollout=episodes`` when neither the config nor the environment
sets a time limit (the longest of Gymnasium's classic-control and Box2D limits)."""
EPISODE_STEP_CAP = 100_000
"""The longest episode an episode rollout collects (``pgrad.agent`` cuts episodes there)."""
MARGIN = 0.1
"""Share of the available memory left free: the estimate is rough and others use memory too."""
LARGE_BYTES = 2**30
"""From this estimated size on, the CLI says what it is building before it starts."""
LARGE_NUM_ENVS = 10_000
"""From this many environments on, the CLI says what it is building before it starts."""


@dataclass(frozen=True)
class EnvFootprint:
    """What the memory estimate needs to know about an environment (see ``probe_env``).

    Attributes:
        observation_space: the single environment's observation space (Dict/Tuple flattened).
        action_space: the single environment's action space.
        max_episode_steps: the time limit, ``None`` when there is none.
        env_bytes: measured size of one environment object, in bytes.
        vectorized: whether it has a numpy-vectorised form (``vector_entry_point``).
    """

    observation_space: spaces.Space
    action_space: spaces.Space
    max_episode_steps: int | None
    env_bytes: int
    vectorized: bool


@dataclass(frozen=True)
class MemoryEstimate:
    """An estimated peak, in bytes, and the sizes it came from.

    Attributes:
        num_envs: environments in all (``num_envs x workers``).
        steps: steps per environment in one rollout.
        mode: vectorisation: ``vector_entry_point``, ``sync`` or ``async``.
        env_bytes: the environment objects (and processes) on this machine.
        rollout_bytes: one rollout's samples through the update (``num_envs x steps``).
        network_bytes: parameters, with gradients and optimizer state for a learner.
    """

    num_envs: int
    steps: int
    mode: str
    env_bytes: int
    rollout_bytes: int
    network_bytes: int

    @property
    def total(self) -> int:
        return self.env_bytes + self.rollout_bytes + self.network_bytes

    def describe(self) -> str:
        """``'200,000 environments (sync), rollouts of up to 500 steps: an estimated 12.1 GiB'``."""
        return (
            f"{self.num_envs:,} environment{'s' if self.num_envs != 1 else ''} ({self.mode}), "
            f"rollouts of up to {self.steps:,} steps: an estimated {format_bytes(self.total)}"
        )

    def advice(self) -> str:
        """What to lower, by the largest part of the estimate."""
        parts = {
            "num_envs": self.env_bytes,
            "num_envs, num_steps or max_episode_steps": self.rollout_bytes,
            "hidden": self.network_bytes - AGENT_FIXED_BYTES,
        }
        return f"lower {max(parts, key=parts.__getitem__)}"


def _obs_width(space: spaces.Space) -> int:
    """Floats per observation as the policy sees them (one-hot for Discrete)."""
    if isinstance(space, spaces.Discrete):
        return int(space.n)
    try:
        return max(math.prod(space.shape or (1,)), 1)
    except TypeError:  # a space without a fixed shape: the agent refuses it anyway
        return 1


def _head_width(space: spaces.Space) -> int:
    """Outputs of the policy network for an action space (logits or means)."""
    if isinstance(space, spaces.Discrete):
        return int(space.n)
    if isinstance(space, spaces.MultiDiscrete):
        nvec = [int(n) for n in space.nvec.flatten()]
        return len(nvec) * max(nvec, default=1)  # one padded row of logits per sub-action
    return _obs_width(space)


def _mlp_params(inputs: int, hidden: tuple[int, ...], outputs: int) -> int:
    sizes = [inputs, *hidden, outputs]
    return sum(a * b + b for a, b in zip(sizes, sizes[1:]))


def rollout_steps(config: Config, footprint: EnvFootprint, episodes: bool = False) -> int:
    """Steps per environment in one rollout: ``num_steps``, or the longest episode allowed.

    For ``rollout=episodes`` (or ``episodes=True``: evaluation) that is ``max_episode_steps``
    when set, else the environment's time limit, else ``UNLIMITED_EPISODE_STEPS`` (an
    environment without a limit cannot say how long its episodes are; set ``max_episode_steps``
    to bound them), never above ``EPISODE_STEP_CAP``.
    """
    if config.rollout == "steps" and not episodes:
        return config.num_steps
    limit = config.max_episode_steps or footprint.max_episode_steps or UNLIMITED_EPISODE_STEPS
    return min(limit, EPISODE_STEP_CAP)


def vectorization_mode(config: Config, footprint: EnvFootprint) -> str:
    """The vector env kind ``config.vectorization`` resolves to (``auto`` picks numpy's)."""
    if config.vectorization == "auto":
        return "vector_entry_point" if footprint.vectorized else "sync"
    return config.vectorization


def env_object_bytes(mode: str, num_envs: int, obs_width: int = 1, env_bytes: int = 0) -> int:
    """Memory of ``num_envs`` sub-environments of one vector env in ``mode``.

    A numpy-vectorised env holds a few floats per sub-environment; a sync one a Python env
    object each (``env_bytes``, measured, plus wrappers); an async one a process each.
    """
    if mode == "vector_entry_point":
        return num_envs * (VECTOR_ENV_BYTES + VECTOR_ENV_OBS_BYTES * obs_width)
    measured = int(env_bytes * MEASURED_ENV_FACTOR)
    if mode == "async":
        return num_envs * (ASYNC_ENV_BYTES + measured)
    return num_envs * (SYNC_ENV_BYTES + measured)


def estimate_memory(
    config: Config, footprint: EnvFootprint, *, learner: bool = True, num_envs: int | None = None
) -> MemoryEstimate:
    """The peak memory a run of ``config`` adds to this process, in bytes (rough, see the module).

    With ``T`` = ``rollout_steps``, ``N`` = environments in all, ``D`` = observation floats,
    ``A`` = policy outputs, ``H`` = the sum of the hidden widths and ``k`` = networks trained
    (2 with a learned value baseline, else 1), in bytes::

        rollout = N (T + 1) (160 + o D + 8 + 12 A + 8 k H)    learner; o = 6 (steps), 12 (episodes)
        rollout = N (T + 1) (160 + 18 D + 8 + 4 H)            acting only (evaluation)
        envs    = N x (per-env cost of the vectorisation mode)    (envs on this machine only)
        network = 448 MiB (torch, Gymnasium and pgrad loaded) + parameters x (16 learner, 4 acting)

    Args:
        config: the run's config (``num_envs``, ``workers``, ``rollout``, ``num_steps``,
            ``max_episode_steps``, ``vectorization``, ``hidden``, ``baseline``).
        footprint: the environment's spaces and size (``pgrad.envs_util.probe_env``).
        learner: ``False`` for an acting-only agent that runs whole episodes (evaluation): no
            backward pass, no optimizer, no workers.
        num_envs: environments of one vector env instead of ``config.num_envs`` (evaluation
            makes one per episode).
    """
    per_vector_env = config.num_envs if num_envs is None else num_envs
    workers = config.workers if learner else 0
    total_envs = per_vector_env * max(workers, 1)
    steps = rollout_steps(config, footprint, episodes=not learner)
    mode = vectorization_mode(config, footprint)
    obs = _obs_width(footprint.observation_space)
    head = _head_width(footprint.action_space)
    hidden = sum(config.hidden)
    critic = learner and config.baseline == "value"
    role = "learner" if learner else "acting"
    if learner:
        per_sample = (
            SAMPLE_BYTES
            + OBS_FLOAT_BYTES[config.rollout] * obs
            + ACTION_BYTES
            + HEAD_FLOAT_BYTES * head
            + HIDDEN_UNIT_BYTES[role] * (2 if critic else 1) * hidden
        )
    else:
        per_sample = (
            SAMPLE_BYTES
            + OBS_FLOAT_BYTES[role] * obs
            + ACTION_BYTES
            + HIDDEN_UNIT_BYTES[role] * hidden
        )
    rollout = total_envs * (steps + 1) * per_sample
    params = _mlp_params(obs, config.hidden, head) + head  # + a Gaussian's log-std
    if critic:
        params += _mlp_params(obs, config.hidden, 1)
    network = AGENT_FIXED_BYTES + params * PARAM_BYTES[role]
    local = workers == 0 or not config.ray_address
    envs = env_object_bytes(mode, total_envs, obs, footprint.env_bytes) if local else 0
    if local and workers:
        envs += workers * WORKER_PROCESS_BYTES
    return MemoryEstimate(total_envs, steps, mode, envs, rollout, network)


def available_memory() -> int | None:
    """Bytes this process can still allocate, or ``None`` when the system does not say.

    The least of: the kernel's ``MemAvailable`` (free memory plus caches it can drop), the room
    left under a cgroup memory limit (containers), and the room left under ``RLIMIT_AS``.
    """
    candidates: list[int] = []
    meminfo = _read_kib_fields(Path("/proc/meminfo"))
    if "MemAvailable" in meminfo:
        candidates.append(meminfo["MemAvailable"])
    else:
        with contextlib.suppress(ValueError, OSError, AttributeError):  # not on every OS
            candidates.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    for limit_file, usage_file in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),  # cgroup v2
        (
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",  # cgroup v1
            "/sys/fs/cgroup/memory/memory.usage_in_bytes",
        ),
    ):
        limit, usage = _read_int(Path(limit_file)), _read_int(Path(usage_file))
        if limit is not None and usage is not None and limit < 2**60:
            candidates.append(max(limit - usage, 0))
    try:
        import resource
    except ImportError:  # not on Windows
        return min(candidates) if candidates else None
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        in_use = _read_kib_fields(Path("/proc/self/status")).get("VmSize", 0)
        candidates.append(max(soft - in_use, 0))
    return min(candidates) if candidates else None


def check_memory(
    estimate: MemoryEstimate, available: int | None = None, advice: str | None = None
) -> None:
    """Raise ``MemoryBudgetError`` when ``estimate`` exceeds the available memory less ``MARGIN``.

    Args:
        estimate: from ``estimate_memory``.
        available: bytes available; ``None`` reads them with ``available_memory``.
        advice: what the message tells the user to lower (default: ``estimate.advice()``).

    Raises:
        MemoryBudgetError: one line naming the sizes, the estimate and the limit.
    """
    available = available_memory() if available is None else available
    if available is None:
        return
    limit = int(available * (1 - MARGIN))
    if estimate.total > limit:
        raise MemoryBudgetError(
            f"{estimate.describe()}, more than the {format_bytes(limit)} this machine can "
            f"give ({100 - round(MARGIN * 100)}% of {format_bytes(available)} available); "
            f"{advice or estimate.advice()}"
        )


def check_env_objects(env_id: str, num_envs: int, mode: str) -> None:
    """Refuse building ``num_envs`` sub-environments whose bare objects cannot fit in memory.

    The cheap bound ``make_vector_env`` applies before building (no env is made to measure):
    per sub-environment, the fixed cost of ``mode`` (``sync``, ``async`` or
    ``vector_entry_point``) alone.

    Raises:
        MemoryBudgetError: one line naming the count, the estimate and the limit.
    """
    needed = env_object_bytes(mode, num_envs)
    available = available_memory()
    if available is not None and needed > available * (1 - MARGIN):
        raise MemoryBudgetError(
            f"{num_envs:,} {env_id} environments ({mode}) need at least "
            f"{format_bytes(needed)}, more than the {format_bytes(int(available * (1 - MARGIN)))} "
            "this machine can give; lower num_envs"
        )


def format_bytes(size: float) -> str:
    """``1536`` -> ``'1.5 KiB'``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(size) < 1024 or unit == "PiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:,.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def _read_kib_fields(path: Path) -> dict[str, int]:
    """``{'MemAvailable': bytes, ...}`` from a ``/proc`` file of ``Key:  123 kB`` lines."""
    try:
        text = path.read_text()
    except OSError:
        return {}
    fields: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if len(parts) == 2 and parts[1] == "kB" and parts[0].isdigit():
            fields[key] = int(parts[0]) * 1024
    return fields


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):  # absent, or "max" (no limit)
        return None
