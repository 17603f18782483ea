"""Checkpoints: atomic writes, safe loads, and the last K kept.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, written with
``torch.save`` to a temporary file in the same folder, flushed and fsynced, then moved into place
with ``os.replace`` (atomic on POSIX). A process killed at any moment, during a save included,
leaves the previous checkpoint intact. Loading uses ``torch.load(weights_only=True)``, whose
unpickler only rebuilds tensors and plain containers: a crafted file that would run code is
refused.

Every checkpoint carries a format version (``FORMAT_VERSION``). This version of pgrad loads
its own and older ones (format 1, written before policies were encoder + head, has the same
weights under the same names; its baseline state is read where it was kept), and refuses a newer
one in one line, since it cannot know what that holds.

A failed write (a full disk: ``OSError(ENOSPC)``) removes its temporary file and raises
``CheckpointError``; the previous checkpoint is untouched.
"""

from __future__ import annotations

import os
import re
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch

from pgrad.errors import CheckpointError, first_line

FORMAT = "pgrad-checkpoint"
FORMAT_VERSION = 2
_FORMAT_1 = "pgrad-checkpoint-1"
_NAME = re.compile(r"^step_(\d+)\.pt$")


def save(state: dict[str, Any], path: Path) -> Path:
    """Write ``state`` to ``path`` atomically and return ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({"format": FORMAT, "format_version": FORMAT_VERSION, **state}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as err:  # torch's writer reports a failed write as either
        Path(tmp).unlink(missing_ok=True)
        reason = getattr(err, "strerror", None) or first_line(err)
        raise CheckpointError(f"cannot write checkpoint {path}: {reason}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def save_numbered(state: dict[str, Any], folder: Path, step: int, keep: int) -> Path:
    """Save as ``folder/step_<step>.pt`` and delete all but the ``keep`` most recent."""
    path = save(state, folder / f"step_{step:012d}.pt")
    for old in list_checkpoints(folder)[:-keep]:
        old.unlink(missing_ok=True)
    for stale in folder.glob(".step_*.tmp"):  # left by a process killed while saving
        if stale.stat().st_mtime < path.stat().st_mtime - 60:
            stale.unlink(missing_ok=True)
    return path


def list_checkpoints(folder: Path) -> list[Path]:
    """Checkpoints in ``folder``, oldest first (by the step in their name)."""
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def load(path: Path) -> dict[str, Any]:
    """Load a checkpoint safely.

    Raises:
        CheckpointError: missing, truncated or corrupt file; a pickle that asks for anything but
            tensors and plain containers (refused without running it); or not a pgrad checkpoint.
    """
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols on its way to refuse
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many kinds for bad files; all mean "not loadable"
        raise CheckpointError(f"cannot load checkpoint {path}: {_why(path, err)}") from None
    if not isinstance(state, dict) or state.get("format") not in (FORMAT, _FORMAT_1):
        raise CheckpointError(f"{path} is not a pgrad checkpoint")
    version = 1 if state["format"] == _FORMAT_1 else state.get("format_version")
    if not isinstance(version, int) or not 1 <= version <= FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format {version}; this pgrad reads formats 1 to "
            f"{FORMAT_VERSION} (upgrade pgrad to load it)"
        )
    state["format_version"] = version
    return state


def _why(path: Path, err: BaseException) -> str:
    """What is wrong with a file ``torch.load`` refused, in words a user can act on."""
    text = str(err).lower()  # torch words it "Unsupported global" or "unsupported GLOBAL"
    if "unsupported global" in text or "unsupported operand" in text:
        return "it contains objects other than tensors and plain data (refused unsafe pickle)"
    with open(path, "rb") as f:
        head = f.read(4)
    if head == b"PK\x03\x04":  # a zip archive, as torch.save writes: cut short or damaged
        return "the file is truncated or damaged (an interrupted copy or write?)"
    return "not a checkpoint: the file is not a torch archive"


def latest_loadable(folder: Path) -> tuple[Path, dict[str, Any]]:
    """The newest checkpoint in ``folder`` that loads, skipping any damaged ones.

    Raises:
        CheckpointError: when there is none.
    """
    errors = []
    for path in reversed(list_checkpoints(folder)):
        try:
            return path, load(path)
        except CheckpointError as err:
            errors.append(str(err))
    detail = f" ({errors[0]})" if errors else ""
    raise CheckpointError(f"no loadable checkpoint in {folder}{detail}")


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
