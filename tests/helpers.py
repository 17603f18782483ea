"""Shared test helpers: running the CLI in a subprocess and reading TensorBoard scalars back."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def pgrad_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "pgrad.cli", *args]


def pgrad(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        pgrad_cmd(*args), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def popen_pgrad(*args: str, cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.Popen(
        pgrad_cmd(*args),
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def pgrad_main(capsys, *args: str) -> subprocess.CompletedProcess:
    """Run ``pgrad.cli.main`` in this process (faster than a subprocess), as a finished process."""
    from pgrad.cli import main

    try:
        code = main(list(args))
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else 1
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(["pgrad", *args], code, out, err)


def assert_clean_error(result: subprocess.CompletedProcess, fragment: str, code: int = 2) -> None:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert lines[0].startswith("pgrad: error:") and fragment in lines[0], lines[0]


def all_scalars(run_dir: Path, skip: tuple[str, ...] = ("charts/SPS",)) -> dict[str, list]:
    """Every scalar tag of a run as ``{tag: [(step, value), ...]}`` (timing tags skipped)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    return {
        tag: [(e.step, e.value) for e in events.Scalars(tag)]
        for tag in events.Tags()["scalars"]
        if tag not in skip
    }
