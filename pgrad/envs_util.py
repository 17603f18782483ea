"""Building vector environments and seeding: the parts of the agent that touch Gymnasium."""

from __future__ import annotations

import copy
import importlib
import random

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv, VectorEnv

from pgrad.config import Config
from pgrad.errors import EnvError, first_line


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
    env_id: str, num_envs: int, vectorization: str = "auto", max_episode_steps: int = 0
) -> VectorEnv:
    """A Gymnasium vector environment in next-step autoreset mode.

    Args:
        env_id: registered id.
        num_envs: parallel copies.
        vectorization: ``auto`` picks the environment's numpy-vectorised form when it has one
            (``vector_entry_point``), else ``sync``.
        max_episode_steps: time limit (0 keeps the environment's own).

    Observations keep their space (a Dict stays a dict); the policy's encoder reads them.
    """
    spec = copy.deepcopy(find_spec(env_id))
    check_extras(env_id, spec)
    if max_episode_steps > 0:
        spec.max_episode_steps = max_episode_steps
    mode = vectorization
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
    return envs


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
