"""Observations as the space gives them: a tensor, or a dict or tuple of them (any depth).

The collector stores observations in the space's own dtype and structure (a uint8 image stays
uint8, a ``Dict`` stays a dict), and the policy's encoder turns them into features. These
helpers apply one function to every leaf, so that code handles every structure alike.

Every leaf carries the same leading batch dimensions: ``[N, *leaf_shape]`` from a vector
environment, ``[T, N, *leaf_shape]`` in a rollout.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeAlias

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

Obs: TypeAlias = Tensor | dict[str, Any] | tuple[Any, ...]
"""A tensor, or a dict or tuple of ``Obs``."""

ACTION_MASK = "action_mask"
"""The key of a ``Dict`` observation that masks the actions (PettingZoo's convention)."""


def map_obs(fn: Callable[..., Any], obs: Any, *others: Any) -> Any:
    """``fn`` applied to every leaf of ``obs`` (and the matching leaves of ``others``)."""
    if isinstance(obs, dict):
        return {k: map_obs(fn, v, *(o[k] for o in others)) for k, v in obs.items()}
    if isinstance(obs, tuple):
        return tuple(map_obs(fn, v, *(o[i] for o in others)) for i, v in enumerate(obs))
    return fn(obs, *others)


def leaves(obs: Any) -> list[Any]:
    """The leaves of ``obs`` in order."""
    if isinstance(obs, dict):
        return [x for v in obs.values() for x in leaves(v)]
    if isinstance(obs, tuple):
        return [x for v in obs for x in leaves(v)]
    return [obs]


def to_tensor(raw: Any, device: torch.device | str) -> Obs:
    """A vector environment's observation (numpy arrays) as tensors, without a copy on the CPU."""
    return map_obs(lambda x: torch.as_tensor(np.asarray(x), device=device), raw)


def action_mask(obs: Obs) -> Tensor | None:
    """The ``action_mask`` entry of a dict observation, else ``None``."""
    if isinstance(obs, dict):
        return obs.get(ACTION_MASK)
    return None


def batch_dims(obs: Obs, space: gym.Space) -> tuple[int, ...]:
    """The leading batch dimensions of ``obs``, an observation of ``space`` or a batch of them.

    Raises:
        ValueError: ``obs`` has fewer dimensions than ``space`` gives one observation.
    """
    leaf, leaf_space = obs, space
    while isinstance(leaf_space, gym.spaces.Dict | gym.spaces.Tuple):
        key = next(iter(leaf_space.spaces)) if isinstance(leaf_space, gym.spaces.Dict) else 0
        leaf, leaf_space = leaf[key], leaf_space[key]
    shape = tuple(leaf.shape) if hasattr(leaf, "shape") else np.shape(leaf)
    event = tuple(leaf_space.shape or ())
    if len(shape) < len(event) or shape[len(shape) - len(event) :] != event:
        raise ValueError(f"observation of shape {shape} does not fit {space}")
    return shape[: len(shape) - len(event)]


__all__ = ["ACTION_MASK", "Obs", "action_mask", "batch_dims", "leaves", "map_obs", "to_tensor"]
