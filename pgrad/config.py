"""The run configuration: one frozen dataclass whose field docstrings become ``--help``.

Every hyperparameter of a run lives here. Derived sizes are properties, never patched after
parsing. ``Config.validate`` checks every field on construction, so an invalid config cannot
exist; ``Config.with_overrides`` parses ``key=value`` strings from the command line.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import math
import re
import types
import typing
from dataclasses import dataclass, field, fields
from functools import cache
from typing import Any

BASELINES = ("none", "ema", "value", "loo", "group", "drgrpo", "rpp", "pomo", "greedy")
GROUPED_BASELINES = ("loo", "group", "drgrpo", "rpp", "pomo")
"""Baselines that compare environments of a group started from the same seed."""
SEQUENCE_BASELINES = ("drgrpo", "rpp", "pomo", "greedy")
"""Baselines of one reward per whole sequence: the sequence algorithm's only."""
AGGREGATIONS = ("seq_sum", "seq_mean", "token_mean", "token_sum_norm")
KL_ESTIMATORS = ("k1", "k3")
ROLLOUTS = ("episodes", "steps")
VECTORIZATION = ("auto", "sync", "async", "vector_entry_point")
ACTIVATIONS = ("tanh", "relu")
OPTIMIZERS = ("adam", "rmsprop")
SEED_MAX = 2**32 - 1
"""The largest seed: numpy's legacy seeding takes ``[0, 2**32)``; torch and Gymnasium take more,
but pgrad derives environment seeds from the low 32 bits, so larger seeds would repeat smaller
ones."""
MAX_TORCH_THREADS = 1024
"""More intra-op threads than this is a typo, not a machine: OpenMP would try to start them all."""


@dataclass(frozen=True)
class Config:
    """Hyperparameters of one training run."""

    env_id: str = "CartPole-v1"
    """Gymnasium environment id, e.g. CartPole-v1 or pgrad/ShortCorridor-v0."""
    total_steps: int = 200_000
    """Environment steps to train for, summed over all parallel environments."""
    num_envs: int = 8
    """Parallel environments in the vector environment."""
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments for gymnasium.make, a JSON object (or pgrad train --env-kwargs key=value)."""
    vectorization: str = "auto"
    """Vector env kind: auto (numpy-vectorised where the env has one, else sync), sync, async or vector_entry_point."""
    seed: int = 1
    """Seed for Python, numpy, torch and every environment reset, in [0, 4294967295]."""
    device: str = "auto"
    """Torch device: auto (cuda when available), cpu, cuda, cuda:N or mps."""
    torch_threads: int = 1
    """Torch intra-op threads; one is fastest for the small networks of classic control."""

    rollout: str = "steps"
    """What one update learns from: 'steps' (num_steps per env, bootstrapped) or 'episodes' (one whole episode per env)."""
    num_steps: int = 128
    """Steps per environment in each rollout (rollout=steps)."""
    max_episode_steps: int = 0
    """Time limit per episode (0: the environment's own limit); episodes that hit it are truncated and bootstrapped."""

    update_epochs: int = 1
    """Passes over each rollout per update (REINFORCE and A2C: 1)."""
    num_minibatches: int = 1
    """Shuffled minibatches per pass, one optimizer step each (1: the whole rollout, in order)."""
    value_epochs: int = 0
    """Extra critic-only passes over each rollout after the update (value regression on the same targets)."""
    share_encoder: bool = False
    """The critic uses the policy's encoder (e.g. one CNN for both) instead of its own."""

    gamma: float = 0.99
    """Discount factor in [0, 1]."""
    gae_lambda: float = 0.95
    """GAE(lambda) in [0, 1] when baseline=value; 1 gives Monte-Carlo returns minus the value."""
    baseline: str = "value"
    """Baseline: none, ema (moving average of returns), value (learned critic), loo (leave-one-out over groups, RLOO), group (group-normalised, GRPO); sequence agents also drgrpo (group mean, Dr. GRPO), rpp (REINFORCE++), pomo (group mean over distinct starts) and greedy (Kool's greedy rollout)."""
    group_size: int = 4
    """Environments per group for baseline=loo/group; groups start from identically seeded resets where the env allows it."""
    ema_decay: float = 0.9
    """Decay of the moving-average baseline (baseline=ema), in [0, 1)."""
    normalize_advantages: bool = True
    """Normalise advantages to zero mean and unit std in each batch."""
    normalize_obs: bool = False
    """Standardise observations by a running mean and std (kept with the weights in checkpoints)."""
    normalize_reward: bool = False
    """Divide the rewards the learner sees by a running std of the discounted return, clipped to [-10, 10] (logged returns stay the environment's)."""

    optimizer: str = "adam"
    """Optimizer of the policy and critic: adam or rmsprop."""
    learning_rate: float = 3e-3
    """Learning rate (policy and critic)."""
    learning_rate_final: float | None = None
    """Learning rate at the end of training, reached linearly (none: constant)."""
    ent_coef: float = 0.0
    """Entropy bonus coefficient."""
    ent_coef_final: float | None = None
    """Entropy coefficient at the end of training, reached linearly (none: constant)."""
    vf_coef: float = 0.5
    """Weight of the value loss (baseline=value)."""
    clip_coef: float = 0.2
    """PPO: clip the probability ratio to [1 - clip_coef, 1 + clip_coef] in the surrogate objective."""
    clip_value: float | None = None
    """PPO: keep the critic within this distance of its values at collection time (none: no value clipping)."""
    target_kl: float | None = None
    """PPO: end an update's epochs once an epoch's mean approximate KL to the collecting policy exceeds this (none: all epochs)."""
    max_grad_norm: float = 0.5
    """Clip the global gradient norm to this (0: no clipping)."""
    hidden: tuple[int, ...] = (64, 64)
    """Hidden layer widths of the policy and value networks, comma separated (empty: linear)."""
    activation: str = "tanh"
    """Hidden activation: tanh or relu."""
    log_std_init: float = 0.0
    """Initial log standard deviation of the Gaussian policy (Box actions)."""

    grad_diagnostics: bool = False
    """Log the policy gradient's variance and SNR from disjoint splits of each batch."""
    grad_splits: int = 4
    """Disjoint splits of the batch for grad_diagnostics."""
    checkpoint_every: int = 50_000
    """Save a checkpoint every this many environment steps (0: only at the end)."""
    keep_checkpoints: int = 3
    """How many recent checkpoints to keep."""
    max_nonfinite_updates: int = 5
    """Stop after this many consecutive updates with a non-finite loss or gradient (each is skipped)."""
    eval_episodes: int = 10
    """Evaluation episodes at the end of training (0: none)."""
    eval_deterministic: bool = True
    """Evaluate with the most likely action; false samples (for tasks whose best policy is stochastic)."""
    workers: int = 0
    """Ray rollout workers, each with its own num_envs environments (0: collect in this process)."""
    ray_address: str = ""
    """Ray cluster to join (auto or HOST:PORT); empty starts a local Ray instance when workers > 0."""

    # -- environments' keyword arguments, episode infos, sequence models and losses ------------
    log_info_keys: str = ""
    """Episode-end info keys to log as charts/<key> and report in evaluation, comma separated (besides those the env declares)."""
    aggregation: str = "seq_sum"
    """Sequence agents: how token terms add up to the loss: seq_sum (unbiased REINFORCE), seq_mean (GRPO), token_mean (DAPO), token_sum_norm (Dr. GRPO)."""
    seq_clip: bool = False
    """Sequence agents: learn from PPO's clipped ratio to the collecting policy (clip_coef) per token, for several epochs (update_epochs) of whole-sequence minibatches (num_minibatches)."""
    kl_coef: float = 0.0
    """Sequence agents: weight of the KL to the starting policy (0: no reference kept)."""
    kl_estimator: str = "k1"
    """Sequence agents: k1 (log-ratio folded into the sequence reward) or k3 (Schulman's estimate added to the loss)."""
    greedy_test_every: int = 10
    """baseline=greedy: updates between paired t-tests that replace the frozen greedy policy."""
    d_model: int = 64
    """Width of the sequence models (the causal transformer for tokens, the attention model for TSP)."""
    num_heads: int = 4
    """Attention heads of the sequence models."""
    num_layers: int = 2
    """Layers of the sequence models."""

    def __post_init__(self) -> None:
        self.validate()

    # -- derived sizes ---------------------------------------------------------------------
    @property
    def steps_per_rollout(self) -> int:
        """Environment steps collected per update when rollout=steps (num_steps * num_envs)."""
        return self.num_steps * self.num_envs

    @property
    def grouped(self) -> bool:
        """Whether the baseline compares groups of environments that share a start."""
        return self.baseline in GROUPED_BASELINES

    @property
    def info_keys(self) -> tuple[str, ...]:
        """``log_info_keys`` as a tuple of names."""
        return tuple(k.strip() for k in self.log_info_keys.split(",") if k.strip())

    @property
    def num_groups(self) -> int:
        """Groups of environments for the leave-one-out and group baselines."""
        return self.num_envs // self.group_size

    # -- validation ------------------------------------------------------------------------
    def validate(self) -> None:
        """Raise ``ValueError`` naming the first field whose value cannot be right."""
        _check_types(self)
        positive = (
            "update_epochs",
            "num_minibatches",
            "total_steps",
            "num_envs",
            "num_steps",
            "group_size",
            "grad_splits",
            "keep_checkpoints",
            "max_nonfinite_updates",
            "torch_threads",
            "greedy_test_every",
            "d_model",
            "num_heads",
            "num_layers",
        )
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in (
            "value_epochs",
            "max_episode_steps",
            "checkpoint_every",
            "eval_episodes",
            "ent_coef",
            "workers",
            "vf_coef",
            "max_grad_norm",
            "kl_coef",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("gamma", "gae_lambda"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        check_seed(self.seed)
        if self.torch_threads > MAX_TORCH_THREADS:
            raise ValueError(
                f"torch_threads must be <= {MAX_TORCH_THREADS}, got {self.torch_threads}"
            )
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        for name in ("learning_rate_final", "ent_coef_final"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must be >= 0 or none (constant), got {value}")
        if not self.clip_coef > 0:
            raise ValueError(f"clip_coef must be > 0, got {self.clip_coef}")
        for name in ("clip_value", "target_kl"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be > 0 or none (off), got {value}")
        for name, allowed in (
            ("baseline", BASELINES),
            ("rollout", ROLLOUTS),
            ("vectorization", VECTORIZATION),
            ("activation", ACTIVATIONS),
            ("optimizer", OPTIMIZERS),
            ("aggregation", AGGREGATIONS),
            ("kl_estimator", KL_ESTIMATORS),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(
                    f"{name} must be one of {', '.join(allowed)}; got {getattr(self, name)!r}"
                )
        if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", self.device):
            raise ValueError(f"device must be auto, cpu, cuda, cuda:N or mps; got {self.device!r}")
        if not all(isinstance(h, int) and not isinstance(h, bool) for h in self.hidden):
            raise ValueError(f"hidden must be integers, got {self.hidden!r}")
        if any(h < 1 for h in self.hidden):
            raise ValueError(f"hidden widths must be positive, got {self.hidden}")
        if self.rollout == "steps" and self.baseline != "value":
            # a rollout cut mid-episode needs V(s) to bootstrap from; without a critic the cut
            # would count as the episode's end and every such return would be biased low
            raise ValueError(
                f"rollout=steps needs baseline=value (a critic to bootstrap episodes cut at "
                f"the rollout's end); use rollout=episodes with baseline={self.baseline}"
            )
        if self.grouped and self.num_envs % self.group_size:
            raise ValueError(
                f"baseline={self.baseline} needs num_envs divisible by group_size, "
                f"got num_envs={self.num_envs}, group_size={self.group_size}"
            )
        if self.grouped and self.group_size < 2:
            raise ValueError(
                f"baseline={self.baseline} needs group_size >= 2, got {self.group_size}"
            )
        if not self.env_id:
            raise ValueError("env_id must not be empty")
        if self.d_model % self.num_heads:
            raise ValueError(
                f"d_model must be a multiple of num_heads, got {self.d_model} and {self.num_heads}"
            )

    # -- (de)serialisation -----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v)
            for f in fields(self)
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Config:
        """Build from a dict (e.g. a run's ``config.json``); unknown keys raise ``ValueError``."""
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ValueError(f"unknown config keys: {', '.join(unknown)}")
        values = {k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items()}
        for name in ("learning_rate_final", "ent_coef_final"):
            if values.get(name) == -1.0:  # written before "none" existed: -1 meant constant
                values[name] = None
        return cls(**values)

    def replace(self, **changes: Any) -> Config:
        """A copy with ``changes``; an unknown key raises ``ValueError`` with the closest one."""
        known = {f.name for f in fields(self)}
        for key in changes:
            if key not in known:
                close = _closest(key, known)
                hint = f" (did you mean {close}?)" if close else ""
                raise ValueError(f"unknown config key {key!r}{hint}")
        return dataclasses.replace(self, **changes)

    def with_overrides(self, assignments: list[str]) -> Config:
        """Apply ``key=value`` strings, parsing each value by the field's type.

        Raises:
            ValueError: a malformed assignment, an unknown key, or a value of the wrong type.
        """
        known = {f.name for f in fields(self)}
        changes: dict[str, Any] = {}
        for item in assignments:
            key, sep, raw = item.partition("=")
            key = key.strip().replace("-", "_")
            if not sep or not key:
                raise ValueError(f"--set expects key=value, got {item!r}")
            if key not in known:
                close = _closest(key, known)
                hint = f" (did you mean {close}?)" if close else ""
                raise ValueError(f"unknown config key {key!r}{hint}; see 'pgrad train --help'")
            changes[key] = parse_value(field_types()[key], raw.strip(), key)
        return self.replace(**changes)

    def markdown(self) -> str:
        """The config as a markdown table (for TensorBoard's Text tab)."""
        rows = "\n".join(f"|{k}|{v}|" for k, v in self.to_dict().items())
        return "|key|value|\n|-|-|\n" + rows


# -- helpers ------------------------------------------------------------------------------
@cache
def field_types() -> dict[str, Any]:
    return typing.get_type_hints(Config)


@cache
def field_docs() -> dict[str, str]:
    """The attribute docstrings of ``Config`` (the string literal under each field)."""
    try:
        tree = ast.parse(inspect.getsource(Config))
    except (OSError, TypeError):
        return {}
    docs: dict[str, str] = {}
    body = tree.body[0].body  # type: ignore[attr-defined]
    for node, nxt in zip(body, body[1:]):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(nxt, ast.Expr)
            and isinstance(nxt.value, ast.Constant)
        ):
            docs[node.target.id] = str(nxt.value.value)
    return docs


def parse_value(kind: Any, raw: str, key: str) -> Any:
    """Parse ``raw`` as a value of type ``kind`` (bool, int, float, str or tuple[int, ...]).

    An optional field (``float | None``) takes ``none`` for ``None``.
    """
    inner = _optional(kind)
    if inner is not None:
        return None if raw.strip().lower() == "none" else parse_value(inner, raw, key)
    try:
        if kind is bool:
            lowered = raw.lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if kind is int:
            return parse_int(raw)
        if kind is float:
            value = float(raw)
            if not math.isfinite(value):
                raise ValueError
            return value
        if typing.get_origin(kind) is dict:
            if not raw.strip().startswith("{"):  # key=value,key=value
                return parse_kwargs(raw, key)
            value = json.loads(raw)
            if not isinstance(value, dict):
                raise ValueError
            return value
        if typing.get_origin(kind) is tuple:
            parts = [p for p in raw.replace("(", "").replace(")", "").split(",") if p.strip()]
            return tuple(int(p) for p in parts)
        return raw
    except ValueError:
        name = getattr(kind, "__name__", str(kind))
        if typing.get_origin(kind) is dict:
            name = "key=value items separated by commas, or a JSON object"
        raise ValueError(f"{key} expects {name}, got {raw!r}") from None


def parse_kwargs(text: str, name: str) -> dict[str, Any]:
    """``"a=1,b=true,c=x"`` -> ``{"a": 1, "b": True, "c": "x"}``.

    Values are Python literals where they parse as one (``true``/``false`` too), else strings.

    Raises:
        ValueError: an item without ``=`` or with an empty key.
    """
    out: dict[str, Any] = {}
    for item in text.split(","):
        if not item.strip():
            continue
        key, sep, raw = item.partition("=")
        key, raw = key.strip(), raw.strip()
        if not sep or not key.isidentifier():
            raise ValueError(f"{name} expects key=value items separated by commas, got {item!r}")
        literal = {"true": "True", "false": "False", "none": "None"}.get(raw.lower(), raw)
        try:
            out[key] = ast.literal_eval(literal)
        except (ValueError, SyntaxError):
            out[key] = raw
    return out


def _optional(kind: Any) -> Any:
    """``X`` for ``X | None``, else ``None``."""
    if typing.get_origin(kind) in (types.UnionType, typing.Union):
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(kind)) == 2:
            return args[0]
    return None


def parse_int(raw: str) -> int:
    """An integer written as digits (``1_000`` too) or as a whole float (``1e6``), exactly.

    Digits are parsed as an integer, not through a float, so a large value keeps its digits and
    an error message can quote it as given.

    Raises:
        ValueError: anything else (``2.5``, ``inf``, ``nan``, words).
    """
    text = raw.strip().replace("_", "")
    try:
        return int(text)
    except ValueError:
        pass
    value = float(text)  # raises ValueError for words
    if not value.is_integer():
        raise ValueError(f"not an integer: {raw!r}")
    return int(value)


def check_seed(seed: int, name: str = "seed") -> None:
    """Raise ``ValueError`` unless ``0 <= seed <= SEED_MAX`` (the range every seeded RNG takes).

    Raises:
        ValueError: the message names ``name``, the range and the value.
    """
    if not 0 <= seed <= SEED_MAX:
        raise ValueError(f"{name} must be an integer in [0, {SEED_MAX}] (2**32 - 1), got {seed}")


def _check_types(config: Config) -> None:
    for name, kind in field_types().items():
        value = getattr(config, name)
        if _optional(kind) is not None:
            if value is None:
                continue
            kind = _optional(kind)
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            object.__setattr__(config, name, float(value))
            continue
        # what Python callers pass: total_steps=1e5, hidden=[64, 64]
        if kind is int and isinstance(value, float) and value.is_integer():
            value = int(value)
            object.__setattr__(config, name, value)
        base = typing.get_origin(kind) or kind
        if base is dict and isinstance(value, str):  # env_kwargs="length=6,num_symbols=5"
            value = parse_value(kind, value, name)
            object.__setattr__(config, name, value)
        if base is tuple and isinstance(value, list):
            value = tuple(value)
            object.__setattr__(config, name, value)
        if base is types.UnionType:
            continue
        ok = isinstance(value, base) and not (base is int and isinstance(value, bool))
        if base is float and isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{name} must be finite, got {value}")
        if not ok:
            raise ValueError(f"{name} must be {getattr(base, '__name__', base)}, got {value!r}")


def _closest(key: str, known: set[str]) -> str | None:
    import difflib

    match = difflib.get_close_matches(key, sorted(known), n=1)
    return match[0] if match else None
