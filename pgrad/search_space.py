"""Search spaces of ``pgrad tune``: which config keys are tuned, over which values.

A space maps config keys to how each is searched:

==================================  =============================================================
spec (Python or YAML)               meaning
==================================  =============================================================
``{low: 1e-4, high: 1e-1, log: true}``  a range: float or int by the key's type (``step`` optional)
``[0.9, 0.99, 0.999]`` or ``{choices: [...]}``  one of these values
``0.01`` (a single value)           fixed for every trial, not searched
``null`` / ``None``                 not tuned: the agent's default stays
==================================  =============================================================

For a tuple key (``hidden``) a list of numbers is one value (``hidden: [64, 64]`` fixes two
layers of 64) and a list of lists or of strings is a choice (``hidden: [[32, 32], "64,64"]``).

``default_space`` picks the keys by what the agent's config uses; a ``--space`` file (a YAML
mapping, or a Python file that defines ``SPACE = {...}``) changes entries of it, adds keys, or
drops them.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import sys
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pgrad.config import BASELINES, SEQUENCE_BASELINES, Config, field_types, parse_value
from pgrad.errors import SpaceError, first_line

SET_BY_TUNE = ("env_id", "seed", "total_steps")
"""Keys that ``pgrad tune``'s own arguments set: a space cannot search them."""


@dataclass(frozen=True)
class Param:
    """How one config key is searched: a float or int range, or a list of choices.

    Choices are held as Optuna stores them (numbers, strings, bools); a tuple value such as
    ``hidden`` is the string ``"64,64"``. ``config_value`` turns a stored value into the config's.
    """

    name: str
    kind: str  # "float", "int" or "categorical"
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()

    def suggest(self, trial: Any) -> Any:
        """Draw this key's value for an Optuna ``trial``."""
        if self.kind == "float":
            return trial.suggest_float(self.name, self.low, self.high, log=self.log, step=self.step)
        if self.kind == "int":
            step = int(self.step) if self.step else 1
            return trial.suggest_int(
                self.name, int(self.low), int(self.high), log=self.log, step=step
            )
        return trial.suggest_categorical(self.name, list(self.choices))

    def config_value(self, value: Any) -> Any:
        """The config's value for a value this parameter stored in Optuna."""
        return to_config_value(self.name, value)

    def describe(self) -> str:
        if self.kind == "categorical":
            return f"one of {', '.join(map(str, self.choices))}"
        scale = " (log)" if self.log else ""
        return f"{self.kind} in [{self.low:g}, {self.high:g}]{scale}"


@dataclass
class Space:
    """The searched parameters and the fixed values that every trial sets."""

    params: dict[str, Param]
    fixed: dict[str, Any]

    def describe(self) -> list[str]:
        lines = [f"{name}: {param.describe()}" for name, param in self.params.items()]
        lines += [f"{name} = {_show(value)} (fixed)" for name, value in self.fixed.items()]
        return lines

    def signature(self) -> dict[str, Any]:
        """A JSON-able summary, stored with a study so that a rerun can check it is the same."""
        return {
            "params": {n: dataclasses.asdict(p) for n, p in sorted(self.params.items())},
            "fixed": {n: _show(v) for n, v in sorted(self.fixed.items())},
        }


CONTROL_BASELINES = tuple(b for b in BASELINES if b not in SEQUENCE_BASELINES)
"""The baselines a control agent takes (the others compare whole sequences)."""
TUNED_SEQUENCE_BASELINES = ("none", "ema", "loo", "group", "drgrpo", "rpp")
"""The sequence agent's baselines worth searching on any token task (``pomo`` needs tours,
``greedy`` a frozen decoder: name them in a space file to try them)."""


def default_space(config: Config, algorithm: type | None = None) -> Space:
    """The keys worth tuning for an agent whose default config is ``config``.

    Always: learning rate, entropy coefficient, discount, number of environments, and the
    width of each hidden layer (when there are any). Fixed-length rollouts (``rollout=steps``,
    A2C) add their length ``num_steps`` and, with a critic, GAE's lambda; whole-episode
    REINFORCE (``rollout=episodes``) adds the baseline, among those ``algorithm`` (the agent's
    ``algorithm_class``) takes. PPO (a ``PPOAlgorithm``) adds ``clip_coef`` and
    ``update_epochs``.
    """
    from pgrad.algos import PPOAlgorithm, SequenceAlgorithm

    sequence = algorithm is not None and issubclass(algorithm, SequenceAlgorithm)
    ppo = algorithm is not None and issubclass(algorithm, PPOAlgorithm)
    params = [
        Param("learning_rate", "float", 1e-4, 1e-1, log=True),
        Param("ent_coef", "categorical", choices=(0.0, 1e-4, 1e-3, 1e-2, 3e-2)),
        Param("gamma", "categorical", choices=(0.9, 0.95, 0.98, 0.99, 0.995, 0.999)),
        # multiples of 4: the grouped baselines need num_envs divisible by group_size (4)
        Param("num_envs", "categorical", choices=(4, 8, 16, 32)),
    ]
    if config.hidden:
        depth = len(config.hidden)
        widths = (16, 32, 64, 128, 256)
        params.append(
            Param("hidden", "categorical", choices=tuple(_layers(w, depth) for w in widths))
        )
    if config.rollout == "steps":
        params.append(Param("num_steps", "categorical", choices=(8, 16, 32, 64, 128)))
        if config.baseline == "value":
            params.append(Param("gae_lambda", "categorical", choices=(0.8, 0.9, 0.95, 0.98, 1.0)))
    else:
        baselines = TUNED_SEQUENCE_BASELINES if sequence else CONTROL_BASELINES
        params.append(Param("baseline", "categorical", choices=baselines))
    if ppo:
        params.append(Param("clip_coef", "categorical", choices=(0.1, 0.2, 0.3)))
        params.append(Param("update_epochs", "int", 1, 10))
    return Space({p.name: p for p in params}, {})


def load_space_file(path: Path) -> dict[str, Any]:
    """The mapping a ``--space`` file holds: YAML (``.yaml``, ``.yml``) or Python (``SPACE``).

    A Python file is imported, so its code runs: it is the user's own file, run by design.

    Raises:
        SpaceError: no such file, another suffix, a parse error, or not a mapping.
    """
    if not path.is_file():
        raise SpaceError(f"space file {path} does not exist")
    if path.suffix in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as err:
            raise SpaceError(f"space file {path} is not valid YAML: {first_line(err)}") from None
        data = {} if data is None else data
    elif path.suffix == ".py":
        data = _python_space(path)
    else:
        raise SpaceError(f"space file {path} must end in .yaml, .yml or .py")
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        raise SpaceError(f"space file {path} must map config keys to specs")
    return data


def apply_overrides(space: Space, overrides: dict[str, Any], source: str = "space") -> Space:
    """``space`` with the entries of ``overrides`` (config key -> spec) replacing its own.

    Raises:
        SpaceError: an unknown config key, a key that ``pgrad tune`` sets itself, or a spec
            that cannot be right for its key (naming the key and ``source``).
    """
    params, fixed = dict(space.params), dict(space.fixed)
    known = field_types()
    for name, spec in overrides.items():
        if name not in known:
            import difflib

            close = difflib.get_close_matches(name, sorted(known), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise SpaceError(f"unknown parameter {name!r} in {source}{hint}")
        if name in SET_BY_TUNE:
            raise SpaceError(f"{name} in {source} is set by pgrad tune's own arguments")
        params.pop(name, None)
        fixed.pop(name, None)
        if spec is None:
            continue
        try:
            parsed = _parse_spec(name, spec)
        except (ValueError, TypeError) as err:
            raise SpaceError(f"{name} in {source}: {first_line(err)}") from None
        if isinstance(parsed, Param):
            params[name] = parsed
        else:
            fixed[name] = parsed
    return Space(params, fixed)


def to_config_value(name: str, value: Any) -> Any:
    """A value as the config field ``name`` holds it (``"64,64"`` -> ``(64, 64)``)."""
    if isinstance(value, (list, tuple)):
        value = ",".join(map(str, value))
    return parse_value(field_types()[name], str(value), name)


# -- helpers --------------------------------------------------------------------------------------
def _parse_spec(name: str, spec: Any) -> Param | Any:
    kind = field_types()[name]
    is_tuple = typing.get_origin(kind) is tuple
    if isinstance(spec, dict):
        keys = set(spec)
        if keys == {"choices"}:
            return _categorical(name, spec["choices"], is_tuple)
        unknown = keys - {"low", "high", "log", "step"}
        if unknown or not {"low", "high"} <= keys:
            raise ValueError(
                "a range needs low and high (and may have log, step); choices need 'choices'"
                + (f"; unknown: {', '.join(sorted(map(str, unknown)))}" if unknown else "")
            )
        return _range(name, kind, spec)
    if isinstance(spec, (list, tuple)) and not (is_tuple and _all_numbers(spec)):
        return _categorical(name, spec, is_tuple)
    return to_config_value(name, spec)


def _range(name: str, kind: Any, spec: dict[str, Any]) -> Param:
    if kind not in (int, float):
        raise ValueError(
            f"a range needs a numeric key, and {name} is {getattr(kind, '__name__', kind)}"
        )
    low, high = _number(spec["low"], "low"), _number(spec["high"], "high")
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise ValueError(f"log must be true or false, got {log!r}")
    step = None if spec.get("step") is None else _number(spec["step"], "step")
    if not low < high:
        raise ValueError(f"low must be below high, got [{low:g}, {high:g}]")
    if log and low <= 0:
        raise ValueError(f"a log range needs low > 0, got {low:g}")
    if step is not None and (step <= 0 or (log and kind is float)):
        raise ValueError("step must be > 0 and cannot go with log for floats")
    if kind is int:
        for label, value in (("low", low), ("high", high), ("step", step or 1)):
            if not float(value).is_integer():
                raise ValueError(f"{name} is an integer key, but {label} is {value:g}")
    return Param(name, "int" if kind is int else "float", low, high, log=log, step=step)


def _categorical(name: str, choices: Any, is_tuple: bool) -> Param:
    if not isinstance(choices, (list, tuple)) or not choices:
        raise ValueError("choices must be a non-empty list")
    stored = []
    for choice in choices:
        value = to_config_value(name, choice)  # raises for a value of the wrong type
        # Optuna keeps None, bool, int, float and str: a tuple is kept as "64,64"
        stored.append(",".join(map(str, value)) if is_tuple else value)
    if len(set(map(str, stored))) < len(stored):
        raise ValueError(f"choices repeat a value: {list(choices)}")
    return Param(name, "categorical", choices=tuple(stored))


def _number(value: Any, label: str) -> float:
    # YAML 1.1 reads 1e-4 (no dot) as a string: accept numbers written either way
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{label} must be a number, got {value!r}") from None
    if isinstance(value, bool) or not math.isfinite(number):
        raise ValueError(f"{label} must be a finite number, got {value!r}")
    return number


def _all_numbers(values: Any) -> bool:
    return all(isinstance(v, int) and not isinstance(v, bool) for v in values)


def _layers(width: int, depth: int) -> str:
    return ",".join([str(width)] * depth)


def _python_space(path: Path) -> Any:
    module_name = f"_pgrad_space_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise SpaceError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as err:  # the user's file failed: say where, without a traceback
        raise SpaceError(f"cannot import {path}: {type(err).__name__}: {err}") from None
    if not hasattr(module, "SPACE"):
        raise SpaceError(f"space file {path} defines no SPACE = {{...}}")
    return module.SPACE


def _show(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)
