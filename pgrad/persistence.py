"""An agent's state: what a checkpoint holds, and rebuilding an agent from one.

A checkpoint (``pgrad.checkpoint`` writes and reads it, atomically and safely) holds the policy
and critic weights (observation statistics included), the optimizer, the algorithm's state
(a moving-average baseline), the reward scaler's statistics, the step and update counters, the RNG states and the config.
Schedules are functions of the step, so they need no state of their own.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pgrad import checkpoint as ckpt
from pgrad.config import Config
from pgrad.envs_util import derive_seed, rng_state, set_rng_state
from pgrad.errors import CheckpointError, TrainingError, first_line


class Persistence:
    """Save, load and resume; mixed into ``pgrad.Agent`` (uses its networks and counters)."""

    @classmethod
    def spec(cls) -> str:
        """``module:Class`` naming this agent class, or ``/path/file.py:Class`` for a class
        loaded from a file by ``pgrad train --agent`` (its ``source``)."""
        return cls.__dict__.get("source") or f"{cls.__module__}:{cls.__qualname__}"

    def state_dict(self) -> dict[str, Any]:
        return {
            "agent": self.spec(),
            "agent_name": self.name,
            "env_id": self.config.env_id,
            "config": self.config.to_dict(),
            "policy": self.policy.state_dict(),
            "critic": self.critic.state_dict() if self.critic is not None else None,
            "optimizer": self.optimizer.state_dict() if self.optimizer is not None else None,
            "algorithm": self.algorithm.state_dict(),
            "reward_scaler": (
                self.reward_scaler.state_dict() if self.reward_scaler is not None else None
            ),
            "global_step": self.global_step,
            "updates": self.updates,
            "weights_version": self.weights_version,
            "rng": rng_state(),
        }

    def load_state_dict(self, state: dict[str, Any], restore_rng: bool = True) -> None:
        try:
            self.policy.load_state_dict(state["policy"])
            if self.critic is not None and state.get("critic") is not None:
                self.critic.load_state_dict(state["critic"])
            if self.optimizer is not None and state.get("optimizer") is not None:
                self.optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, KeyError, ValueError) as err:
            raise CheckpointError(
                f"checkpoint does not fit this agent: {_fit_detail(err)}"
            ) from None
        # format 1 kept the moving-average baseline at the top level
        algorithm = state.get("algorithm", {"ema": state["ema"]} if "ema" in state else {})
        self.algorithm.load_state_dict(algorithm)
        if self.reward_scaler is not None and state.get("reward_scaler") is not None:
            self.reward_scaler.load_state_dict(state["reward_scaler"])
        self.global_step = int(state.get("global_step", 0))
        self.updates = int(state.get("updates", 0))
        self.weights_version = int(state.get("weights_version", self.updates))
        if restore_rng and "rng" in state:
            set_rng_state(state["rng"])

    def save(self, path: str | Path) -> Path:
        """Save weights, optimizer, step counters, RNG states and config to ``path``."""
        return ckpt.save(self.state_dict(), Path(path))

    def save_checkpoint(self) -> Path | None:
        if self.run_dir is None:
            return None
        return ckpt.save_numbered(
            self.state_dict(),
            self.run_dir / "checkpoints",
            self.global_step,
            self.config.keep_checkpoints,
        )

    def _checkpoint(self) -> None:
        """``save_checkpoint`` for the training loop: a failed write stops training."""
        try:
            self.save_checkpoint()
        except CheckpointError as err:  # e.g. a full disk: the previous checkpoint is intact
            raise TrainingError(f"{err}; the previous checkpoint is kept") from None

    @classmethod
    def load(cls, path: str | Path, **overrides: Any):
        """Rebuild an agent from a checkpoint file (loaded with ``weights_only=True``).

        The agent collects in this process (``workers=0``) unless ``overrides`` say otherwise.
        """
        state = ckpt.load(Path(path))
        return cls._from_state(state, None, **{"workers": 0, **overrides})

    @classmethod
    def for_evaluation(cls, state: dict[str, Any]):
        """An acting-only agent rebuilt from checkpoint ``state`` with the fewest environments
        its config allows."""
        config = _config_of(state)
        num_envs = config.group_size if config.grouped else 1
        return cls._from_state(state, None, learner=False, num_envs=num_envs, workers=0)

    @classmethod
    def _from_state(
        cls, state: dict[str, Any], run_dir: Path | None, learner: bool = True, **overrides: Any
    ):
        config = _config_of(state)
        agent = cls(
            config.replace(**overrides) if overrides else config, run_dir=run_dir, learner=learner
        )
        agent.load_state_dict(state)
        return agent

    @classmethod
    def resume(cls, run_dir: str | Path, **overrides: Any):
        """Continue the run in ``run_dir`` from its newest loadable checkpoint."""
        run_dir = Path(run_dir)
        _, state = ckpt.latest_loadable(run_dir / "checkpoints")
        agent = cls._from_state(state, run_dir, **overrides)
        if agent.config.rollout == "steps":
            # env states are not checkpointed: start fresh episodes from a seed tied to the step
            agent.collector.seed = derive_seed(agent.config.seed, agent.updates)
        return agent


def _config_of(state: dict[str, Any]) -> Config:
    try:
        return Config.from_dict(state["config"])
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"checkpoint has no valid config: {err}") from None


def _fit_detail(err: BaseException) -> str:
    """What does not fit, in one line: torch's missing and unexpected keys and size mismatches."""
    text = str(err)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) <= 1:
        return first_line(err)
    detail = "; ".join(line.rstrip(".;") for line in lines[1:])
    detail = re.sub(
        r"copying a param with shape torch.Size\((\[[^]]*\])\) from checkpoint, the shape in "
        r"current model is torch.Size\((\[[^]]*\])\)",
        r"checkpoint \1, agent \2",
        detail,
    )
    return detail[:500]
