"""Run management: the run directory, the logger it writes to, and Ctrl-C.

A run directory ``runs/<env>__<agent>__<seed>__<unix-time>/`` holds the TensorBoard events,
``config.json``, ``agent.txt`` (the agent class, ``module:Class``) and ``checkpoints/``.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from pgrad.logger import Logger


def pick_device(name: str) -> torch.device:
    """``auto`` (CUDA when torch sees it, else the CPU), or the named torch device.

    Raises:
        ValueError: a CUDA or MPS device asked for that torch does not see.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"device={name} but torch sees no CUDA device; use --device cpu")
        if device.index is not None and device.index >= count:
            raise ValueError(f"device={name} but torch sees {count} CUDA device(s)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device={name} but this torch has no MPS device; use --device cpu")
    return device


def default_run_dir(env_id: str, agent_name: str, seed: int, root: str | Path = "runs") -> Path:
    """``root/<env>__<agent>__<seed>__<unix-time>``, with ``_2``, ``_3``... if that is taken."""
    safe_env = env_id.replace("/", "-").replace(":", "-")
    base = Path(root) / f"{safe_env}__{agent_name}__{seed}__{int(time.time())}"
    candidate, n = base, 1
    while candidate.exists():
        n += 1
        candidate = base.with_name(f"{base.name}_{n}")
    return candidate


def open_run(agent: Any, total: int) -> Logger:
    """Create ``agent.run_dir`` (config, agent class) and open its logger at the agent's step.

    A resumed run's logger purges the events written after its checkpoint, so the curves
    continue as one line.
    """
    run_dir: Path = agent.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    config_path = run_dir / "config.json"
    # rewritten on resume too: an extended run's config holds its new total_steps
    config_path.write_text(agent.config.to_json() + "\n")
    (run_dir / "agent.txt").write_text(agent.spec() + "\n")
    step = agent.global_step
    if not agent.quiet:
        verb = "resuming" if step else "training"
        print(
            f"{verb} {agent.config.env_id} with agent {agent.name} to {total:,} steps; "
            f"TensorBoard: tensorboard --logdir {run_dir.parent}",
            flush=True,
        )
    logger = Logger(
        run_dir, total, start_step=step, quiet=agent.quiet, purge_step=step + 1 if step else None
    )
    if not step:
        logger.text("config", agent.config.markdown())
    return logger


@contextlib.contextmanager
def interruptible(agent: Any) -> Iterator[None]:
    """On the first SIGINT set ``agent._stop_requested`` (the loop checkpoints and returns);
    a second one raises ``KeyboardInterrupt`` at once. Only in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        if agent._stop_requested:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        agent._stop_requested = True

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
