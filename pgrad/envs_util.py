"""Building vector environments and seeding: the parts of the agent that touch Gymnasium."""

from __future__ import annotations

import copy
import importlib
import inspect
import os
import random
import sys
import tracemalloc
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv, VectorEnv

from pgrad.config import Config
from pgrad.episode_stats import record_raw_returns
from pgrad.errors import EnvError, first_line
from pgrad.memory import EnvFootprint, check_env_objects


def find_spec(env_id: str) -> gym.envs.registration.EnvSpec:
    """The registered spec of ``env_id``, importing pgrad's own environments first.

    ``module:Env-v0`` (Gymnasium's form) imports ``module`` first, from the current folder too,
    so that its registrations run.

    Raises:
        EnvError: unknown id (with the closest registered ids as a hint), or a module that
            cannot be imported.
    """
    import pgrad.envs  # noqa: F401  (registers pgrad/...)

    module, sep, name = env_id.rpartition(":")
    if sep:
        if os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())
        try:
            importlib.import_module(module)
        except Exception as err:  # the user's module failed: say which, in one line
            raise EnvError(f"cannot import {module!r} for {env_id}: {first_line(err)}") from None
        env_id = name
    try:
        return gym.spec(env_id)
    except Exception as err:  # gymnasium raises several error classes for bad ids
        import difflib

        close = difflib.get_close_matches(env_id, list(gym.registry), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        first = first_line(err)
        raise EnvError(f"unknown environment {env_id!r} ({first}){hint}") from None


EXTRAS = {"gymnasium.envs.mujoco": ("mujoco", "mujoco"), "gymnasium.envs.box2d": ("Box2D", "box2d")}
"""Gymnasium's environment families that need a package of their own: entry-point prefix to
(the module to import, the pgrad extra that installs it)."""


def check_extras(env_id: str, spec: gym.envs.registration.EnvSpec) -> None:
    """Raise ``EnvError`` naming pgrad's extra when ``env_id`` needs a package that is missing.

    Gymnasium's own message names ``gymnasium[...]``, which leaves out the version bounds
    pgrad's extras set (``mujoco<4``).
    """
    entry = spec.entry_point if isinstance(spec.entry_point, str) else ""
    for prefix, (module, extra) in EXTRAS.items():
        if entry.startswith(prefix):
            try:
                importlib.import_module(module)
            except ImportError:
                raise EnvError(
                    f"{env_id} needs {module}, which is not installed: pip install 'pgrad[{extra}]'"
                ) from None


def make_vector_env(
    env_id: str,
    num_envs: int,
    vectorization: str = "auto",
    max_episode_steps: int = 0,
    shared_starts: bool = False,
    env_kwargs: dict[str, Any] | None = None,
    vector_only_kwargs: dict[str, Any] | None = None,
) -> VectorEnv:
    """A Gymnasium vector environment in next-step autoreset mode, recording raw returns.

    A recorder sits innermost (``pgrad.episode_stats``): on each sub-environment right after
    ``gymnasium.make`` (sync, async), or on the numpy-vectorised environment itself, so that
    the episodic returns it reports stay the environment's own whatever reward wrappers an
    agent's ``make_env`` adds on top.

    Args:
        env_id: registered id.
        num_envs: parallel copies.
        vectorization: ``auto`` picks the environment's numpy-vectorised form when it has one
            (``vector_entry_point``: Gymnasium's, or pgrad's own for the ids in
            ``pgrad.envs.VECTOR_ENVS``), else ``sync``.
        max_episode_steps: time limit (0 keeps the environment's own).
        env_kwargs: keyword arguments for the environment's constructor (``gymnasium.make``'s,
            e.g. ``{"length": 6}``).
        shared_starts: the caller resets sub-environments with one seed each, equal within a
            group (the grouped baselines); ``auto`` then skips a numpy-vectorised form that
            takes only one seed for all (Gymnasium's CartPole draws every start from one RNG),
            unless that form takes ``group_size`` and shares its groups' instances itself.
        vector_only_kwargs: keyword arguments for a numpy-vectorised form only, each passed
            when its constructor takes it (e.g. ``group_size``); ignored for sync and async.

    Observations keep their space (a Dict stays a dict); the policy's encoder reads them.

    Raises:
        EnvError: an unknown id, an environment that fails to build, or a vectorisation that
            cannot give ``shared_starts``.
    """
    spec = copy.deepcopy(find_spec(env_id))
    check_extras(env_id, spec)
    if max_episode_steps > 0:
        spec.max_episode_steps = max_episode_steps
    spec.kwargs = {**spec.kwargs, **(env_kwargs or {})}
    mode = vectorization
    ours = numpy_vectorised().get(env_id)
    if ours is not None and mode in ("auto", "vector_entry_point"):
        spec.vector_entry_point = ours
    if mode == "auto":
        mode = "vector_entry_point" if spec.vector_entry_point is not None else "sync"
    if mode == "vector_entry_point" and spec.vector_entry_point is None:
        raise EnvError(f"{env_id} has no numpy-vectorised form; use vectorization=sync or async")
    # a cheap bound before building: a Python object (or a process) per sub-environment can
    # outgrow memory while Gymnasium builds them, long before the first rollout
    check_env_objects(env_id, num_envs, mode)
    numpy_form = mode == "vector_entry_point"
    vector_kwargs = {} if numpy_form else {"autoreset_mode": AutoresetMode.NEXT_STEP}
    taken: dict[str, Any] = {}  # env_kwargs travel in the spec; these only to a vector form
    if numpy_form and vector_only_kwargs:
        taken = _accepted(spec.vector_entry_point, vector_only_kwargs)
    try:
        envs = gym.make_vec(
            spec,
            num_envs=num_envs,
            vectorization_mode=mode,
            vector_kwargs=vector_kwargs,
            wrappers=None if numpy_form else [record_raw_returns],
            **taken,
        )
        if numpy_form:
            envs = record_raw_returns(envs)
    except EnvError:
        raise
    except Exception as err:
        first = first_line(err)
        raise EnvError(f"cannot make {env_id}: {first}") from None
    if shared_starts and "group_size" not in taken and not accepts_seed_list(envs):
        envs.close()
        if vectorization != "auto":
            raise EnvError(
                f"the {mode} form of {env_id} cannot seed each environment, so groups cannot "
                "share a start (baseline=loo or group); use vectorization=auto or sync"
            )
        return make_vector_env(
            env_id, num_envs, "sync", max_episode_steps, shared_starts, env_kwargs
        )
    return envs


def _accepted(entry_point: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The entries of ``kwargs`` that ``entry_point`` (a callable or ``module:name``) takes."""
    if isinstance(entry_point, str):
        from gymnasium.envs.registration import load_env_creator

        entry_point = load_env_creator(entry_point)
    try:
        parameters = inspect.signature(entry_point).parameters
    except (TypeError, ValueError):
        return {}
    return {k: v for k, v in kwargs.items() if k in parameters}


def numpy_vectorised() -> dict[str, str]:
    """Registered ids with a numpy-vectorised form, each with its ``vector_entry_point``.

    Gymnasium's own (CartPole) and pgrad's (``pgrad.envs.VECTOR_ENVS``, which take precedence).
    Gymnasium's ``phys2d/`` ids are left out: their vector forms run on JAX.
    """
    from pgrad.envs import VECTOR_ENVS

    forms = {
        env_id: str(spec.vector_entry_point)
        for env_id, spec in gym.registry.items()
        if spec.vector_entry_point is not None and spec.namespace != "phys2d"
    }
    for env_id, cls in VECTOR_ENVS.items():
        forms[env_id] = f"{cls.__module__}:{cls.__qualname__}"
    return forms


EPISODE_STEP_CAP = 100_000
"""The longest episode ``collect_episodes`` waits for when an environment sets no time limit."""


def episode_cap(envs: VectorEnv, max_episode_steps: int = 0) -> int:
    """Steps after which a whole-episode rollout truncates: the configured or registered time
    limit, at most ``EPISODE_STEP_CAP``."""
    limit = max_episode_steps or (envs.spec.max_episode_steps if envs.spec else None)
    return min(limit or EPISODE_STEP_CAP, EPISODE_STEP_CAP)


def episode_seeds(envs: VectorEnv, config: Config, update: int) -> int | list[int]:
    """Reset seeds for update ``update``'s batch of whole episodes, derived from the run's seed.

    Environments of a group (``group_size`` of them, for the grouped baselines) share one seed,
    so their starts are equal, which leave-one-out and group baselines assume. A vector
    environment that takes only one seed gets an int.
    """
    if not accepts_seed_list(envs):
        return derive_seed(config.seed, update)
    per_group = config.group_size if config.grouped else 1
    return [derive_seed(config.seed, update, i // per_group) for i in range(config.num_envs)]


def probe_env(
    env_id: str, max_episode_steps: int = 0, env_kwargs: dict[str, Any] | None = None
) -> EnvFootprint:
    """Spaces, time limit and the measured size of one ``env_id`` environment.

    Makes the environment twice: the first ``gym.make`` imports its modules and fills caches,
    the second is measured with ``tracemalloc`` (allocations through Python's allocator; memory
    a C extension allocates itself, a physics engine's or an emulator's, is not seen).

    Raises:
        EnvError: unknown id, or an environment that cannot be made.
    """
    spec = copy.deepcopy(find_spec(env_id))
    check_extras(env_id, spec)
    if max_episode_steps > 0:
        spec.max_episode_steps = max_episode_steps
    spec.kwargs = {**spec.kwargs, **(env_kwargs or {})}
    try:
        env = gym.make(spec)
        env.close()
        already_tracing = tracemalloc.is_tracing()
        if not already_tracing:
            tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        try:
            env = gym.make(spec)
            env.reset(seed=0)
            env_bytes = max(tracemalloc.get_traced_memory()[0] - before, 0)
        finally:
            if not already_tracing:
                tracemalloc.stop()
        obs_space, action_space = env.observation_space, env.action_space
        env.close()
    except EnvError:
        raise
    except Exception as err:
        raise EnvError(f"cannot make {env_id}: {first_line(err)}") from None
    if isinstance(obs_space, spaces.Dict | spaces.Tuple):
        obs_space = spaces.flatten_space(obs_space)  # as make_vector_env flattens them
    return EnvFootprint(
        observation_space=obs_space,
        action_space=action_space,
        max_episode_steps=spec.max_episode_steps,
        env_bytes=env_bytes,
        vectorized=spec.vector_entry_point is not None,
    )


def accepts_seed_list(envs: VectorEnv) -> bool:
    """Whether ``envs.reset`` takes one seed per environment: sync and async do, and so does a
    vector environment whose class sets ``accepts_seed_list = True`` (pgrad's own)."""
    base = envs.unwrapped
    return isinstance(base, SyncVectorEnv | AsyncVectorEnv) or bool(
        getattr(base, "accepts_seed_list", False)
    )


def derive_seed(*parts: int) -> int:
    """A 31-bit seed that depends on every part; stateless, so a resumed run derives the same."""
    return int(np.random.SeedSequence([p & 0xFFFFFFFF for p in parts]).generate_state(1)[0] >> 1)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed & 0xFFFFFFFF)
    torch.manual_seed(seed)


def rng_state() -> dict:
    """Python, numpy and torch RNG states as tensors and plain lists (safe to checkpoint)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "python": {"version": version, "internal": list(internal), "gauss": gauss},
    }


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    numpy_state = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            numpy_state["keys"].numpy().astype(np.uint32),
            numpy_state["pos"],
            numpy_state["has_gauss"],
            numpy_state["cached"],
        )
    )
    python_state = state["python"]
    random.setstate(
        (python_state["version"], tuple(python_state["internal"]), python_state["gauss"])
    )
