"""Building vector environments and seeding: the parts of the agent that touch Gymnasium."""

from __future__ import annotations

import copy
import random
import tracemalloc

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv, VectorEnv

from pgrad.errors import first_line
from pgrad.memory import EnvFootprint, check_env_objects


class EnvError(ValueError):
    """An environment id that cannot be made, or a space the agent cannot handle."""


def find_spec(env_id: str) -> gym.envs.registration.EnvSpec:
    """The registered spec of ``env_id``, importing pgrad's own environments first.

    Raises:
        EnvError: unknown id (with the closest registered ids as a hint).
    """
    import pgrad.envs  # noqa: F401  (registers pgrad/...)

    try:
        return gym.spec(env_id)
    except Exception as err:  # gymnasium raises several error classes for bad ids
        import difflib

        close = difflib.get_close_matches(env_id, list(gym.registry), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        first = first_line(err)
        raise EnvError(f"unknown environment {env_id!r} ({first}){hint}") from None


def make_vector_env(
    env_id: str, num_envs: int, vectorization: str = "auto", max_episode_steps: int = 0
) -> VectorEnv:
    """A Gymnasium vector environment in next-step autoreset mode.

    Args:
        env_id: registered id.
        num_envs: parallel copies.
        vectorization: ``auto`` picks the environment's numpy-vectorised form when it has one
            (``vector_entry_point``), else ``sync``.
        max_episode_steps: time limit (0 keeps the environment's own).

    Dict and Tuple observation spaces are flattened to one Box.
    """
    spec = copy.deepcopy(find_spec(env_id))
    if max_episode_steps > 0:
        spec.max_episode_steps = max_episode_steps
    mode = vectorization
    if mode == "auto":
        mode = "vector_entry_point" if spec.vector_entry_point is not None else "sync"
    if mode == "vector_entry_point" and spec.vector_entry_point is None:
        raise EnvError(f"{env_id} has no numpy-vectorised form; use vectorization=sync or async")
    # a cheap bound before building: a Python object (or a process) per sub-environment can
    # outgrow memory while Gymnasium builds them, long before the first rollout
    check_env_objects(env_id, num_envs, mode)
    vector_kwargs = (
        {} if mode == "vector_entry_point" else {"autoreset_mode": AutoresetMode.NEXT_STEP}
    )
    try:
        envs = gym.make_vec(
            spec, num_envs=num_envs, vectorization_mode=mode, vector_kwargs=vector_kwargs
        )
    except EnvError:
        raise
    except Exception as err:
        first = first_line(err)
        raise EnvError(f"cannot make {env_id}: {first}") from None
    if isinstance(envs.single_observation_space, spaces.Dict | spaces.Tuple):
        from gymnasium.wrappers.vector import FlattenObservation

        envs = FlattenObservation(envs)
    return envs


def probe_env(env_id: str, max_episode_steps: int = 0) -> EnvFootprint:
    """Spaces, time limit and the measured size of one ``env_id`` environment.

    Makes the environment twice: the first ``gym.make`` imports its modules and fills caches,
    the second is measured with ``tracemalloc`` (allocations through Python's allocator; memory
    a C extension allocates itself, a physics engine's or an emulator's, is not seen).

    Raises:
        EnvError: unknown id, or an environment that cannot be made.
    """
    spec = copy.deepcopy(find_spec(env_id))
    if max_episode_steps > 0:
        spec.max_episode_steps = max_episode_steps
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
    """Whether ``envs.reset`` takes one seed per environment (sync and async do)."""
    return isinstance(envs.unwrapped, SyncVectorEnv | AsyncVectorEnv)


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
