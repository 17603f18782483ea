"""Building vector environments and seeding: the parts of the agent that touch Gymnasium."""

from __future__ import annotations

import copy
import random

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv, VectorEnv

from pgrad.errors import first_line


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
            (``vector_entry_point``: Gymnasium's, or pgrad's own for the ids in
            ``pgrad.envs.VECTOR_ENVS``), else ``sync``.
        max_episode_steps: time limit (0 keeps the environment's own).

    Dict and Tuple observation spaces are flattened to one Box.
    """
    spec = copy.deepcopy(find_spec(env_id))
    if max_episode_steps > 0:
        spec.max_episode_steps = max_episode_steps
    mode = vectorization
    ours = numpy_vectorised().get(env_id)
    if ours is not None and mode in ("auto", "vector_entry_point"):
        spec.vector_entry_point = ours
    if mode == "auto":
        mode = "vector_entry_point" if spec.vector_entry_point is not None else "sync"
    if mode == "vector_entry_point" and spec.vector_entry_point is None:
        raise EnvError(f"{env_id} has no numpy-vectorised form; use vectorization=sync or async")
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


def accepts_seed_list(envs: VectorEnv) -> bool:
    """Whether ``envs.reset`` takes one seed per environment (sync, async and pgrad's own do)."""
    from pgrad.envs import ClassicControlVectorEnv

    return isinstance(envs.unwrapped, SyncVectorEnv | AsyncVectorEnv | ClassicControlVectorEnv)


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
