"""Pixels: image observations stay uint8 in rollouts and are learned through the CNN encoder."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

from pgrad.agents import PixelGrid
from pgrad.encoders import CNNEncoder, FlatEncoder, encoder_for, is_image_space
from pgrad.envs.pixel_grid import shortest_path


def test_image_spaces_get_the_cnn_and_others_the_flat_encoder():
    assert is_image_space(gym.spaces.Box(0, 255, (16, 16, 3), np.uint8))
    assert is_image_space(gym.spaces.Box(0, 255, (4, 84, 84), np.uint8))
    assert not is_image_space(gym.spaces.Box(0, 1, (16, 16, 3), np.float32))
    assert not is_image_space(gym.spaces.Box(0, 255, (16, 16), np.uint8))
    assert isinstance(encoder_for(gym.spaces.Box(0, 255, (84, 84, 4), np.uint8)), CNNEncoder)
    assert isinstance(encoder_for(gym.spaces.Box(-1, 1, (4,), np.float32)), FlatEncoder)


@pytest.mark.parametrize("shape", [(84, 84, 4), (4, 84, 84), (16, 16, 3), (3, 16, 16)])
def test_cnn_keeps_batch_dims_and_channel_order(shape):
    space = gym.spaces.Box(0, 255, shape, np.uint8)
    encoder = CNNEncoder(space)
    images = torch.as_tensor(np.stack([space.sample() for _ in range(6)])).reshape(2, 3, *shape)
    features = encoder(images)
    assert features.shape == (2, 3, encoder.out_dim)
    # each image is encoded alone: the same image gives the same features in any batch
    alone = encoder(images[1, 2][None])[0]
    torch.testing.assert_close(features[1, 2], alone)


def test_pixel_grid_passes_check_env():
    check_env(gym.make("pgrad/PixelGrid-v0").unwrapped, skip_render_check=True)


def pixel_agent(tmp_path, total_steps):
    return PixelGrid(
        total_steps=total_steps,
        seed=1,
        quiet=True,
        eval_episodes=0,
        run_dir=tmp_path / "run",
        device="cpu",
    )


def test_rollouts_store_images_as_uint8(tmp_path):
    agent = pixel_agent(tmp_path, 128)
    rollout = agent.collect()
    assert rollout.obs.dtype == torch.uint8 and rollout.obs.shape == (9, 16, 16, 16, 3)
    assert isinstance(agent.policy.encoder, CNNEncoder)
    agent.envs.close()


@pytest.mark.slow
def test_cnn_agent_learns_the_pixel_grid(tmp_path):
    """Shortest paths need the agent's position, which only the image shows."""
    agent = pixel_agent(tmp_path, 6_000)
    before = agent.evaluate(episodes=30)["mean_length"]
    agent.train()
    after = agent.evaluate(episodes=30)["mean_length"]
    agent.envs.close()
    # an untrained policy wanders (about 15 steps); a blind one needs about twice the optimum
    assert before > 2 * shortest_path()
    assert after <= shortest_path() + 0.4, (before, after)
