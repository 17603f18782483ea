"""Every exception pgrad raises on purpose, and the one-line message helper.

The CLI turns the ``ValueError`` subclasses (bad input) into one line on stderr and exit code 2,
and ``TrainingError`` (training cannot go on) into exit code 1.
"""

from __future__ import annotations


class EnvError(ValueError):
    """An environment id that cannot be made, or a space the agent cannot handle."""


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable, unsafe, of another format, or not a pgrad one."""


class NonFiniteError(ValueError):
    """An observation or reward from the environment is NaN or infinite."""


class UsageError(ValueError):
    """Bad input from the command line."""


class TrainingError(RuntimeError):
    """Training cannot go on (non-finite numbers); the last good weights were checkpointed."""


class WorkerError(RuntimeError):
    """A Ray worker failed in a way that re-collecting cannot repair."""


class StaleRolloutError(RuntimeError):
    """A worker returned a rollout collected with weights other than the learner's current ones."""


def first_line(err: BaseException) -> str:
    """The first line of ``err``'s message, or its class name when the message is empty."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


__all__ = [
    "CheckpointError",
    "EnvError",
    "MemoryBudgetError",
    "NonFiniteError",
    "SpaceError",
    "StaleRolloutError",
    "TrainingError",
    "TuneError",
    "UsageError",
    "WorkerError",
    "first_line",
]


class MemoryBudgetError(ValueError):
    """A run whose estimated memory is more than this machine has available."""


class SpaceError(ValueError):
    """A search space that cannot be right (an unknown key, a malformed spec)."""


class TuneError(RuntimeError):
    """The study cannot go on (its runs' folder is taken, every trial fails)."""
