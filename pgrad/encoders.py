"""Encoders: observations, as the space gives them, to a feature vector ``[*B, out_dim]``.

A policy (and a critic) is an encoder followed by a head. The encoder is chosen by the
observation space (:func:`encoder_for`):

| observation space                          | encoder          | features                     |
|--------------------------------------------|------------------|------------------------------|
| ``Box`` image (uint8, 3 dims, channels      | :class:`CNNEncoder` | a small Nature-DQN CNN, then |
| first or last)                             |                  | a linear layer and ReLU      |
| ``Box``, ``MultiBinary``, ``MultiDiscrete`` | :class:`FlatEncoder` | flattened to floats          |
| ``Discrete(n)``                            | :class:`FlatEncoder` | one-hot, ``n`` wide          |
| ``Dict`` / ``Tuple`` of those              | :class:`FlatEncoder` | each entry flattened as      |
|                                            |                  | ``gymnasium.spaces.flatten`` does, concatenated in the space's order; a Dict's ``action_mask`` entry is left out (it masks the head, see ``pgrad.policies``) |

``B`` is any batch shape: ``[N]`` while acting, ``[T, N]`` in an update. A user's encoder is any
``nn.Module`` with an ``out_dim`` attribute that maps observations of the space to
``[*B, out_dim]`` floats.
"""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from torch import Tensor, nn

from pgrad.obs import ACTION_MASK, Obs, batch_dims

FLAT_SPACES = (spaces.Box, spaces.Discrete, spaces.MultiBinary, spaces.MultiDiscrete)


def is_image_space(space: gym.Space) -> bool:
    """A ``uint8`` ``Box`` of 3 dimensions whose smallest (the channels) is first or last."""
    if not (isinstance(space, spaces.Box) and space.dtype == np.uint8 and len(space.shape) == 3):
        return False
    channels = int(np.argmin(space.shape))
    return channels in (0, 2) and space.shape[channels] <= 4


class FlatEncoder(nn.Module):
    """Flattens any fixed-size observation to floats; no parameters (see the module table).

    At the top level ``MultiDiscrete`` and ``MultiBinary`` values are used as numbers; inside a
    ``Dict`` or ``Tuple`` every entry is encoded as ``gymnasium.spaces.flatten`` encodes it
    (``Discrete`` and ``MultiDiscrete`` one-hot), so the features equal that function's output.

    Raises:
        TypeError: a space with no fixed-size flat form (Graph, Sequence, Text, ...).
    """

    def __init__(self, space: gym.Space) -> None:
        super().__init__()
        self.space = space
        self.out_dim = _flat_size(space, top=True)

    def forward(self, obs: Obs) -> Tensor:
        batch = batch_dims(obs, self.space)
        return _flatten(self.space, obs, batch, top=True)


def _flat_size(space: gym.Space, top: bool = False) -> int:
    if isinstance(space, spaces.Discrete):
        return int(space.n)
    if isinstance(space, spaces.MultiDiscrete) and not top:
        return int(np.sum(space.nvec))
    if isinstance(space, FLAT_SPACES):
        return int(np.prod(space.shape)) if space.shape else 1
    if isinstance(space, spaces.Dict):
        return sum(_flat_size(s) for k, s in space.spaces.items() if k != ACTION_MASK)
    if isinstance(space, spaces.Tuple):
        return sum(_flat_size(s) for s in space.spaces)
    raise TypeError(
        f"observation space {space} is not supported: use Box, Discrete, MultiBinary, "
        "MultiDiscrete, or a Dict/Tuple of those (or give make_policy an encoder of your own)"
    )


def _flatten(space: gym.Space, obs: Obs, batch: tuple[int, ...], top: bool = False) -> Tensor:
    if isinstance(space, spaces.Discrete):
        return nn.functional.one_hot(obs.long() - int(space.start), int(space.n)).float()
    if isinstance(space, spaces.MultiDiscrete) and not top:
        nvec = torch.as_tensor(np.asarray(space.nvec).flatten(), device=obs.device)
        start = torch.as_tensor(np.asarray(space.start).flatten(), device=obs.device)
        index = obs.reshape(*batch, -1).long() - start
        offsets = torch.cumsum(nvec, 0) - nvec
        out = obs.new_zeros((*batch, int(nvec.sum())), dtype=torch.float32)
        return out.scatter_(-1, index + offsets, 1.0)
    if isinstance(space, FLAT_SPACES):
        return obs.reshape(*batch, _flat_size(space)).float()
    if isinstance(space, spaces.Dict):
        parts = [_flatten(s, obs[k], batch) for k, s in space.spaces.items() if k != ACTION_MASK]
    else:
        parts = [_flatten(s, obs[i], batch) for i, s in enumerate(space.spaces)]
    return torch.cat(parts, dim=-1)


class CNNEncoder(nn.Module):
    """A small convolutional encoder for image observations (Mnih et al. 2015, "Nature DQN").

    Images of at least 36 x 36 pixels go through Nature DQN's three convolutions (8x8 stride 4,
    4x4 stride 2, 3x3 stride 1; 32, 64, 64 channels) and a linear layer to 512 features; smaller
    ones (grid renders), whose few pixels Nature's 8x8 stride-4 kernels would mostly skip,
    through three 3x3 convolutions (strides 1, 2, 1; 16, 32, 32 channels) and a linear layer to
    256 features; ReLU after each. ``uint8`` pixels are scaled to [0, 1] here, so
    observations are stored as the environment gives them (4x less memory than floats).

    Args:
        space: an image ``Box`` (see :func:`is_image_space`), channels first or last.
        features: the output width (default: 512, or 256 for small images).
    """

    def __init__(self, space: spaces.Box, features: int | None = None) -> None:
        super().__init__()
        if not is_image_space(space):
            raise TypeError(f"CNNEncoder needs a uint8 image Box of 3 dimensions, got {space}")
        self.space = space
        self.channels_first = int(np.argmin(space.shape)) == 0
        c, h, w = space.shape if self.channels_first else np.roll(space.shape, 1)
        if min(h, w) >= 36:
            layers = [(c, 32, 8, 4, 0), (32, 64, 4, 2, 0), (64, 64, 3, 1, 0)]
            features = features or 512
        else:
            features = features or 256
            layers = [(c, 16, 3, 1, 1), (16, 32, 3, 2, 1), (32, 32, 3, 1, 1)]
        convs: list[nn.Module] = []
        for c_in, c_out, kernel, stride, padding in layers:
            convs += [_orthogonal(nn.Conv2d(c_in, c_out, kernel, stride, padding)), nn.ReLU()]
        self.conv = nn.Sequential(*convs, nn.Flatten())
        with torch.no_grad():
            flat = self.conv(torch.zeros(1, int(c), int(h), int(w))).shape[-1]
        self.linear = nn.Sequential(_orthogonal(nn.Linear(flat, features)), nn.ReLU())
        self.out_dim = features

    def forward(self, obs: Tensor) -> Tensor:
        batch = obs.shape[:-3]
        x = obs.reshape(-1, *self.space.shape).float() / 255.0
        if not self.channels_first:
            x = x.permute(0, 3, 1, 2)
        return self.linear(self.conv(x)).reshape(*batch, self.out_dim)


def _orthogonal(layer: nn.Module) -> nn.Module:
    nn.init.orthogonal_(layer.weight, math.sqrt(2.0))
    nn.init.zeros_(layer.bias)
    return layer


def encoder_for(space: gym.Space) -> nn.Module:
    """The default encoder for ``space``: a CNN for images, else :class:`FlatEncoder`.

    Raises:
        TypeError: for a space neither can encode.
    """
    if is_image_space(space):
        return CNNEncoder(space)
    return FlatEncoder(space)


__all__ = ["CNNEncoder", "FlatEncoder", "encoder_for", "is_image_space"]
