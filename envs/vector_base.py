"""The part every numpy-vectorised classic-control environment shares: seeding, autoreset, limits.

A subclass holds the physical state of all N copies as one float64 array ``state`` of shape
``[D, N]`` (one row per state variable, so each variable is contiguous) and supplies three
pieces: ``_start(rng, options)``, one copy's start state drawn exactly as Gymnasium's
single environment draws it; ``_advance(actions)``, one step of all N copies, in place, returning
rewards and terminations; and ``_observe()``, the ``[N, ...]`` observations.

The copies step in Gymnasium's *next-step* autoreset mode: the step after a copy's episode ends
ignores that copy's action, resets it and returns its first observation with reward 0 and
``terminated = truncated = False``. The observation returned with ``terminated`` or ``truncated``
is the true last one, which a truncation bootstrap needs.

Each copy owns its random generator, so a copy's starts depend on its own seed only: copies
given equal seeds start equal, and so do their later episodes as long as they end together.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

SeedArg = int | Sequence[int | None] | None


def as_float32(values: np.ndarray) -> np.ndarray:
    """``values`` (float64) rounded to the nearest float32, kept as float64.

    One ``+``, ``-`` or ``*`` of two float32 numbers done in float64 and then rounded to float32
    gives the float32 result exactly (float64 has more than twice float32's 24 bits), so float32
    arithmetic can be reproduced on float64 arrays with this rounding after each operation.
    """
    return values.astype(np.float32).astype(np.float64)


class ClassicControlVectorEnv(VectorEnv):
    """N copies of one classic-control task stepped together as numpy arrays.

    Args:
        num_envs: N, the number of copies.
        max_episode_steps: episode length after which a copy is truncated (``None``: never).
        single_observation_space: one copy's observation space.
        single_action_space: one copy's action space.
        state_size: D, state variables per copy.

    Raises:
        ValueError: ``num_envs < 1`` or ``max_episode_steps < 1``.
    """

    accepts_seed_list = True
    """``reset`` takes one seed per copy (``pgrad.envs_util.accepts_seed_list`` reads this)."""

    metadata: dict[str, Any] = {"render_modes": [], "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(
        self,
        num_envs: int,
        max_episode_steps: int | None,
        single_observation_space: spaces.Space,
        single_action_space: spaces.Space,
        state_size: int,
        render_mode: str | None = None,
    ) -> None:
        if render_mode is not None:  # rendering is Gymnasium's single environment's job
            raise ValueError(f"{type(self).__name__} does not render (render_mode={render_mode!r})")
        if int(num_envs) < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        if max_episode_steps is not None and int(max_episode_steps) < 1:
            raise ValueError(f"max_episode_steps must be >= 1 or None, got {max_episode_steps}")
        self.num_envs = int(num_envs)
        self.max_episode_steps = None if max_episode_steps is None else int(max_episode_steps)
        self.single_observation_space = single_observation_space
        self.single_action_space = single_action_space
        self.observation_space = batch_space(single_observation_space, self.num_envs)
        self.action_space = batch_space(single_action_space, self.num_envs)
        self.render_mode = None
        self.state = np.zeros((state_size, self.num_envs), dtype=np.float64)
        self.rngs: list[np.random.Generator | None] = [None] * self.num_envs
        self.steps = np.zeros(self.num_envs, dtype=np.int64)
        self._ended = np.zeros(self.num_envs, dtype=bool)  # episode ended at the last step
        self._has_reset = False

    # -- the subclass's parts ------------------------------------------------------------------
    def _start(self, rng: np.random.Generator, options: dict[str, Any] | None) -> np.ndarray:
        """One copy's start state ``[D]``, drawn from ``rng`` as Gymnasium's env draws it."""
        raise NotImplementedError

    def _advance(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Step every copy: update ``self.state`` and return ``(rewards [N], terminated [N])``."""
        raise NotImplementedError

    def _observe(self) -> np.ndarray:
        """The observations ``[N, ...]`` of ``self.state``, in a new array."""
        raise NotImplementedError

    def _started(self, index: np.ndarray) -> None:
        """Called after the copies in ``index`` got a new start state (for per-copy flags)."""

    def _check_actions(self, actions: Any) -> np.ndarray:
        """``actions`` as an array of the batched action space's shape.

        Raises:
            ValueError: wrong shape, or a discrete action out of range.
        """
        actions = np.asarray(actions)
        space = self.single_action_space
        if actions.shape != self.action_space.shape:
            raise ValueError(
                f"actions must have shape {self.action_space.shape} (num_envs={self.num_envs}), "
                f"got {actions.shape}"
            )
        if isinstance(space, spaces.Discrete):
            if not np.issubdtype(actions.dtype, np.integer):
                raise ValueError(f"discrete actions must be integers, got dtype {actions.dtype}")
            if ((actions < space.start) | (actions >= space.start + space.n)).any():
                raise ValueError(
                    f"actions must lie in [{space.start}, {space.start + space.n}), got {actions}"
                )
        elif not np.issubdtype(actions.dtype, np.floating):
            actions = actions.astype(np.float64)
        return actions

    # -- the VectorEnv API ---------------------------------------------------------------------
    def seeds_for(self, seed: SeedArg) -> list[int | None]:
        """The per-copy seeds that ``reset(seed=seed)`` uses.

        ``None``: none (every copy keeps its generator; one never seeded gets a random one).
        An int ``s``: copy ``i`` gets ``s + i``, as in Gymnasium's ``SyncVectorEnv``. A list:
        copy ``i`` gets ``seed[i]`` (``None`` keeps that copy's generator).

        Raises:
            ValueError: a list whose length is not ``num_envs``.
            TypeError: anything else.
        """
        if seed is None:
            return [None] * self.num_envs
        if isinstance(seed, int | np.integer) and not isinstance(seed, bool):
            return [int(seed) + i for i in range(self.num_envs)]
        if isinstance(seed, Sequence | np.ndarray) and not isinstance(seed, str):
            seeds = [None if s is None else int(s) for s in seed]
            if len(seeds) != self.num_envs:
                raise ValueError(
                    f"a seed list must have num_envs={self.num_envs} entries, got {len(seeds)}"
                )
            return seeds
        raise TypeError(f"seed must be None, an int or a list of ints, got {seed!r}")

    def reset(
        self, *, seed: SeedArg = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset every copy; copy ``i`` starts as ``gymnasium.make(id).reset(seed=s_i)`` does.

        Args:
            seed: see ``seeds_for``.
            options: the single environment's reset options (e.g. ``{"low": -0.2, "high":
                0.2}``), applied to this reset only; autoresets use the defaults, as in
                Gymnasium's ``SyncVectorEnv``.

        Returns:
            ``(observations [N, ...], {})``.
        """
        for i, copy_seed in enumerate(self.seeds_for(seed)):
            if copy_seed is not None or self.rngs[i] is None:
                self.rngs[i], _ = seeding.np_random(copy_seed)
        everyone = np.arange(self.num_envs)
        self._restart(everyone, options)
        self.steps[:] = 0
        self._ended[:] = False
        self._has_reset = True
        return self._observe(), {}

    def _restart(self, index: np.ndarray, options: dict[str, Any] | None) -> None:
        for i in index:
            rng = self.rngs[i]
            assert rng is not None
            self.state[:, i] = self._start(rng, options)
        self._started(index)

    def step(
        self, actions: Any
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Step every copy (next-step autoreset, see the module docstring).

        Args:
            actions: ``[N]`` integers (discrete) or ``[N, ...]`` floats (continuous).

        Returns:
            ``(observations [N, ...] float32, rewards [N] float64, terminated [N] bool,
            truncated [N] bool, {})``.

        Raises:
            RuntimeError: ``step`` before ``reset``.
            ValueError: actions of the wrong shape, or out of range for a discrete space.
        """
        if not self._has_reset:
            raise RuntimeError("call reset before step")
        actions = self._check_actions(actions)
        rewards, terminated = self._advance(actions)
        self.steps += 1
        if self.max_episode_steps is None:
            truncated = np.zeros(self.num_envs, dtype=bool)
        else:
            truncated = self.steps >= self.max_episode_steps
        if self._ended.any():
            # the copies whose episode ended last step: this step is their reset
            index = np.flatnonzero(self._ended)
            self._restart(index, None)
            self.steps[index] = 0
            rewards[index] = 0.0
            terminated[index] = False
            truncated[index] = False
        self._ended = terminated | truncated
        return self._observe(), rewards, terminated, truncated, {}

    def __repr__(self) -> str:
        env_id = self.spec.id if self.spec is not None else type(self).__name__
        return f"{type(self).__name__}({env_id}, num_envs={self.num_envs})"
