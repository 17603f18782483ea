"""Recording evaluation episodes as MP4 files (Gymnasium's RecordVideo, which needs moviepy)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import gymnasium as gym


def check_available() -> None:
    """Raise ``ValueError`` with the install command when moviepy is missing."""
    try:
        import moviepy  # noqa: F401
    except ImportError:
        raise ValueError("--video needs moviepy: pip install 'pgrad[video]'") from None


def record(
    agent: Any, folder: Path, episodes: int, deterministic: bool, seed: int | None
) -> list[Path]:
    """Play ``episodes`` episodes with ``agent`` in a rendered environment; returns the MP4 files."""
    check_available()
    # render off-screen: no display, no audio device
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
    from gymnasium.wrappers import RecordVideo

    try:
        env = gym.make(agent.config.env_id, render_mode="rgb_array")
    except Exception:  # gymnasium raises several kinds for an env without rgb_array frames
        raise ValueError(
            f"{agent.config.env_id} cannot render rgb_array frames for --video"
        ) from None
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
    return sorted(folder.glob("*.mp4"))
