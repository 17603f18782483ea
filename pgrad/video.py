"""Recording evaluation episodes as MP4 files (Gymnasium's RecordVideo, which needs moviepy)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym


def record(agent: Any, folder: Path, episodes: int, deterministic: bool, seed: int | None) -> None:
    """Play ``episodes`` episodes with ``agent`` in a rendered environment, saved in ``folder``."""
    try:
        import moviepy  # noqa: F401
    except ImportError:
        raise ValueError("--video needs moviepy: pip install moviepy") from None
    from gymnasium.wrappers import RecordVideo

    env = gym.make(agent.config.env_id, render_mode="rgb_array")
    env = RecordVideo(env, str(folder), episode_trigger=lambda _: True, disable_logger=True)
    try:
        for episode in range(episodes):
            obs, _ = env.reset(seed=None if seed is None else seed + episode)
            done = False
            while not done:
                obs, _, terminated, truncated, _ = env.step(agent.act(obs, deterministic))
                done = terminated or truncated
    finally:
        env.close()
